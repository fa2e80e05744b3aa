//! The embedded cache's own redo journal.
//!
//! Qdrant Edge 0.7 writes every update to its WAL but never replays that WAL when a shard
//! is loaded: whatever was not flushed when the process died is gone. So `EdgeCache`
//! journals each update here before applying it, replays the journal after loading the
//! shard, and empties it after every successful flush. Updates are idempotent in order
//! (upserts replace whole points; deletes and payload writes name their points or a fixed
//! filter), so replaying ops that a flush already persisted leaves the same state.
//!
//! Format: records `[len: u32 LE][fnv1a64(body): u64 LE][body: CBOR of the operation]`,
//! the encoding Qdrant's WAL uses for the same type. A torn or corrupt tail (a crash
//! mid-append) ends the replay and is cut off; nothing before it can be damaged by an
//! append. Appends reach the OS on every update (a killed process loses nothing
//! acknowledged); they are fsynced with each flush.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use qdrant_edge::UpdateOperation;

const HEADER: usize = 12;

#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Journal {
    /// Opens (or creates) the journal in `dir`; returns it with the operations to replay.
    pub fn open(dir: &Path) -> std::io::Result<(Self, Vec<UpdateOperation>)> {
        let path = dir.join("journal.cbor");
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut ops = Vec::new();
        let mut at = 0;
        while let Some(header) = bytes.get(at..at + HEADER) {
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let sum = u64::from_le_bytes(header[4..12].try_into().unwrap_or_default());
            let Some(body) = bytes.get(at + HEADER..at + HEADER + len) else {
                break;
            };
            if fnv1a64(body) != sum {
                break;
            }
            let Ok(op) = serde_cbor::from_slice::<UpdateOperation>(body) else {
                break;
            };
            ops.push(op);
            at += HEADER + len;
        }
        if at != bytes.len() {
            tracing::warn!(
                path = %path.display(),
                kept = ops.len(),
                dropped_bytes = bytes.len() - at,
                "the cache journal ends in a torn record (a crash mid-write); cutting it off"
            );
            file.set_len(at as u64)?;
        }
        Ok((Self { path, file }, ops))
    }

    /// Appends one operation (one `write` call, so a crash leaves at most a torn tail).
    pub fn append(&mut self, op: &UpdateOperation) -> std::io::Result<()> {
        let body = serde_cbor::to_vec(op).map_err(std::io::Error::other)?;
        let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
        let mut record = Vec::with_capacity(HEADER + body.len());
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&fnv1a64(&body).to_le_bytes());
        record.extend_from_slice(&body);
        self.file.write_all(&record)
    }

    /// Forgets everything: call only after the shard was flushed.
    pub fn clear(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_data()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use qdrant_edge::{PointId, PointOperations};

    use super::*;

    fn delete(id: u64) -> UpdateOperation {
        UpdateOperation::PointOperation(PointOperations::DeletePoints {
            ids: vec![PointId::NumId(id)],
        })
    }

    #[test]
    fn round_trips_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, ops) = Journal::open(dir.path()).unwrap();
        assert!(ops.is_empty());
        j.append(&delete(1)).unwrap();
        j.append(&delete(2)).unwrap();
        drop(j);
        // A torn third record.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("journal.cbor"))
            .unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        let (mut j, ops) = Journal::open(dir.path()).unwrap();
        assert_eq!(ops, vec![delete(1), delete(2)]);
        j.append(&delete(3)).unwrap();
        drop(j);
        let (mut j, ops) = Journal::open(dir.path()).unwrap();
        assert_eq!(ops, vec![delete(1), delete(2), delete(3)]);
        j.clear().unwrap();
        drop(j);
        assert!(Journal::open(dir.path()).unwrap().1.is_empty());
    }

    #[test]
    fn a_corrupt_record_ends_the_replay() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        j.append(&delete(1)).unwrap();
        j.append(&delete(2)).unwrap();
        drop(j);
        let path = dir.path().join("journal.cbor");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(Journal::open(dir.path()).unwrap().1, vec![delete(1)]);
    }
}
