//! An on-disk cache of embeddings keyed by encoder checksum and text hash, so retraining
//! (or evaluating) on the same prompts never re-embeds them.
//!
//! One append-only file per encoder: `<dir>/<weights sha256[..16]>-<dim>-<truncation>.emb`, a sequence
//! of records `[sha256(text) 16 bytes][dim × f32 LE]`. A torn final record (a crash
//! mid-write) is ignored on load; nothing earlier can be damaged by an append.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use switchyard_core::EncoderInfo;

type Key = [u8; 16];

/// Cached embeddings for one encoder.
#[derive(Debug)]
pub struct EmbeddingCache {
    path: PathBuf,
    dim: usize,
    vectors: HashMap<Key, Vec<f32>>,
}

pub fn text_key(text: &str) -> Key {
    let digest = Sha256::digest(text.as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

impl EmbeddingCache {
    /// Opens (or starts) the cache for `encoder` under `dir`.
    pub fn open(dir: &Path, encoder: &EncoderInfo) -> std::io::Result<Self> {
        fs_err::create_dir_all(dir)?;
        let sha: String = encoder.weights_sha256.chars().take(16).collect();
        let path = dir.join(format!(
            "{sha}-{}-{}.emb",
            encoder.dim,
            encoder.truncation.tag()
        ));
        let dim = encoder.dim;
        let mut vectors = HashMap::new();
        if path.is_file() {
            let bytes = fs_err::read(&path)?;
            let record = 16 + dim * 4;
            let whole = bytes.len() - bytes.len() % record;
            if whole != bytes.len() {
                // Drop a torn tail so the next append starts on a record boundary.
                tracing::warn!(path = %path.display(), "dropping a partial record at the end of the embedding cache");
                fs_err::OpenOptions::new()
                    .write(true)
                    .open(&path)?
                    .set_len(whole as u64)?;
            }
            for chunk in bytes[..whole].chunks_exact(record) {
                let mut key = [0u8; 16];
                key.copy_from_slice(&chunk[..16]);
                let v = chunk[16..]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                vectors.insert(key, v);
            }
        }
        Ok(Self { path, dim, vectors })
    }

    pub fn len(&self) -> usize {
        self.vectors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }

    pub fn get(&self, text: &str) -> Option<&[f32]> {
        self.vectors.get(&text_key(text)).map(Vec::as_slice)
    }

    /// Adds embeddings and appends them to the file.
    pub fn insert_all(&mut self, items: &[(&str, Vec<f32>)]) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(items.len() * (16 + self.dim * 4));
        let mut added = Vec::with_capacity(items.len());
        for (text, v) in items {
            if v.len() != self.dim {
                continue;
            }
            let key = text_key(text);
            bytes.extend_from_slice(&key);
            for x in v {
                bytes.extend_from_slice(&x.to_le_bytes());
            }
            added.push((key, v.clone()));
        }
        // One locked append per batch: two trainers sharing a cache directory cannot
        // interleave partial records.
        let mut file = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.file().lock()?;
        let written = file.write_all(&bytes).and_then(|()| file.flush());
        file.file().unlock()?;
        written?;
        self.vectors.extend(added);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> EncoderInfo {
        EncoderInfo {
            id: "test".into(),
            dim: 3,
            max_tokens: 8,
            weights_sha256: "abcdef0123456789ffff".into(),
            truncation: switchyard_core::Truncation::Head,
        }
    }

    #[test]
    fn survives_reopen_and_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = EmbeddingCache::open(dir.path(), &info()).unwrap();
        cache
            .insert_all(&[("a", vec![1.0, 2.0, 3.0]), ("b", vec![4.0, 5.0, 6.0])])
            .unwrap();
        // Simulate a crash in the middle of a third record.
        let path = dir.path().join("abcdef0123456789-3-head.emb");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[9; 20]);
        std::fs::write(&path, bytes).unwrap();
        let cache = EmbeddingCache::open(dir.path(), &info()).unwrap();
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("b"), Some(&[4.0, 5.0, 6.0][..]));
        assert_eq!(cache.get("c"), None);
        // Appending after the repair keeps every record readable.
        let mut cache = cache;
        cache.insert_all(&[("c", vec![7.0, 8.0, 9.0])]).unwrap();
        let cache = EmbeddingCache::open(dir.path(), &info()).unwrap();
        assert_eq!(cache.get("c"), Some(&[7.0, 8.0, 9.0][..]));
        assert_eq!(cache.len(), 3);
    }
}
