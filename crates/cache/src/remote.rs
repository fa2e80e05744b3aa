//! The remote backend: a Qdrant server or cluster over gRPC (`qdrant-client`), so several
//! gateways share one cache.
//!
//! On connect it creates the collection (cosine, the encoder's dimension, the encoder's
//! identity in the collection's metadata) and the payload indexes it filters on when they
//! are missing, and refuses a collection made for another dimension or encoder.

use std::collections::HashMap;
use std::time::Duration;

use qdrant_client::qdrant::vector_output::Vector as OutVector;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeletePointsBuilder, Direction, FieldType, Filter, OrderByBuilder, PointId, PointStruct,
    PointsIdsList, Query, QueryPointsBuilder, Range, ScrollPointsBuilder, SetPayloadPointsBuilder,
    UpsertPointsBuilder, VectorParamsBuilder, VectorsOutput, vectors_config,
};
use qdrant_client::{Payload, Qdrant};
use switchyard_core::{
    CacheCandidate, CacheEntry, CacheError, CacheFuture, CacheScope, EncoderInfo, Invalidate,
    SemanticCache,
};

use crate::layout::{self, INTEGER_FIELDS, KEYWORD_FIELDS, Stamp};

const BACKEND: &str = "qdrant";

/// Where the server is and how to reach it.
#[derive(Debug, Clone)]
pub struct RemoteSettings {
    /// gRPC URL, e.g. `http://127.0.0.1:6334`.
    pub url: String,
    pub collection: String,
    /// The API key's value (read from the env var the config names; never logged).
    pub api_key: Option<String>,
    pub timeout: Duration,
    /// For a cluster, when Switchyard creates the collection: its shards and the copies of
    /// each (Qdrant's defaults, 1 and 1, when unset). An existing collection keeps its own.
    pub shards: Option<u32>,
    pub replication_factor: Option<u32>,
}

/// A Qdrant server's collection.
#[derive(Clone)]
pub struct RemoteCache {
    client: std::sync::Arc<Qdrant>,
    collection: String,
    url: String,
}

impl std::fmt::Debug for RemoteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCache")
            .field("url", &self.url)
            .field("collection", &self.collection)
            .finish_non_exhaustive()
    }
}

fn backend_error(e: impl std::fmt::Display) -> CacheError {
    CacheError::Backend {
        backend: BACKEND,
        message: e.to_string(),
    }
}

fn stamp_metadata(stamp: &Stamp) -> HashMap<String, serde_json::Value> {
    match serde_json::to_value(stamp) {
        Ok(serde_json::Value::Object(m)) => m
            .into_iter()
            .map(|(k, v)| (format!("switchyard_{k}"), v))
            .collect(),
        _ => HashMap::new(),
    }
}

impl RemoteCache {
    /// Connects, creating the collection and indexes when missing.
    pub async fn connect(
        settings: &RemoteSettings,
        encoder: &EncoderInfo,
    ) -> Result<Self, CacheError> {
        let client = Qdrant::from_url(&settings.url)
            .api_key(settings.api_key.clone())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .skip_compatibility_check()
            .build()
            .map_err(backend_error)?;
        let name = settings.collection.clone();
        let unreachable = |e: qdrant_client::QdrantError| CacheError::Backend {
            backend: BACKEND,
            message: format!(
                "cannot reach Qdrant at {} ({e}); check [cache] url (the gRPC port, 6334 by \
                 default) and that the server is up",
                settings.url
            ),
        };
        let wanted = Stamp::of(encoder);
        if client.collection_exists(&name).await.map_err(unreachable)? {
            let info = client
                .collection_info(&name)
                .await
                .map_err(backend_error)?
                .result
                .and_then(|i| i.config);
            let size = info
                .as_ref()
                .and_then(|c| c.params.as_ref())
                .and_then(|p| p.vectors_config.as_ref())
                .and_then(|v| v.config.as_ref())
                .and_then(|c| match c {
                    vectors_config::Config::Params(p) => Some(p.size as usize),
                    vectors_config::Config::ParamsMap(_) => None,
                });
            let meta: serde_json::Map<String, serde_json::Value> = info
                .map(|c| c.metadata)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix("switchyard_")
                        .map(|k| (k.to_owned(), serde_json::Value::from(v)))
                })
                .collect();
            let found: Option<Stamp> = serde_json::from_value(meta.into()).ok();
            let why = match (size, found) {
                (Some(d), _) if d != encoder.dim => Some(format!(
                    "its vectors are {d}-d and the encoder makes {}-d ones",
                    encoder.dim
                )),
                (None, _) => Some("it has named or no vectors, not one unnamed vector".into()),
                (_, None) => Some("it was not created by Switchyard (no encoder stamp)".into()),
                (_, Some(stamp)) => stamp.mismatch(&wanted),
            };
            if let Some(why) = why {
                return Err(CacheError::Config(format!(
                    "Qdrant collection {name:?} at {} cannot be used: {why}; set [cache] \
                     collection to another name",
                    settings.url
                )));
            }
        } else {
            let mut create = CreateCollectionBuilder::new(&name)
                .vectors_config(VectorParamsBuilder::new(
                    encoder.dim as u64,
                    qdrant_client::qdrant::Distance::Cosine,
                ))
                .metadata(stamp_metadata(&wanted));
            if let Some(n) = settings.shards {
                create = create.shard_number(n);
            }
            if let Some(n) = settings.replication_factor {
                create = create.replication_factor(n);
            }
            client
                .create_collection(create)
                .await
                .map_err(backend_error)?;
        }
        let schema = client
            .collection_info(&name)
            .await
            .map_err(backend_error)?
            .result
            .map(|i| i.payload_schema)
            .unwrap_or_default();
        for (field, kind) in KEYWORD_FIELDS
            .iter()
            .map(|f| (*f, FieldType::Keyword))
            .chain(INTEGER_FIELDS.iter().map(|f| (*f, FieldType::Integer)))
        {
            if !schema.contains_key(field) {
                client
                    .create_field_index(
                        CreateFieldIndexCollectionBuilder::new(&name, field, kind).wait(true),
                    )
                    .await
                    .map_err(backend_error)?;
            }
        }
        Ok(Self {
            client: std::sync::Arc::new(client),
            collection: name,
            url: settings.url.clone(),
        })
    }

    async fn count(&self, filter: Option<Filter>) -> Result<u64, CacheError> {
        let mut req = CountPointsBuilder::new(&self.collection).exact(true);
        if let Some(f) = filter {
            req = req.filter(f);
        }
        Ok(self
            .client
            .count(req)
            .await
            .map_err(backend_error)?
            .result
            .map_or(0, |r| r.count))
    }

    async fn delete(&self, filter: Filter) -> Result<u64, CacheError> {
        let n = self.count(Some(filter.clone())).await?;
        if n > 0 {
            self.client
                .delete_points(
                    DeletePointsBuilder::new(&self.collection)
                        .points(filter)
                        .wait(true),
                )
                .await
                .map_err(backend_error)?;
        }
        Ok(n)
    }
}

fn live(now_ms: i64) -> Condition {
    Condition::range(
        layout::EXPIRES,
        Range {
            gt: Some(now_ms as f64),
            ..Range::default()
        },
    )
}

fn scope_filter(scope: &CacheScope, now_ms: i64, extra: Option<Condition>) -> Filter {
    let mut conditions = vec![
        Condition::matches(layout::SCOPE, layout::scope_key(scope)),
        live(now_ms),
    ];
    conditions.extend(extra);
    Filter::must(conditions)
}

fn dense(vectors: Option<VectorsOutput>) -> Vec<f32> {
    match vectors.and_then(|v| v.get_vector()) {
        Some(OutVector::Dense(d)) => d.data,
        _ => Vec::new(),
    }
}

fn candidate(
    payload: HashMap<String, qdrant_client::qdrant::Value>,
    vectors: Option<VectorsOutput>,
    cosine: f32,
) -> Result<CacheCandidate, CacheError> {
    let map: serde_json::Map<String, serde_json::Value> = Payload::from(payload).into();
    Ok(CacheCandidate {
        entry: layout::entry_from_payload(map).map_err(backend_error)?,
        vector: dense(vectors),
        cosine,
    })
}

fn uuid_id(id: &str) -> Result<PointId, CacheError> {
    id.parse::<uuid::Uuid>()
        .map(|u| PointId::from(u.to_string()))
        .map_err(|_| CacheError::Config(format!("{id:?} is not a cache entry id (a UUID)")))
}

impl SemanticCache for RemoteCache {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn exact<'a>(
        &'a self,
        scope: &'a CacheScope,
        key: &'a str,
        now_ms: i64,
    ) -> CacheFuture<'a, Option<CacheCandidate>> {
        Box::pin(async move {
            let filter = scope_filter(
                scope,
                now_ms,
                Some(Condition::matches(layout::EXACT, key.to_owned())),
            );
            let res = self
                .client
                .scroll(
                    ScrollPointsBuilder::new(&self.collection)
                        .filter(filter)
                        .limit(1)
                        .with_payload(true)
                        .with_vectors(true),
                )
                .await
                .map_err(backend_error)?;
            res.result
                .into_iter()
                .next()
                .map(|p| candidate(p.payload, p.vectors, 1.0))
                .transpose()
        })
    }

    fn nearest<'a>(
        &'a self,
        scope: &'a CacheScope,
        vector: &'a [f32],
        limit: usize,
        now_ms: i64,
    ) -> CacheFuture<'a, Vec<CacheCandidate>> {
        Box::pin(async move {
            let res = self
                .client
                .query(
                    QueryPointsBuilder::new(&self.collection)
                        .query(Query::new_nearest(vector.to_vec()))
                        .filter(scope_filter(scope, now_ms, None))
                        .limit(limit as u64)
                        .with_payload(true)
                        .with_vectors(true),
                )
                .await
                .map_err(backend_error)?;
            res.result
                .into_iter()
                .map(|p| candidate(p.payload, p.vectors, p.score))
                .collect()
        })
    }

    fn insert(&self, entry: CacheEntry, vector: Vec<f32>) -> CacheFuture<'_, ()> {
        Box::pin(async move {
            let id = uuid_id(&entry.id)?;
            let payload = Payload::from(layout::payload_of(&entry));
            self.client
                .upsert_points(
                    UpsertPointsBuilder::new(
                        &self.collection,
                        vec![PointStruct::new(id, vector, payload)],
                    )
                    .wait(true),
                )
                .await
                .map_err(backend_error)?;
            Ok(())
        })
    }

    fn touch<'a>(&'a self, id: &'a str, now_ms: i64) -> CacheFuture<'a, ()> {
        Box::pin(async move {
            let point = uuid_id(id)?;
            let mut payload = Payload::new();
            payload.insert(layout::LAST_HIT, now_ms);
            self.client
                .set_payload(
                    SetPayloadPointsBuilder::new(&self.collection, payload)
                        .points_selector(PointsIdsList { ids: vec![point] })
                        .wait(false),
                )
                .await
                .map_err(backend_error)?;
            Ok(())
        })
    }

    fn invalidate(&self, what: Invalidate) -> CacheFuture<'_, u64> {
        Box::pin(async move {
            let filter = match layout::invalidation_match(&what) {
                Some((field, value)) => Filter::must([Condition::matches(field, value.to_owned())]),
                // Every Switchyard entry (each has an expiry); nothing else in the collection.
                None => Filter::must([Condition::range(
                    layout::EXPIRES,
                    Range {
                        gte: Some(f64::MIN),
                        ..Range::default()
                    },
                )]),
            };
            self.delete(filter).await
        })
    }

    fn purge_expired(&self, now_ms: i64) -> CacheFuture<'_, u64> {
        Box::pin(async move { self.delete(Filter::must_not([live(now_ms)])).await })
    }

    fn evict_to(&self, capacity: u64) -> CacheFuture<'_, u64> {
        Box::pin(async move {
            let n = self.count(None).await?;
            if n <= capacity {
                return Ok(0);
            }
            let excess = u32::try_from(n - capacity).unwrap_or(u32::MAX);
            let oldest = self
                .client
                .scroll(
                    ScrollPointsBuilder::new(&self.collection)
                        .limit(excess)
                        .with_payload(false)
                        .order_by(
                            OrderByBuilder::new(layout::LAST_HIT).direction(Direction::Asc as i32),
                        ),
                )
                .await
                .map_err(backend_error)?;
            let ids: Vec<PointId> = oldest
                .result
                .into_iter()
                .filter_map(|p| p.id)
                .filter(|id| id.point_id_options.is_some())
                .collect();
            let removed = ids.len() as u64;
            if removed > 0 {
                self.client
                    .delete_points(
                        DeletePointsBuilder::new(&self.collection)
                            .points(PointsIdsList { ids })
                            .wait(true),
                    )
                    .await
                    .map_err(backend_error)?;
            }
            Ok(removed)
        })
    }

    fn entry_count(&self) -> CacheFuture<'_, u64> {
        Box::pin(self.count(None))
    }
}
