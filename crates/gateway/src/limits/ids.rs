//! The ids of recent requests and the tenant of each, so feedback is taken only from the
//! tenant that made the request.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// The recent request ids and the tenant each belongs to, so feedback is accepted only from
/// the tenant that made the request (anyone else, like an unknown id, gets a 404). Kept as
/// the ids' random 128 bits in tables allocated once at full size: a set of strings that
/// grew as traffic came in rehashed all of it, under the lock, on some unlucky request's
/// path. Tenant names are interned: one allocation per tenant, not per id. Filled from the
/// traffic log at start ([`Self::load`]), so feedback still works after a restart.
#[derive(Debug)]
pub struct RecentIds {
    order: VecDeque<u128>,
    set: HashMap<u128, Arc<str>>,
    tenants: HashMap<String, Arc<str>>,
}

impl Default for RecentIds {
    fn default() -> Self {
        Self {
            order: VecDeque::with_capacity(Self::CAPACITY),
            set: HashMap::with_capacity(Self::CAPACITY),
            tenants: HashMap::new(),
        }
    }
}

impl RecentIds {
    const CAPACITY: usize = 200_000;
    const PREFIX: &str = "chatcmpl-sy-";

    /// A new request id: `chatcmpl-sy-` and 32 hex digits (a v4 UUID's).
    pub fn new_id() -> String {
        format!("{}{}", Self::PREFIX, uuid::Uuid::new_v4().simple())
    }

    fn key(id: &str) -> Option<u128> {
        let hex = id.strip_prefix(Self::PREFIX)?;
        // Exactly as `new_id` writes them: `from_str_radix` alone would also take a sign or
        // upper case, and so know ids no response ever carried.
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if hex.len() != 32 || !hex.bytes().all(lower_hex) {
            return None;
        }
        u128::from_str_radix(hex, 16).ok()
    }

    pub fn insert(&mut self, id: &str, tenant: &str) {
        let Some(key) = Self::key(id) else {
            return;
        };
        let tenant = match self.tenants.get(tenant) {
            Some(t) => t.clone(),
            None => {
                let t: Arc<str> = tenant.into();
                self.tenants.insert(tenant.to_owned(), t.clone());
                t
            }
        };
        if self.set.contains_key(&key) {
            return;
        }
        if self.order.len() >= Self::CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(key, tenant);
        self.order.push_back(key);
    }

    /// The tenant that made request `id`, if it is a recent one.
    pub fn tenant_of(&self, id: &str) -> Option<&str> {
        Self::key(id)
            .and_then(|k| self.set.get(&k))
            .map(AsRef::as_ref)
    }

    /// The ids and tenants of the newest records in the traffic logs under `dir` (the
    /// current file, then rotated ones newest first, until capacity; old rotated files are
    /// not read). Unreadable files and lines are skipped: this only decides which feedback
    /// is accepted.
    pub fn load(&mut self, dir: &std::path::Path) {
        let files = crate::traffic::logs_in(dir);
        let mut newest_first: Vec<Vec<(String, String)>> = Vec::new();
        let mut total = 0;
        for path in files.iter().rev() {
            let ids = ids_in(path);
            total += ids.len();
            newest_first.push(ids);
            if total >= Self::CAPACITY {
                break;
            }
        }
        for (id, tenant) in newest_first.iter().rev().flatten() {
            self.insert(id, tenant);
        }
    }
}

/// `(request_id, tenant)` of each record in one traffic log.
fn ids_in(path: &std::path::Path) -> Vec<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Line {
        request_id: String,
        tenant: String,
    }
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    std::io::BufRead::lines(std::io::BufReader::new(file))
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<Line>(&l).ok())
        .map(|l| (l.request_id, l.tenant))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_know_their_own_and_forget_the_oldest() {
        let mut recent = RecentIds::default();
        let first = RecentIds::new_id();
        recent.insert(&first, "a");
        assert_eq!(recent.tenant_of(&first), Some("a"));
        assert_eq!(recent.tenant_of(&RecentIds::new_id()), None);
        let upper = format!(
            "chatcmpl-sy-{}",
            first["chatcmpl-sy-".len()..].to_uppercase()
        );
        let signed = format!("chatcmpl-sy-+{}", &first["chatcmpl-sy-".len() + 1..]);
        for bad in [
            upper.as_str(),
            signed.as_str(),
            "",
            "chatcmpl-sy-",
            "chatcmpl-sy-xyz",
            "other-id",
            &first[1..],
        ] {
            recent.insert(bad, "a");
            assert_eq!(recent.tenant_of(bad), None, "{bad:?}");
        }
        for _ in 0..RecentIds::CAPACITY {
            recent.insert(&RecentIds::new_id(), "b");
        }
        assert_eq!(
            recent.tenant_of(&first),
            None,
            "the oldest id is evicted at capacity"
        );
        assert_eq!(recent.tenants.len(), 2, "tenant names are interned");
        assert_eq!(recent.order.len(), RecentIds::CAPACITY);
        assert_eq!(recent.set.len(), RecentIds::CAPACITY);
    }

    #[test]
    fn recent_ids_come_back_from_the_log_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let rotated = dir.path().join("traffic-20261201T000000.000Z.jsonl");
        let (old, new) = (RecentIds::new_id(), RecentIds::new_id());
        std::fs::write(
            &rotated,
            format!("{{\"request_id\":\"{old}\",\"tenant\":\"a\"}}\nnot json\n"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join(crate::traffic::TRAFFIC_FILE),
            format!("{{\"request_id\":\"{new}\",\"tenant\":\"b\",\"status\":200}}\n"),
        )
        .unwrap();
        let mut recent = RecentIds::default();
        recent.load(dir.path());
        assert_eq!(recent.tenant_of(&old), Some("a"));
        assert_eq!(recent.tenant_of(&new), Some("b"));
        let mut none = RecentIds::default();
        none.load(&dir.path().join("missing"));
        assert_eq!(none.tenant_of(&old), None);
    }
}
