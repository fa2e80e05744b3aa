//! How an entry is laid out as a Qdrant point, the same for both backends: the vector is
//! the embedding of the last user message; the payload holds the entry's fields, with
//! keyword indexes on everything filtered by equality and integer indexes on the times.

use std::path::Path;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use switchyard_core::{CacheEntry, CacheError, CacheScope, EncoderInfo, Invalidate};

pub const ID: &str = "id";
pub const TENANT: &str = "tenant";
pub const ROUTE: &str = "route";
pub const FINGERPRINT: &str = "fingerprint";
/// One keyword standing for the whole scope (tenant, route, fingerprint): lookups filter on
/// it alone, because Qdrant checks each filter condition per candidate point and one
/// condition instead of three took a third off the search time of an unindexed segment.
/// The three fields are kept too, for invalidation, and re-checked on every candidate.
pub const SCOPE: &str = "scope";
pub const EXACT: &str = "exact_key";
pub const TEXT: &str = "text";
pub const RESPONSE: &str = "response";
pub const MODEL: &str = "model";
pub const CREATED: &str = "created_ms";
pub const EXPIRES: &str = "expires_ms";
pub const LAST_HIT: &str = "last_hit_ms";

pub const KEYWORD_FIELDS: &[&str] = &[ID, TENANT, ROUTE, FINGERPRINT, SCOPE, EXACT];
pub const INTEGER_FIELDS: &[&str] = &[EXPIRES, LAST_HIT];

/// The keyword match that selects what an invalidation removes: `(field, value)`, or
/// `None` for every entry. Each backend turns it into its own filter type.
pub fn invalidation_match(what: &Invalidate) -> Option<(&'static str, &str)> {
    match what {
        Invalidate::Tenant(t) => Some((TENANT, t)),
        Invalidate::Route(r) => Some((ROUTE, r)),
        Invalidate::Entry(id) => Some((ID, id)),
        Invalidate::All => None,
    }
}

/// The value of [`SCOPE`]: sha256 (hex) of the length-prefixed tenant, route and
/// fingerprint, so no two different scopes can be spelled alike.
pub fn scope_key(scope: &CacheScope) -> String {
    let mut h = Sha256::new();
    for part in [&scope.tenant, &scope.route, &scope.fingerprint] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    format!("{:x}", h.finalize())
}

pub fn payload_of(entry: &CacheEntry) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_owned(), v);
    };
    put(ID, entry.id.clone().into());
    put(TENANT, entry.scope.tenant.clone().into());
    put(ROUTE, entry.scope.route.clone().into());
    put(FINGERPRINT, entry.scope.fingerprint.clone().into());
    put(SCOPE, scope_key(&entry.scope).into());
    put(EXACT, entry.exact_key.clone().into());
    put(TEXT, entry.text.clone().into());
    put(RESPONSE, entry.response.clone().into());
    put(MODEL, entry.model.clone().into());
    put(CREATED, entry.created_ms.into());
    put(EXPIRES, entry.expires_ms.into());
    put(LAST_HIT, entry.last_hit_ms.into());
    m
}

pub fn entry_from_payload(mut m: Map<String, Value>) -> Result<CacheEntry, String> {
    let mut text = |k: &str| -> Result<String, String> {
        match m.remove(k) {
            Some(Value::String(s)) => Ok(s),
            other => Err(format!(
                "stored point has no string {k:?} (found {other:?})"
            )),
        }
    };
    let id = text(ID)?;
    let scope = CacheScope {
        tenant: text(TENANT)?,
        route: text(ROUTE)?,
        fingerprint: text(FINGERPRINT)?,
    };
    let exact_key = text(EXACT)?;
    let body = text(TEXT)?;
    let response = text(RESPONSE)?;
    let model = text(MODEL)?;
    let int = |k: &str| -> Result<i64, String> {
        m.get(k)
            .and_then(Value::as_i64)
            .ok_or_else(|| format!("stored point has no integer {k:?}"))
    };
    Ok(CacheEntry {
        id,
        scope,
        exact_key,
        text: body,
        response,
        model,
        created_ms: int(CREATED)?,
        expires_ms: int(EXPIRES)?,
        last_hit_ms: int(LAST_HIT)?,
    })
}

/// What a store was made for, so that a cache built from one encoder's vectors is never
/// searched with another's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stamp {
    pub layout: u32,
    pub encoder: String,
    pub dim: usize,
    pub weights_sha256: String,
}

/// 2: the [`SCOPE`] key.
pub const LAYOUT_VERSION: u32 = 2;

impl Stamp {
    pub fn of(encoder: &EncoderInfo) -> Self {
        Self {
            layout: LAYOUT_VERSION,
            encoder: encoder.id.clone(),
            dim: encoder.dim,
            weights_sha256: encoder.weights_sha256.clone(),
        }
    }

    /// Why a store stamped `self` cannot serve `wanted`, if it cannot.
    pub fn mismatch(&self, wanted: &Self) -> Option<String> {
        if self.dim != wanted.dim {
            Some(format!(
                "it holds {}-d vectors and the encoder makes {}-d ones",
                self.dim, wanted.dim
            ))
        } else if self.weights_sha256 != wanted.weights_sha256 || self.encoder != wanted.encoder {
            Some(format!(
                "it was made with encoder {} (weights {}…), this gateway runs {} ({}…)",
                self.encoder,
                self.weights_sha256.chars().take(12).collect::<String>(),
                wanted.encoder,
                wanted.weights_sha256.chars().take(12).collect::<String>()
            ))
        } else if self.layout != wanted.layout {
            Some(format!(
                "its layout is version {}, this build writes version {}",
                self.layout, wanted.layout
            ))
        } else {
            None
        }
    }
}

const STAMP_FILE: &str = "switchyard-cache.json";

/// The stamp of an existing cache directory.
pub fn read_stamp(dir: &Path) -> Result<Stamp, CacheError> {
    let path = dir.join(STAMP_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        CacheError::Config(format!(
            "{}: {e} (is {} a Switchyard cache directory? `[cache] path` names it)",
            path.display(),
            dir.display()
        ))
    })?;
    serde_json::from_str(&text)
        .map_err(|e| CacheError::Config(format!("{}: not a cache stamp: {e}", path.display())))
}

/// Checks the stamp in `dir` against `encoder`, writing it when the directory is new.
pub fn check_or_write_stamp(dir: &Path, encoder: &EncoderInfo) -> Result<(), CacheError> {
    let path = dir.join(STAMP_FILE);
    let wanted = Stamp::of(encoder);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let found: Stamp = serde_json::from_str(&text).map_err(|e| {
                CacheError::Config(format!("{}: not a cache stamp: {e}", path.display()))
            })?;
            match found.mismatch(&wanted) {
                None => Ok(()),
                Some(why) => Err(CacheError::Config(format!(
                    "the cache at {} cannot be used: {why}; point [cache] path elsewhere or \
                     remove the directory to start an empty cache",
                    dir.display()
                ))),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let text = serde_json::to_string_pretty(&wanted)
                .map_err(|e| CacheError::Config(e.to_string()))?;
            std::fs::write(&path, text)
                .map_err(|e| CacheError::Config(format!("cannot write {}: {e}", path.display())))
        }
        Err(e) => Err(CacheError::Config(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(tenant: &str, route: &str, fingerprint: &str) -> CacheScope {
        CacheScope {
            tenant: tenant.into(),
            route: route.into(),
            fingerprint: fingerprint.into(),
        }
    }

    #[test]
    fn scope_keys_differ_when_the_parts_are_split_differently() {
        let keys = [
            scope_key(&scope("ab", "c", "d")),
            scope_key(&scope("a", "bc", "d")),
            scope_key(&scope("a", "b", "cd")),
            scope_key(&scope("", "abc", "d")),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(keys[0], scope_key(&scope("ab", "c", "d")));
    }
}
