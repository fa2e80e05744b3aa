//! The shared state itself: the Redis connection, budgets and rate limits by Lua script,
//! request ids, the published router.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Why a call to the shared state failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("invalid Redis URL (expected redis://HOST:PORT[/DB]): {0}")]
    Url(String),
    #[error("Redis did not answer within {0} ms")]
    Timeout(u64),
    #[error("Redis: {0}")]
    Redis(String),
    #[error("unexpected reply from Redis: {0}")]
    Reply(String),
    #[error(
        "the router is {bytes} bytes, over the shared state's limit of {limit} bytes ([state] router_max_bytes)"
    )]
    TooLarge { bytes: usize, limit: usize },
    #[error(
        "router {version} in the shared state does not match its checksum (stored {stored}, read {read}); publish it again"
    )]
    Corrupt {
        version: String,
        stored: String,
        read: String,
    },
}

impl From<redis::RedisError> for StateError {
    fn from(e: redis::RedisError) -> Self {
        Self::Redis(e.to_string())
    }
}

/// A tenant's limits, as the gateway's config states them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    pub daily_tokens: Option<u64>,
    pub daily_usd: Option<f64>,
    pub rpm: Option<u32>,
}

/// What the shared budgets and rate limit say about a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Admitted,
    /// The per-minute limit is reached; retry after this many seconds.
    RateLimited {
        retry_after_s: u64,
    },
    /// The day's token budget is used up (`spent` + `reserved` ≥ the limit).
    OverTokens {
        spent: u64,
        reserved: u64,
    },
    /// The day's USD budget is used up.
    OverUsd {
        spent: f64,
        reserved: f64,
    },
}

/// A request's hold on its tenant's shared budgets, to settle or release.
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    pub tenant: String,
    /// The UTC day (`YYYY-MM-DD`) the reservation was made on.
    pub day: String,
    pub tokens: u64,
    pub usd: f64,
}

/// The router a promotion published for every replica.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PublishedRouter {
    pub version: String,
    pub scorer: std::path::PathBuf,
}

/// How to reach Redis and how long to wait for it.
#[derive(Debug, Clone)]
pub struct StateOptions {
    pub url: String,
    /// Every key starts with this and a colon, so deployments can share a Redis.
    pub prefix: String,
    /// The longest a call may take before it counts as Redis being unavailable.
    pub timeout: Duration,
    /// How long request ids are kept for feedback.
    pub ids_ttl: Duration,
}

/// Budget keys live two days, so a reservation made before midnight settles after it.
const BUDGET_TTL_S: u64 = 2 * 24 * 3600;

/// The connection to the shared state (cheap to clone: one multiplexed connection).
#[derive(Clone)]
pub struct SharedState {
    client: redis::Client,
    /// Made on the first call, on the runtime that makes it (its driver task lives there).
    conn: std::sync::Arc<std::sync::OnceLock<ConnectionManager>>,
    options: StateOptions,
    reserve: std::sync::Arc<redis::Script>,
    settle: std::sync::Arc<redis::Script>,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: only where it points is shown.
        f.debug_struct("SharedState")
            .field("at", &self.describe())
            .finish_non_exhaustive()
    }
}

impl SharedState {
    /// Checks the URL; the connection is made on first use (so the gateway starts even
    /// while Redis is down, and outside any runtime) and then reconnects by itself with
    /// exponential backoff.
    pub fn connect_lazy(options: StateOptions) -> Result<Self, StateError> {
        let client = redis::Client::open(options.url.as_str())
            .map_err(|e| StateError::Url(redact(&options.url, &e.to_string())))?;
        Ok(Self {
            client,
            conn: std::sync::Arc::default(),
            options,
            reserve: std::sync::Arc::new(redis::Script::new(include_str!("reserve.lua"))),
            settle: std::sync::Arc::new(redis::Script::new(include_str!("settle.lua"))),
        })
    }

    /// Where the state lives, without credentials: `redis://HOST:PORT/DB`.
    pub fn describe(&self) -> String {
        describe_url(&self.options.url)
    }

    /// The multiplexed connection (clones share it). Must be called on a Tokio runtime.
    pub(crate) fn conn(&self) -> Result<ConnectionManager, StateError> {
        if let Some(c) = self.conn.get() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.options.timeout))
            .set_response_timeout(Some(self.options.timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(2));
        let made = ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            .map_err(|e| StateError::Redis(redact(&self.options.url, &e.to_string())))?;
        Ok(self.conn.get_or_init(|| made).clone())
    }

    pub(crate) fn key(&self, parts: &[&str]) -> String {
        let mut key = self.options.prefix.clone();
        for p in parts {
            key.push(':');
            key.push_str(p);
        }
        key
    }

    pub(crate) async fn bounded<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StateError> {
        let ms = self.options.timeout.as_millis() as u64;
        match tokio::time::timeout(self.options.timeout, call).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(StateError::Timeout(ms)),
        }
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> Result<(), StateError> {
        let mut conn = self.conn()?;
        let reply: String = self
            .bounded(redis::cmd("PING").query_async(&mut conn))
            .await?;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(StateError::Reply(reply))
        }
    }

    /// Checks `tenant`'s budgets for `day`, takes a rate token when `take_rate` (admission),
    /// and reserves `tokens` and `usd` if there is room, all in one atomic step.
    pub async fn reserve(
        &self,
        tenant: &str,
        day: &str,
        limits: Limits,
        take_rate: bool,
        tokens: u64,
        usd: f64,
    ) -> Result<Verdict, StateError> {
        let rpm = if take_rate {
            limits.rpm.map_or(0, |r| r.max(1))
        } else {
            0
        };
        let usd = if usd.is_finite() { usd.max(0.0) } else { 0.0 };
        let mut conn = self.conn()?;
        let mut call = self.reserve.prepare_invoke();
        call.key(self.key(&["budget", tenant, day]))
            .key(self.key(&["rate", tenant]))
            .arg(
                limits
                    .daily_tokens
                    .map_or(-1, |t| t.min(i64::MAX as u64) as i64),
            )
            .arg(limits.daily_usd.unwrap_or(-1.0))
            .arg(rpm)
            .arg(tokens)
            .arg(usd)
            .arg(BUDGET_TTL_S);
        let reply: Vec<String> = self.bounded(call.invoke_async(&mut conn)).await?;
        verdict(&reply)
    }

    /// Replaces `hold` with what the request spent (`0, 0.0` for a request that failed),
    /// charging the spend to `today`.
    pub async fn settle(
        &self,
        hold: &Hold,
        today: &str,
        tokens: u64,
        usd: f64,
    ) -> Result<(), StateError> {
        let usd = if usd.is_finite() { usd.max(0.0) } else { 0.0 };
        let mut conn = self.conn()?;
        let mut call = self.settle.prepare_invoke();
        call.key(self.key(&["budget", &hold.tenant, &hold.day]))
            .key(self.key(&["budget", &hold.tenant, today]))
            .arg(hold.tokens)
            .arg(hold.usd)
            .arg(tokens)
            .arg(usd)
            .arg(BUDGET_TTL_S);
        let _: i64 = self.bounded(call.invoke_async(&mut conn)).await?;
        Ok(())
    }

    /// Remembers that request `id` was made by `tenant`, for the ids' lifetime.
    pub async fn remember(&self, id: &str, tenant: &str) -> Result<(), StateError> {
        let mut conn = self.conn()?;
        let ttl = self.options.ids_ttl.as_secs().max(1);
        let key = self.key(&["request", id]);
        self.bounded(conn.set_ex::<_, _, ()>(key, tenant, ttl))
            .await
    }

    /// Remembers many ids in one round trip (what a replica could not write while Redis
    /// was away).
    pub async fn remember_all(&self, ids: &[(String, String)]) -> Result<(), StateError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ttl = self.options.ids_ttl.as_secs().max(1);
        let mut pipe = redis::pipe();
        for (id, tenant) in ids {
            pipe.set_ex(self.key(&["request", id]), tenant, ttl)
                .ignore();
        }
        let mut conn = self.conn()?;
        self.bounded(pipe.query_async::<()>(&mut conn)).await
    }

    /// The tenant that made request `id`, if the id is known.
    pub async fn tenant_of(&self, id: &str) -> Result<Option<String>, StateError> {
        let mut conn = self.conn()?;
        self.bounded(conn.get(self.key(&["request", id]))).await
    }

    /// Publishes the router every replica should serve.
    pub async fn publish_router(&self, router: &PublishedRouter) -> Result<(), StateError> {
        let json = serde_json::to_string(router).map_err(|e| StateError::Reply(e.to_string()))?;
        let mut conn = self.conn()?;
        self.bounded(conn.set::<_, _, ()>(self.key(&["router"]), json))
            .await
    }

    /// The router last published, if any.
    pub async fn published_router(&self) -> Result<Option<PublishedRouter>, StateError> {
        let mut conn = self.conn()?;
        let json: Option<String> = self.bounded(conn.get(self.key(&["router"]))).await?;
        json.map(|j| {
            serde_json::from_str(&j)
                .map_err(|e| StateError::Reply(format!("the published router: {e}")))
        })
        .transpose()
    }
}

fn verdict(reply: &[String]) -> Result<Verdict, StateError> {
    let num = |i: usize| -> Result<f64, StateError> {
        reply
            .get(i)
            .and_then(|s| s.parse::<f64>().ok())
            .ok_or_else(|| StateError::Reply(format!("{reply:?}")))
    };
    match reply.first().map(String::as_str) {
        Some("ok") => Ok(Verdict::Admitted),
        Some("rate") => Ok(Verdict::RateLimited {
            retry_after_s: (num(1)? as u64).max(1),
        }),
        Some("tokens") => Ok(Verdict::OverTokens {
            spent: num(1)? as u64,
            reserved: num(2)? as u64,
        }),
        Some("usd") => Ok(Verdict::OverUsd {
            spent: num(1)?,
            reserved: num(2)?,
        }),
        _ => Err(StateError::Reply(format!("{reply:?}"))),
    }
}

/// `redis://HOST:PORT/DB` of a URL, credentials dropped.
pub fn describe_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{rest}")
}

/// An error about `url` with any credentials in it blanked out.
fn redact(url: &str, message: &str) -> String {
    match url.split_once("://").and_then(|(_, r)| r.rsplit_once('@')) {
        Some((credentials, _)) if !credentials.is_empty() => message.replace(credentials, "***"),
        _ => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_described_without_credentials() {
        assert_eq!(
            describe_url("redis://user:s3cret@127.0.0.1:6379/2"),
            "redis://127.0.0.1:6379/2"
        );
        assert_eq!(
            describe_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        let e = redact("redis://:s3cret@h:1", "cannot parse :s3cret@h:1");
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn script_replies_become_verdicts() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(verdict(&s(&["ok"])).unwrap(), Verdict::Admitted);
        assert_eq!(
            verdict(&s(&["rate", "3"])).unwrap(),
            Verdict::RateLimited { retry_after_s: 3 }
        );
        assert_eq!(
            verdict(&s(&["tokens", "90", "15"])).unwrap(),
            Verdict::OverTokens {
                spent: 90,
                reserved: 15
            }
        );
        assert!(verdict(&s(&["usd", "x"])).is_err());
        assert!(verdict(&s(&[])).is_err());
    }
}
