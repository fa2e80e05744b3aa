//! The `SemanticCache` seam: where answers are stored and found again, without the
//! gateway knowing whether Qdrant runs in-process (Qdrant Edge) or as a server.
//!
//! A backend only stores and retrieves; it never decides whether a candidate is close
//! enough to serve. That decision (exact key first, then the vector search, the false-hit
//! guard and the learned verifier) lives above it in `switchyard-cache`, so every backend
//! answers with the same semantics and one behaviour suite tests them all.

use std::future::Future;
use std::pin::Pin;

/// The hard partition of the cache: entries are shared only between requests with the
/// same tenant, the same route (or pinned model) and the same context fingerprint. Every
/// backend filters on a key derived from all three and checks each of them again on every
/// candidate; similarity never decides it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct CacheScope {
    /// The tenant's name, or `"-"` when the gateway runs without tenants.
    pub tenant: String,
    /// The route name (`auto`, a configured route) or the pinned model id.
    pub route: String,
    /// A hash of everything except the last user message that changes the answer.
    pub fingerprint: String,
}

/// One stored answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CacheEntry {
    /// A UUID, unique across backends and restarts.
    pub id: String,
    pub scope: CacheScope,
    /// sha256 of the normalised last user message: the exact path.
    pub exact_key: String,
    /// The last user message as the client sent it (the guard and verifier compare texts).
    pub text: String,
    /// The stored answer, opaque to the backend (the gateway stores a chat completion).
    pub response: String,
    /// The model that produced the answer.
    pub model: String,
    /// Milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// The entry is never served at or after this time.
    pub expires_ms: i64,
    /// The last time the entry was served (or stored): what eviction orders by.
    pub last_hit_ms: i64,
}

/// A stored entry found by a lookup, with the cosine similarity of its vector to the
/// query's (1.0 on the exact path).
#[derive(Debug, Clone, PartialEq)]
pub struct CacheCandidate {
    pub entry: CacheEntry,
    pub vector: Vec<f32>,
    pub cosine: f32,
}

/// What to remove.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Invalidate {
    /// Every entry of one tenant.
    Tenant(String),
    /// Every entry of one route or pinned model, across tenants.
    Route(String),
    /// One entry.
    Entry(String),
    /// Everything.
    All,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The store cannot be used as configured (wrong dimension, another encoder, …).
    #[error("cache configuration: {0}")]
    Config(String),
    /// The store failed an operation (I/O, a server error, a lost connection).
    #[error("cache backend {backend}: {message}")]
    Backend {
        backend: &'static str,
        message: String,
    },
}

pub type CacheFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, CacheError>> + Send + 'a>>;

/// A vector store for cached answers. The scope filter is hard: a backend must never
/// return an entry of another scope. Expired entries are never returned by [`exact`]; the
/// nearest ones may include entries that expired since the last purge (a range condition
/// checked on every visited point costs the embedded index a third of its search time),
/// and the caller drops them.
///
/// [`exact`]: SemanticCache::exact
pub trait SemanticCache: Send + Sync + std::fmt::Debug {
    /// `"edge"` or `"qdrant"`, for logs, metrics and `/ready`.
    fn backend(&self) -> &'static str;

    /// The live entry of `scope` whose exact key is `key`, if any.
    fn exact<'a>(
        &'a self,
        scope: &'a CacheScope,
        key: &'a str,
        now_ms: i64,
    ) -> CacheFuture<'a, Option<CacheCandidate>>;

    /// The `limit` entries of `scope` nearest to `vector` (cosine), best first; entries that
    /// expired before `now_ms` may be among them (see above).
    fn nearest<'a>(
        &'a self,
        scope: &'a CacheScope,
        vector: &'a [f32],
        limit: usize,
        now_ms: i64,
    ) -> CacheFuture<'a, Vec<CacheCandidate>>;

    /// Stores an entry with its vector (replacing one with the same id).
    fn insert(&self, entry: CacheEntry, vector: Vec<f32>) -> CacheFuture<'_, ()>;

    /// Records that an entry was served at `now_ms`.
    fn touch<'a>(&'a self, id: &'a str, now_ms: i64) -> CacheFuture<'a, ()>;

    /// Removes entries; returns how many there were.
    fn invalidate(&self, what: Invalidate) -> CacheFuture<'_, u64>;

    /// Removes entries that expired before `now_ms`; returns how many.
    fn purge_expired(&self, now_ms: i64) -> CacheFuture<'_, u64>;

    /// Removes the least recently hit entries until at most `capacity` remain; returns
    /// how many were removed.
    fn evict_to(&self, capacity: u64) -> CacheFuture<'_, u64>;

    /// How many entries are stored (expired ones not yet purged included).
    fn entry_count(&self) -> CacheFuture<'_, u64>;

    /// Builds the vector index over entries added since the last call, compacts away
    /// deleted ones and persists what was written; returns whether an index was built.
    /// Searches keep being answered while it runs. The default does nothing: a Qdrant
    /// server does all this by itself.
    fn optimize(&self) -> CacheFuture<'_, bool> {
        Box::pin(async { Ok(false) })
    }
}
