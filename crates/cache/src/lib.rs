//! Switchyard's semantic cache: answers a prompt it has seen before — or one that asks the
//! same thing in other words — without calling any model, and refuses to answer one that
//! only looks similar.
//!
//! Two Qdrant backends sit behind [`SemanticCache`]: [`EdgeCache`] (the engine in-process,
//! on disk; the default) and [`RemoteCache`] (a Qdrant server or cluster over gRPC). Above
//! them, [`Cache`] decides what is a hit, the same way for both:
//!
//! 1. entries are only ever shared within one tenant, one route (or pinned model) and one
//!    context fingerprint ([`fingerprint`]) — hard payload filters, never similarity;
//! 2. the exact path: the same last message (whitespace aside) is a `hit`;
//! 3. otherwise the nearest few entries by cosine are judged: the guard ([`guard`]) vetoes
//!    pairs whose numbers, quoted strings, identifiers or negation differ, and the method's
//!    score (cosine, or the learned [`Verifier`]'s probability) must reach the threshold
//!    for a `semantic_hit`.

pub mod edge;
pub mod fingerprint;
pub mod guard;
mod journal;
pub mod layout;
pub mod remote;
pub mod verifier;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use edge::EdgeCache;
pub use fingerprint::fingerprint;
pub use guard::{Lexical, Veto, exact_key};
pub use remote::{RemoteCache, RemoteSettings};
pub use switchyard_core::{
    CacheCandidate, CacheEntry, CacheError, CacheScope, Invalidate, SemanticCache,
};
pub use verifier::{Verifier, VerifierManifest, VerifierModel, pair_features};

/// How a semantic candidate is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Cosine similarity alone (what most semantic caches do).
    Cosine,
    /// Cosine, with the lexical guard's vetoes.
    Guard,
    /// The guard's vetoes, then the learned verifier's probability.
    Verifier,
}

impl Method {
    pub const ALL: [Self; 3] = [Self::Cosine, Self::Guard, Self::Verifier];

    pub fn name(self) -> &'static str {
        match self {
            Self::Cosine => "cosine",
            Self::Guard => "guard",
            Self::Verifier => "verifier",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("{s:?} is not a cache method: use cosine, guard or verifier"))
    }
}

/// The verifier's default operating point: `switchyard eval cache --split validation`
/// finds 90% precision at 0.876 on Quora Question Pairs the verifier was not fitted on;
/// 0.89 leaves a margin (validation precision 0.915, recall 0.280; on the held-out test
/// split, measured after the choice: precision 0.889, recall 0.285).
pub const DEFAULT_VERIFIER_THRESHOLD: f32 = 0.89;
/// Cosine's threshold when the verifier is off, chosen the same way.
pub const DEFAULT_COSINE_THRESHOLD: f32 = 0.97;

#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    pub method: Method,
    /// On the method's score: cosine, or the verifier's probability.
    pub threshold: f32,
    /// How long an entry may be served after it was stored.
    pub ttl: Duration,
    /// Most entries kept; beyond it the least recently hit are evicted.
    pub capacity: u64,
    /// How many nearest entries are judged per lookup.
    pub candidates: usize,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            method: Method::Verifier,
            threshold: DEFAULT_VERIFIER_THRESHOLD,
            ttl: Duration::from_secs(24 * 3600),
            capacity: 100_000,
            candidates: 4,
        }
    }
}

/// The verdict on one candidate.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Judgement {
    pub cosine: f32,
    pub veto: Option<Veto>,
    /// The verifier's P(same question), when it ran.
    pub probability: Option<f32>,
}

impl Judgement {
    /// The score the method's threshold applies to, or `None` when the method refuses
    /// the pair outright.
    pub fn score(&self, method: Method) -> Option<f32> {
        match method {
            Method::Cosine => Some(self.cosine),
            Method::Guard if self.veto.is_some() => None,
            Method::Guard => Some(self.cosine),
            Method::Verifier if self.veto.is_some() => None,
            Method::Verifier => self.probability,
        }
    }
}

/// A served entry: how it was found and why it was accepted.
#[derive(Debug, Clone)]
pub struct Found {
    pub entry: CacheEntry,
    /// `true` on the exact path, `false` for a semantic hit.
    pub exact: bool,
    pub judgement: Judgement,
}

/// Per-request control, from the `x-switchyard-cache-control` header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Control {
    /// Do not look up (the request is still stored unless `no_store`).
    pub no_cache: bool,
    /// Do not store this response.
    pub no_store: bool,
    /// Serve only entries younger than this.
    pub max_age: Option<Duration>,
}

impl Control {
    /// Parses `no-cache, no-store, max-age=SECONDS` (comma-separated, any order).
    pub fn parse(header: &str) -> Result<Self, String> {
        let mut c = Self::default();
        for directive in header.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            match directive.split_once('=') {
                None if directive.eq_ignore_ascii_case("no-cache") => c.no_cache = true,
                None if directive.eq_ignore_ascii_case("no-store") => c.no_store = true,
                Some((k, v)) if k.trim().eq_ignore_ascii_case("max-age") => {
                    let secs: u64 = v
                        .trim()
                        .parse()
                        .map_err(|_| format!("max-age={v}: expected a whole number of seconds"))?;
                    c.max_age = Some(Duration::from_secs(secs));
                }
                _ => {
                    return Err(format!(
                        "unknown directive {directive:?}: use no-cache, no-store or max-age=SECONDS"
                    ));
                }
            }
        }
        Ok(c)
    }
}

/// Whether an entry the store returned may be served. The store filtered on the scope key
/// (and, on the exact path, expiry); both are checked again here: sharing across scopes never
/// rests on a hash alone, and nearest entries may have expired since the last purge.
fn servable(e: &CacheEntry, scope: &CacheScope, now: i64, max_age: Option<Duration>) -> bool {
    e.scope == *scope
        && e.expires_ms > now
        && max_age.is_none_or(|age| now.saturating_sub(e.created_ms) <= age.as_millis() as i64)
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// After this many inserts the maintenance task is woken before its next tick to index
/// them ([`Cache::index_due`]), so a burst of new entries never waits a full minute.
pub const INDEX_EVERY: u64 = 1_000;

/// What one maintenance pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Expired entries removed.
    pub purged: u64,
    /// Least recently hit entries removed to stay within capacity.
    pub evicted: u64,
    /// Whether the vector index was (re)built.
    pub indexed: bool,
}

/// A backend with the hit semantics on top.
#[derive(Debug, Clone)]
pub struct Cache {
    store: Arc<dyn SemanticCache>,
    verifier: Option<Arc<Verifier>>,
    settings: CacheSettings,
    /// Inserts since the last index build, and the bell rung at `INDEX_EVERY`.
    unindexed: Arc<AtomicU64>,
    index_bell: Arc<tokio::sync::Notify>,
}

impl Cache {
    /// Fails when the method needs a verifier and none was given.
    pub fn new(
        store: Arc<dyn SemanticCache>,
        verifier: Option<Arc<Verifier>>,
        settings: CacheSettings,
    ) -> Result<Self, CacheError> {
        if settings.method == Method::Verifier && verifier.is_none() {
            return Err(CacheError::Config(
                "method \"verifier\" needs a verifier: fetch the default one \
                 (models/cache-verifier/) or set method = \"guard\""
                    .into(),
            ));
        }
        if settings.candidates == 0 || settings.capacity == 0 {
            return Err(CacheError::Config(
                "candidates and capacity must be at least 1".into(),
            ));
        }
        Ok(Self {
            store,
            verifier,
            settings,
            unindexed: Arc::default(),
            index_bell: Arc::default(),
        })
    }

    pub fn backend(&self) -> &dyn SemanticCache {
        self.store.as_ref()
    }

    pub fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    /// Judges a stored candidate against the query (`query` = the query's lexical profile).
    pub fn judge(&self, query: &Lexical, vector: &[f32], candidate: &CacheCandidate) -> Judgement {
        let mut one = self.judge_all(query, vector, std::slice::from_ref(candidate));
        one.pop().unwrap_or(Judgement {
            cosine: candidate.cosine,
            veto: None,
            probability: None,
        })
    }

    /// `judge` for each of a lookup's candidates, the verifier run once over all of them.
    pub fn judge_all(
        &self,
        query: &Lexical,
        vector: &[f32],
        candidates: &[CacheCandidate],
    ) -> Vec<Judgement> {
        let mut judged = Vec::with_capacity(candidates.len());
        let mut features = Vec::new();
        let mut verified = Vec::new();
        for (i, c) in candidates.iter().enumerate() {
            let stored = Lexical::of(&c.entry.text);
            let veto = guard::veto(query, &stored);
            if self.verifier.is_some()
                && self.settings.method == Method::Verifier
                && veto.is_none()
                && !c.vector.is_empty()
            {
                features.push(pair_features(vector, &c.vector, query, &stored));
                verified.push(i);
            }
            judged.push(Judgement {
                cosine: c.cosine,
                veto,
                probability: None,
            });
        }
        if let Some(v) = &self.verifier
            && !features.is_empty()
        {
            for (i, p) in verified.into_iter().zip(v.probabilities(&features)) {
                judged[i].probability = Some(p);
            }
        }
        judged
    }

    /// The entry to serve for `text` (with embedding `vector`) in `scope`, if any: the
    /// exact entry, else the best similar one; marks it as hit. `threshold` overrides the
    /// configured one (a route's own).
    pub async fn lookup(
        &self,
        scope: &CacheScope,
        text: &str,
        vector: &[f32],
        max_age: Option<Duration>,
        threshold: Option<f32>,
    ) -> Result<Option<Found>, CacheError> {
        if let Some(found) = self.lookup_exact(scope, text, max_age).await? {
            return Ok(Some(found));
        }
        self.lookup_similar(scope, text, vector, max_age, threshold)
            .await
    }

    /// The entry stored for exactly `text` in `scope`, if servable; marks it as hit. Needs
    /// no embedding, so a repeat is answered before the prompt is embedded.
    pub async fn lookup_exact(
        &self,
        scope: &CacheScope,
        text: &str,
        max_age: Option<Duration>,
    ) -> Result<Option<Found>, CacheError> {
        let now = now_ms();
        let key = exact_key(text);
        let Some(c) = self.store.exact(scope, &key, now).await? else {
            return Ok(None);
        };
        if !servable(&c.entry, scope, now, max_age) {
            return Ok(None);
        }
        let judgement = Judgement {
            cosine: 1.0,
            veto: None,
            probability: None,
        };
        self.serve(c.entry, true, judgement, now).await
    }

    /// Marks `entry` as hit at `now` and hands it out.
    async fn serve(
        &self,
        entry: CacheEntry,
        exact: bool,
        judgement: Judgement,
        now: i64,
    ) -> Result<Option<Found>, CacheError> {
        self.store.touch(&entry.id, now).await?;
        Ok(Some(Found {
            entry,
            exact,
            judgement,
        }))
    }

    /// The best entry of `scope` similar enough to `text` (embedding `vector`) by the
    /// configured method, if any; marks it as hit.
    pub async fn lookup_similar(
        &self,
        scope: &CacheScope,
        text: &str,
        vector: &[f32],
        max_age: Option<Duration>,
        threshold: Option<f32>,
    ) -> Result<Option<Found>, CacheError> {
        let threshold = threshold.unwrap_or(self.settings.threshold);
        let now = now_ms();
        let query = Lexical::of(text);
        let candidates = self
            .store
            .nearest(scope, vector, self.settings.candidates, now)
            .await?;
        let candidates: Vec<CacheCandidate> = candidates
            .into_iter()
            .filter(|c| servable(&c.entry, scope, now, max_age))
            .collect();
        let judgements = self.judge_all(&query, vector, &candidates);
        let best = candidates
            .into_iter()
            .zip(judgements)
            .filter_map(|(c, j)| j.score(self.settings.method).map(|s| (c, j, s)))
            .filter(|(_, _, s)| *s >= threshold)
            .max_by(|a, b| a.2.total_cmp(&b.2));
        let Some((c, judgement, _)) = best else {
            return Ok(None);
        };
        self.serve(c.entry, false, judgement, now).await
    }

    /// Stores a complete answer; returns the new entry's id. Evicts the least recently hit
    /// entries when the store is over capacity.
    pub async fn insert(
        &self,
        scope: CacheScope,
        text: &str,
        vector: Vec<f32>,
        response: String,
        model: &str,
    ) -> Result<String, CacheError> {
        let now = now_ms();
        let id = uuid::Uuid::new_v4().to_string();
        let entry = CacheEntry {
            id: id.clone(),
            scope,
            exact_key: exact_key(text),
            text: text.to_owned(),
            response,
            model: model.to_owned(),
            created_ms: now,
            expires_ms: now.saturating_add(self.settings.ttl.as_millis() as i64),
            last_hit_ms: now,
        };
        self.store.insert(entry, vector).await?;
        self.store.evict_to(self.settings.capacity).await?;
        if self.unindexed.fetch_add(1, Ordering::Relaxed) + 1 == INDEX_EVERY {
            self.index_bell.notify_one();
        }
        Ok(id)
    }

    /// Resolves once `INDEX_EVERY` entries were inserted since the last maintenance pass:
    /// the maintenance task waits on this beside its timer.
    pub async fn index_due(&self) {
        self.index_bell.notified().await;
    }

    /// Purges expired entries, evicts down to capacity, then builds the vector index over
    /// what was added (off the request path: lookups keep being answered meanwhile).
    pub async fn maintain(&self) -> Result<Maintenance, CacheError> {
        let purged = self.store.purge_expired(now_ms()).await?;
        let evicted = self.store.evict_to(self.settings.capacity).await?;
        self.unindexed.store(0, Ordering::Relaxed);
        let indexed = self.store.optimize().await?;
        Ok(Maintenance {
            purged,
            evicted,
            indexed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_header_parses_and_rejects() {
        let c = Control::parse("no-store, max-age=60").unwrap();
        assert!(c.no_store && !c.no_cache);
        assert_eq!(c.max_age, Some(Duration::from_secs(60)));
        assert!(Control::parse("NO-CACHE").unwrap().no_cache);
        assert!(
            Control::parse("max-age=soon")
                .unwrap_err()
                .contains("max-age")
        );
        assert!(Control::parse("private").unwrap_err().contains("private"));
    }

    #[test]
    fn judgement_scores_by_method() {
        let j = Judgement {
            cosine: 0.97,
            veto: Some(Veto::Numbers),
            probability: None,
        };
        assert_eq!(j.score(Method::Cosine), Some(0.97));
        assert_eq!(j.score(Method::Guard), None);
        assert_eq!(j.score(Method::Verifier), None);
        let j = Judgement {
            cosine: 0.9,
            veto: None,
            probability: Some(0.3),
        };
        assert_eq!(j.score(Method::Guard), Some(0.9));
        assert_eq!(j.score(Method::Verifier), Some(0.3));
    }
}
