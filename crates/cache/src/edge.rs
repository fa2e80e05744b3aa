//! The embedded backend: Qdrant's engine in-process (`qdrant-edge`), one shard on disk
//! under the configured directory, surviving restarts.
//!
//! Qdrant Edge 0.7 does not replay its WAL on load, so updates are also written to the
//! cache's own journal (`journal.rs`) and replayed from there: a killed process loses
//! nothing that was acknowledged.
//!
//! `EdgeShard`'s API is synchronous, so every call runs on tokio's blocking pool. Its
//! `flush` (also run on drop) asserts with `try_lock` that no update or index build is in
//! flight, so flushes take `write` exclusively while updates and index builds share it
//! (Qdrant's optimiser swaps proxy segments in, so updates go on during a build);
//! searches take no lock at all.
//!
//! When the index is built: Qdrant Edge never does it by itself. `optimize` runs off the
//! request path, from the gateway's maintenance task (every minute, and sooner after
//! `INDEX_EVERY` inserts: see `Cache::insert`). Segments of up to `INDEX_TAIL_VECTORS`
//! are searched exactly (Qdrant's default threshold, ~6,500 of 384-d, made that tail cost
//! milliseconds); lookups are answered throughout a build (`eval/bench/cache_scale.sh`
//! measures them while it runs).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use qdrant_edge::{
    Condition, CreateIndex, DEFAULT_VECTOR_NAME, Distance, EdgeConfigBuilder, EdgeOptimizersConfig,
    EdgeShard, EdgeVectorParams, FieldCondition, FieldIndexOperations, Filter, JsonPath, Match,
    NamedQuery, OrderBy, Payload, PayloadFieldSchema, PayloadOps, PayloadSchemaType, PointId,
    PointInsertOperations, PointOperations, PointStruct, QueryEnum, Range, Record, ScoredPoint,
    ScrollRequest, SearchRequest, SetPayloadOp, UpdateOperation, VectorStructInternal,
    WithPayloadInterface, WithVector,
};
use serde_json::{Value, json};
use switchyard_core::{
    CacheCandidate, CacheEntry, CacheError, CacheFuture, CacheScope, EncoderInfo, Invalidate,
    SemanticCache,
};

use crate::journal::Journal;
use crate::layout::{self, INTEGER_FIELDS, KEYWORD_FIELDS};

const BACKEND: &str = "edge";

/// HNSW beam width for lookups. A cache asks for the nearest few entries of a near-
/// duplicate, where a narrow beam already finds the true nearest: at 100k entries of 384-d
/// embeddings, ef 32 gave recall@1 0.998 at p99 ~1 ms, Qdrant's default (ef_construct,
/// 100) the same recall at ~3 ms (`eval/bench/cache_scale.sh`).
pub const SEARCH_EF: usize = 32;

/// Segments holding more than this many vectors get an HNSW index at the next build;
/// smaller ones are searched exactly. Qdrant's default (10 MB, ~6,500 vectors of 384-d)
/// left lookups at p50 3.5 ms, p99 4.5 ms over 100k indexed entries plus a 5,000-entry exact
/// tail; the gateway builds every minute or after `INDEX_EVERY` (1,000) inserts, so the
/// exact tail stays near this size.
pub const INDEX_TAIL_VECTORS: usize = 1_000;

/// Segments Qdrant keeps before it merges: with room for new ones, a build indexes the
/// fresh tail as a segment of its own (about a second) instead of rebuilding it into the
/// smallest big one (45 s at 100k entries); small segments are merged later, smallest first.
pub const SEGMENTS: usize = 8;

/// Qdrant Edge on disk.
#[derive(Debug, Clone)]
pub struct EdgeCache {
    inner: Arc<Inner>,
    search_ef: usize,
}

#[derive(Debug)]
struct Inner {
    /// Always `Some` until dropped (see `Drop`).
    shard: Option<EdgeShard>,
    /// Shared by updates and index builds, exclusive for flushes (see the module doc).
    write: RwLock<()>,
    /// One index build at a time.
    optimizing: Mutex<()>,
    /// Every update since the last flush, appended before it is applied.
    journal: Mutex<Journal>,
    dir: PathBuf,
}

impl Drop for Inner {
    /// `EdgeShard` flushes on drop and panics if that fails — e.g. when its directory was
    /// removed under it. Flush only when the directory is still there, and never let a
    /// failed flush take the process down on the way out.
    fn drop(&mut self) {
        let Some(shard) = self.shard.take() else {
            return;
        };
        if self.dir.join("shard").is_dir() {
            let _guard = self.exclusive();
            let flushed =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(shard)));
            match flushed {
                // Flushed: the journal's operations are all in the shard now.
                Ok(()) => {
                    if let Err(e) = self.journal().clear() {
                        tracing::warn!(error = %e, "the cache journal could not be emptied on close");
                    }
                }
                Err(_) => {
                    tracing::error!(dir = %self.dir.display(), "the cache could not be flushed on close; its journal is kept for the next start")
                }
            }
        } else {
            std::mem::forget(shard);
        }
    }
}

fn backend_error(e: impl std::fmt::Display) -> CacheError {
    CacheError::Backend {
        backend: BACKEND,
        message: e.to_string(),
    }
}

impl EdgeCache {
    /// Opens the cache under `dir`, creating it on first use. A directory made for another
    /// encoder (or dimension) is refused: its vectors would be compared with incompatible
    /// ones.
    pub fn open(dir: &Path, encoder: &EncoderInfo) -> Result<Self, CacheError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            CacheError::Config(format!(
                "cannot create cache directory {}: {e}",
                dir.display()
            ))
        })?;
        layout::check_or_write_stamp(dir, encoder)?;
        let shard_dir = dir.join("shard");
        let shard = if shard_dir.join("edge_config.json").exists() {
            EdgeShard::load(&shard_dir, None).map_err(|e| {
                CacheError::Config(format!(
                    "cannot open the cache at {}: {e}; move the directory away to start empty",
                    shard_dir.display()
                ))
            })?
        } else {
            std::fs::create_dir_all(&shard_dir).map_err(backend_error)?;
            let config = EdgeConfigBuilder::new()
                .vector(
                    DEFAULT_VECTOR_NAME,
                    EdgeVectorParams::builder(encoder.dim, Distance::Cosine).build(),
                )
                .build();
            EdgeShard::new(&shard_dir, config).map_err(backend_error)?
        };
        let (journal, replay) = Journal::open(dir).map_err(|e| {
            CacheError::Config(format!(
                "cannot open the cache journal in {}: {e}",
                dir.display()
            ))
        })?;
        // Enforced on every open, so caches made by older builds follow it too.
        shard
            .set_optimizers_config(EdgeOptimizersConfig {
                indexing_threshold: Some((INDEX_TAIL_VECTORS * encoder.dim * 4).div_ceil(1024)),
                default_segment_number: Some(SEGMENTS),
                ..EdgeOptimizersConfig::default()
            })
            .map_err(backend_error)?;
        let inner = Inner {
            shard: Some(shard),
            write: RwLock::new(()),
            optimizing: Mutex::new(()),
            journal: Mutex::new(journal),
            dir: dir.to_owned(),
        };
        if !replay.is_empty() {
            // Not flushed before the last process ended: apply again, then persist.
            let n = replay.len();
            let failed = replay
                .into_iter()
                .filter(|op| {
                    inner
                        .shard()
                        .and_then(|s| s.update(op.clone()).map_err(backend_error))
                        .is_err()
                })
                .count();
            inner.flush()?;
            tracing::info!(dir = %dir.display(), replayed = n, failed, "cache journal replayed");
        }
        let indexed = inner.shard()?.info().payload_schema;
        for (field, kind) in KEYWORD_FIELDS
            .iter()
            .map(|f| (*f, PayloadSchemaType::Keyword))
            .chain(
                INTEGER_FIELDS
                    .iter()
                    .map(|f| (*f, PayloadSchemaType::Integer)),
            )
        {
            let path = field_path(field);
            if indexed.contains_key(&path) {
                continue;
            }
            inner.update(UpdateOperation::FieldIndexOperation(
                FieldIndexOperations::CreateIndex(CreateIndex {
                    field_name: path,
                    field_schema: Some(PayloadFieldSchema::FieldType(kind)),
                }),
            ))?;
        }
        Ok(Self {
            inner: Arc::new(inner),
            search_ef: SEARCH_EF,
        })
    }

    /// Opens an existing cache under `dir` with the encoder it was made for (for offline
    /// administration: `switchyard cache`). Stop a gateway using the directory first.
    pub fn open_existing(dir: &Path) -> Result<Self, CacheError> {
        let stamp = layout::read_stamp(dir)?;
        let encoder = EncoderInfo {
            id: stamp.encoder,
            dim: stamp.dim,
            max_tokens: 0,
            weights_sha256: stamp.weights_sha256,
            truncation: Default::default(),
        };
        Self::open(dir, &encoder)
    }

    /// Another HNSW beam width for lookups (wider: slower, closer to exact).
    pub fn with_search_ef(mut self, ef: usize) -> Self {
        self.search_ef = ef.max(1);
        self
    }

    /// The directory the cache lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Writes everything to disk and empties the journal (also done by every maintenance
    /// pass and when the last handle is dropped).
    pub async fn flush(&self) -> Result<(), CacheError> {
        self.blocking(Inner::flush).await
    }

    /// Stores many entries in one update (bulk loads and benchmarks).
    pub async fn insert_batch(&self, batch: Vec<(CacheEntry, Vec<f32>)>) -> Result<(), CacheError> {
        self.blocking(move |inner| {
            let points = batch
                .into_iter()
                .map(|(entry, vector)| point(&entry, vector).map(Into::into))
                .collect::<Result<Vec<_>, _>>()?;
            inner.update(UpdateOperation::PointOperation(
                PointOperations::UpsertPoints(PointInsertOperations::PointsList(points)),
            ))
        })
        .await
    }

    /// Points stored and points covered by the vector index.
    pub fn counts(&self) -> (usize, usize) {
        self.inner.shard.as_ref().map_or((0, 0), |s| {
            let info = s.info();
            (info.points_count, info.indexed_vectors_count)
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, CacheError> + Send + 'static,
    ) -> Result<T, CacheError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(backend_error)?
    }
}

impl Inner {
    fn shard(&self) -> Result<&EdgeShard, CacheError> {
        self.shard
            .as_ref()
            .ok_or_else(|| backend_error("the cache is closing"))
    }

    fn exclusive(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.write
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn shared(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.write
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Journals, then applies. The journal's lock is held across both, so the journal's
    /// order is the order the shard saw.
    fn update(&self, op: UpdateOperation) -> Result<(), CacheError> {
        let _w = self.shared();
        let mut journal = self.journal();
        journal.append(&op).map_err(|e| {
            backend_error(format!(
                "cannot write the cache journal {}: {e}",
                journal.path().display()
            ))
        })?;
        self.shard()?.update(op).map_err(backend_error)
    }

    fn flush(&self) -> Result<(), CacheError> {
        let _w = self.exclusive();
        let mut journal = self.journal();
        let shard = self.shard()?;
        // `EdgeShard::flush` panics when the disk refuses the write.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shard.flush())).map_err(|_| {
            backend_error(format!("cannot flush the cache in {}", self.dir.display()))
        })?;
        journal.clear().map_err(backend_error)
    }

    fn scroll(&self, filter: Filter, limit: usize) -> Result<Vec<Record>, CacheError> {
        self.shard()?
            .scroll(ScrollRequest {
                offset: None,
                limit: Some(limit),
                filter: Some(filter),
                with_payload: Some(WithPayloadInterface::Bool(true)),
                with_vector: WithVector::Bool(true),
                order_by: None,
            })
            .map(|(records, _)| records)
            .map_err(backend_error)
    }

    fn delete(&self, filter: Filter) -> Result<u64, CacheError> {
        let n = self.count(Some(filter.clone()))?;
        if n > 0 {
            self.update(UpdateOperation::PointOperation(
                PointOperations::DeletePointsByFilter(filter),
            ))?;
        }
        Ok(n)
    }

    fn count(&self, filter: Option<Filter>) -> Result<u64, CacheError> {
        self.shard()?
            .count(qdrant_edge::CountRequest {
                filter,
                exact: true,
            })
            .map(|n| n as u64)
            .map_err(backend_error)
    }
}

/// A top-level payload key (every field this cache stores is one).
fn field_path(field: &str) -> JsonPath {
    JsonPath {
        first_key: field.to_owned(),
        rest: Vec::new(),
    }
}

fn keyword(field: &str, value: &str) -> Condition {
    Condition::Field(FieldCondition::new_match(
        field_path(field),
        Match::from(value.to_owned()),
    ))
}

fn live(now_ms: i64) -> Condition {
    Condition::Field(FieldCondition::new_range(
        field_path(layout::EXPIRES),
        Range {
            gt: Some((now_ms as f64).into()),
            lt: None,
            gte: None,
            lte: None,
        },
    ))
}

fn must(conditions: Vec<Condition>) -> Filter {
    Filter {
        must: Some(conditions),
        ..Filter::default()
    }
}

/// The entries of `scope`, and whatever `extra` demands. One keyword condition: Qdrant
/// checks the filter on every point the HNSW search visits and on every point of an
/// unindexed segment, and at 100k entries the former three scope conditions plus the
/// expiry range cost p99 2.5 ms against 1.6 ms for this one (`eval/bench/cache_scale.sh`).
fn scope_filter(scope: &CacheScope, extra: Vec<Condition>) -> Filter {
    let mut conditions = vec![keyword(layout::SCOPE, &layout::scope_key(scope))];
    conditions.extend(extra);
    must(conditions)
}

fn point(entry: &CacheEntry, vector: Vec<f32>) -> Result<PointStruct, CacheError> {
    let id = point_id(&entry.id)?;
    let payload = Value::Object(layout::payload_of(entry).into_iter().collect());
    Ok(PointStruct::new(id, vector, payload))
}

fn point_id(id: &str) -> Result<PointId, CacheError> {
    id.parse::<qdrant_edge::external::uuid::Uuid>()
        .map(PointId::Uuid)
        .map_err(|_| CacheError::Config(format!("{id:?} is not a cache entry id (a UUID)")))
}

fn dense(vector: Option<VectorStructInternal>) -> Vec<f32> {
    match vector {
        Some(VectorStructInternal::Single(v)) => v,
        Some(VectorStructInternal::Named(mut named)) => match named.remove(DEFAULT_VECTOR_NAME) {
            Some(qdrant_edge::VectorInternal::Dense(v)) => v,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn candidate(
    payload: Option<Payload>,
    vector: Option<VectorStructInternal>,
    cosine: f32,
) -> Result<CacheCandidate, CacheError> {
    let map: serde_json::Map<String, serde_json::Value> = payload
        .map(|p| p.0.into_iter().collect())
        .unwrap_or_default();
    Ok(CacheCandidate {
        entry: layout::entry_from_payload(map).map_err(backend_error)?,
        vector: dense(vector),
        cosine,
    })
}

impl SemanticCache for EdgeCache {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn exact<'a>(
        &'a self,
        scope: &'a CacheScope,
        key: &'a str,
        now_ms: i64,
    ) -> CacheFuture<'a, Option<CacheCandidate>> {
        let filter = scope_filter(scope, vec![keyword(layout::EXACT, key), live(now_ms)]);
        Box::pin(self.blocking(move |inner| {
            let mut records = inner.scroll(filter, 1)?;
            records
                .pop()
                .map(|r| candidate(r.payload, r.vector, 1.0))
                .transpose()
        }))
    }

    fn nearest<'a>(
        &'a self,
        scope: &'a CacheScope,
        vector: &'a [f32],
        limit: usize,
        _now_ms: i64,
    ) -> CacheFuture<'a, Vec<CacheCandidate>> {
        let request = SearchRequest {
            query: QueryEnum::Nearest(NamedQuery::default_dense(vector.to_vec())),
            // No expiry condition: the caller drops expired candidates (see the trait).
            filter: Some(scope_filter(scope, Vec::new())),
            params: Some(qdrant_edge::SearchParams {
                hnsw_ef: Some(self.search_ef.max(limit)),
                ..Default::default()
            }),
            limit,
            offset: 0,
            with_payload: Some(WithPayloadInterface::Bool(true)),
            with_vector: Some(WithVector::Bool(true)),
            score_threshold: None,
        };
        Box::pin(self.blocking(move |inner| {
            let points: Vec<ScoredPoint> = inner.shard()?.search(request).map_err(backend_error)?;
            points
                .into_iter()
                .map(|p| candidate(p.payload, p.vector, p.score))
                .collect()
        }))
    }

    fn insert(&self, entry: CacheEntry, vector: Vec<f32>) -> CacheFuture<'_, ()> {
        Box::pin(self.blocking(move |inner| {
            let point = point(&entry, vector)?;
            inner.update(UpdateOperation::PointOperation(
                PointOperations::UpsertPoints(PointInsertOperations::PointsList(vec![
                    point.into(),
                ])),
            ))
        }))
    }

    fn touch<'a>(&'a self, id: &'a str, now_ms: i64) -> CacheFuture<'a, ()> {
        let id = id.to_owned();
        Box::pin(self.blocking(move |inner| {
            let point = point_id(&id)?;
            let payload = json!({ (layout::LAST_HIT): now_ms });
            let Value::Object(map) = payload else {
                return Ok(());
            };
            inner.update(UpdateOperation::PayloadOperation(PayloadOps::SetPayload(
                SetPayloadOp {
                    payload: Payload(map.into_iter().collect()),
                    points: Some(vec![point]),
                    filter: None,
                    key: None,
                },
            )))
        }))
    }

    fn invalidate(&self, what: Invalidate) -> CacheFuture<'_, u64> {
        Box::pin(self.blocking(move |inner| {
            inner.delete(match layout::invalidation_match(&what) {
                Some((field, value)) => must(vec![keyword(field, value)]),
                None => Filter::default(),
            })
        }))
    }

    fn purge_expired(&self, now_ms: i64) -> CacheFuture<'_, u64> {
        Box::pin(self.blocking(move |inner| {
            let expired = Filter {
                must_not: Some(vec![live(now_ms)]),
                ..Filter::default()
            };
            inner.delete(expired)
        }))
    }

    fn evict_to(&self, capacity: u64) -> CacheFuture<'_, u64> {
        Box::pin(self.blocking(move |inner| {
            let n = inner.count(None)?;
            if n <= capacity {
                return Ok(0);
            }
            let excess = (n - capacity) as usize;
            let (oldest, _) = inner
                .shard()?
                .scroll(ScrollRequest {
                    offset: None,
                    limit: Some(excess),
                    filter: None,
                    with_payload: Some(WithPayloadInterface::Bool(false)),
                    with_vector: WithVector::Bool(false),
                    order_by: Some(qdrant_edge::OrderByInterface::Struct(OrderBy {
                        key: field_path(layout::LAST_HIT),
                        direction: Some(qdrant_edge::Direction::Asc),
                        start_from: None,
                    })),
                })
                .map_err(backend_error)?;
            let ids: Vec<PointId> = oldest.into_iter().map(|r| r.id).collect();
            let removed = ids.len() as u64;
            inner.update(UpdateOperation::PointOperation(
                PointOperations::DeletePoints { ids },
            ))?;
            Ok(removed)
        }))
    }

    fn entry_count(&self) -> CacheFuture<'_, u64> {
        Box::pin(self.blocking(|inner| inner.count(None)))
    }

    fn optimize(&self) -> CacheFuture<'_, bool> {
        Box::pin(self.blocking(|inner| {
            let Ok(_one) = inner.optimizing.try_lock() else {
                return Ok(false); // a build is already running
            };
            let built = {
                let _w = inner.shared();
                inner.shard()?.optimize().map_err(backend_error)?
            };
            inner.flush()?;
            Ok(built)
        }))
    }
}
