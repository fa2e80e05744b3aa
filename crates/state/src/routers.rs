//! Routers in the shared state: a promoted router's files, stored under its version with
//! a checksum, so every replica can load it without a directory shared between machines;
//! and the history of promotions and rollbacks, newest first.

use std::collections::BTreeMap;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::shared::{SharedState, StateError};

/// How many promotions the history keeps (older artifacts are deleted with their entry).
pub const HISTORY_LEN: isize = 50;

/// The field of an artifact's hash that holds its checksum; files are `f:NAME`.
const CHECKSUM_FIELD: &str = "sha256";

/// A router's files (a scorer directory's `manifest.json`, `weights.json`, …), by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterArtifact {
    pub version: String,
    pub files: BTreeMap<String, Vec<u8>>,
}

impl RouterArtifact {
    /// The SHA-256 of every file's name and bytes, in name order.
    pub fn sha256(&self) -> String {
        let mut h = Sha256::new();
        for (name, bytes) in &self.files {
            h.update((name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The files' total size in bytes.
    pub fn bytes(&self) -> usize {
        self.files.values().map(Vec::len).sum()
    }
}

/// One promotion or rollback, as the history lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterHistoryEntry {
    pub version: String,
    pub sha256: String,
    pub bytes: u64,
    /// "promote" or "rollback".
    pub action: String,
    /// Seconds since the Unix epoch (Redis's clock).
    pub at: u64,
}

impl SharedState {
    /// Stores `artifact` under its version (replacing one stored before) and adds `action`
    /// to the history, in one transaction; refused when over `max_bytes`.
    pub async fn store_router(
        &self,
        artifact: &RouterArtifact,
        max_bytes: usize,
        action: &str,
    ) -> Result<RouterHistoryEntry, StateError> {
        let bytes = artifact.bytes();
        if bytes > max_bytes {
            return Err(StateError::TooLarge {
                bytes,
                limit: max_bytes,
            });
        }
        let mut conn = self.conn()?;
        let (at, _): (u64, u64) = self
            .bounded(redis::cmd("TIME").query_async(&mut conn))
            .await?;
        let entry = RouterHistoryEntry {
            version: artifact.version.clone(),
            sha256: artifact.sha256(),
            bytes: bytes as u64,
            action: action.to_owned(),
            at,
        };
        let json = serde_json::to_string(&entry).map_err(|e| StateError::Reply(e.to_string()))?;
        let key = self.key(&["router-artifact", &artifact.version]);
        let dropped = self.falling_off(&artifact.version).await?;
        let mut fields: Vec<(String, Vec<u8>)> =
            vec![(CHECKSUM_FIELD.into(), entry.sha256.clone().into_bytes())];
        fields.extend(
            artifact
                .files
                .iter()
                .map(|(n, b)| (format!("f:{n}"), b.clone())),
        );
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(&key)
            .ignore()
            .hset_multiple(&key, &fields)
            .ignore()
            .lpush(self.key(&["router-history"]), json)
            .ignore()
            .ltrim(self.key(&["router-history"]), 0, HISTORY_LEN - 1)
            .ignore();
        for version in dropped {
            pipe.del(self.key(&["router-artifact", &version])).ignore();
        }
        self.bounded(pipe.query_async::<()>(&mut conn)).await?;
        Ok(entry)
    }

    /// The versions whose last history entry falls off when one more is pushed, and which
    /// no kept entry (nor `incoming`) names: their artifacts go with them.
    async fn falling_off(&self, incoming: &str) -> Result<Vec<String>, StateError> {
        let history = self.router_history_range(0, -1).await?;
        let keep = (HISTORY_LEN - 1).max(0) as usize;
        let kept: std::collections::BTreeSet<&str> = history
            .iter()
            .take(keep)
            .map(|e| e.version.as_str())
            .chain([incoming])
            .collect();
        let mut out: Vec<String> = history
            .iter()
            .skip(keep)
            .filter(|e| !kept.contains(e.version.as_str()))
            .map(|e| e.version.clone())
            .collect();
        out.dedup();
        Ok(out)
    }

    /// The stored files of router `version`, checked against their checksum.
    pub async fn router_artifact(
        &self,
        version: &str,
    ) -> Result<Option<RouterArtifact>, StateError> {
        let mut conn = self.conn()?;
        let key = self.key(&["router-artifact", version]);
        let mut fields: BTreeMap<String, Vec<u8>> = self.bounded(conn.hgetall(&key)).await?;
        let Some(stored) = fields.remove(CHECKSUM_FIELD) else {
            return Ok(None);
        };
        let files = fields
            .into_iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("f:")?.to_owned(), v)))
            .collect();
        let artifact = RouterArtifact {
            version: version.to_owned(),
            files,
        };
        let (stored, read) = (
            String::from_utf8_lossy(&stored).into_owned(),
            artifact.sha256(),
        );
        if stored != read {
            return Err(StateError::Corrupt {
                version: version.to_owned(),
                stored,
                read,
            });
        }
        Ok(Some(artifact))
    }

    /// Promotions and rollbacks, newest first (at most [`HISTORY_LEN`]).
    pub async fn router_history(&self) -> Result<Vec<RouterHistoryEntry>, StateError> {
        self.router_history_range(0, HISTORY_LEN - 1).await
    }

    async fn router_history_range(
        &self,
        start: isize,
        stop: isize,
    ) -> Result<Vec<RouterHistoryEntry>, StateError> {
        let mut conn = self.conn()?;
        let key = self.key(&["router-history"]);
        let lines: Vec<String> = self.bounded(conn.lrange(&key, start, stop)).await?;
        lines
            .iter()
            .map(|l| {
                serde_json::from_str(l)
                    .map_err(|e| StateError::Reply(format!("the router history: {e}")))
            })
            .collect()
    }
}
