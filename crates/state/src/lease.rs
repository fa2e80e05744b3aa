//! Leases: at most one holder of a named role (the learner) among processes sharing Redis.
//! A lease is a key holding its holder's id with an expiry; the holder renews it, anyone
//! may take it once it expires, and only its holder can renew or release it.

use std::time::Duration;

use crate::shared::{SharedState, StateError};

/// Takes `KEYS[1]` for `ARGV[1]` (or renews it when `ARGV[1]` holds it) for `ARGV[2]` ms.
const HOLD: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
elseif v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// Deletes `KEYS[1]` if `ARGV[1]` holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

impl SharedState {
    /// Takes lease `name` for `holder`, or renews it if `holder` has it, for `ttl`; returns
    /// whether `holder` holds it now.
    pub async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        let mut conn = self.conn()?;
        let script = redis::Script::new(HOLD);
        let mut call = script.prepare_invoke();
        call.key(self.key(&["lease", name]))
            .arg(holder)
            .arg(ttl.as_millis().max(1) as u64);
        let held: i64 = self.bounded(call.invoke_async(&mut conn)).await?;
        Ok(held == 1)
    }

    /// Gives lease `name` up, if `holder` has it.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StateError> {
        let mut conn = self.conn()?;
        let script = redis::Script::new(RELEASE);
        let mut call = script.prepare_invoke();
        call.key(self.key(&["lease", name])).arg(holder);
        let _: i64 = self.bounded(call.invoke_async(&mut conn)).await?;
        Ok(())
    }
}
