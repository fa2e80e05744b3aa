//! API keys → tenants, with allow-lists, daily token and USD budgets and a requests-per-minute
//! limit. Counters live in memory: a restart starts the day's spend from zero.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::http::HeaderMap;
use chrono::{NaiveDate, Utc};
use sha2::{Digest, Sha256};

use crate::config::TenantConfig;
use crate::error::{ApiError, ErrorKind};

/// The tenant of requests when no tenants are configured.
pub const DEFAULT_TENANT: &str = "default";

pub fn sha256_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in Sha256::digest(bytes) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// The tenant a request belongs to, from `Authorization: Bearer KEY` (or `x-api-key`).
pub fn authenticate<'a>(
    tenants: &'a BTreeMap<String, TenantConfig>,
    headers: &HeaderMap,
) -> Result<Option<(&'a str, &'a TenantConfig)>, ApiError> {
    if tenants.is_empty() {
        return Ok(None);
    }
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let Some(key) = key else {
        return Err(ApiError::new(
            ErrorKind::InvalidApiKey,
            "missing API key: send `Authorization: Bearer YOUR_KEY`",
        ));
    };
    let hash = sha256_hex(key.as_bytes());
    tenants
        .iter()
        .find(|(_, t)| t.key_sha256.eq_ignore_ascii_case(&hash))
        .map(|(name, t)| Some((name.as_str(), t)))
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::InvalidApiKey,
                "invalid API key (the key itself is not logged)",
            )
        })
}

#[derive(Debug)]
struct Usage {
    day: NaiveDate,
    tokens: u64,
    usd: f64,
    /// Token bucket for requests per minute.
    bucket: f64,
    refilled: Instant,
}

/// Per-tenant spend and request rate.
#[derive(Debug, Default)]
pub struct Ledger {
    usage: Mutex<BTreeMap<String, Usage>>,
}

impl Ledger {
    fn with<R>(&self, tenant: &str, f: impl FnOnce(&mut Usage) -> R) -> R {
        let mut map = self
            .usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let today = Utc::now().date_naive();
        let u = map.entry(tenant.to_owned()).or_insert_with(|| Usage {
            day: today,
            tokens: 0,
            usd: 0.0,
            bucket: f64::NAN,
            refilled: Instant::now(),
        });
        if u.day != today {
            u.day = today;
            u.tokens = 0;
            u.usd = 0.0;
        }
        f(u)
    }

    /// Admits one request or says why not (429 in OpenAI's shape).
    pub fn admit(&self, tenant: &str, config: &TenantConfig) -> Result<(), ApiError> {
        self.with(tenant, |u| {
            if let Some(limit) = config.daily_tokens
                && u.tokens >= limit
            {
                return Err(quota(format!(
                    "tenant {tenant:?} has used its daily budget of {limit} tokens ({} used); it resets at 00:00 UTC",
                    u.tokens
                )));
            }
            if let Some(limit) = config.daily_usd
                && u.usd >= limit
            {
                return Err(quota(format!(
                    "tenant {tenant:?} has spent its daily budget of ${limit} (${:.6} spent); it resets at 00:00 UTC",
                    u.usd
                )));
            }
            if let Some(rpm) = config.rpm {
                let capacity = f64::from(rpm.max(1));
                let now = Instant::now();
                if u.bucket.is_nan() {
                    u.bucket = capacity;
                }
                u.bucket = (u.bucket
                    + now.duration_since(u.refilled).as_secs_f64() * capacity / 60.0)
                    .min(capacity);
                u.refilled = now;
                if u.bucket < 1.0 {
                    let wait = ((1.0 - u.bucket) * 60.0 / capacity).ceil() as u64;
                    return Err(ApiError::new(
                        ErrorKind::RateLimited,
                        format!("tenant {tenant:?} is limited to {rpm} requests per minute; retry in {wait} s"),
                    )
                    .retry_after(wait.max(1)));
                }
                u.bucket -= 1.0;
            }
            Ok(())
        })
    }

    /// Charges a finished request.
    pub fn charge(&self, tenant: &str, tokens: u64, usd: f64) {
        self.with(tenant, |u| {
            u.tokens += tokens;
            if usd.is_finite() {
                u.usd += usd;
            }
        });
    }
}

fn quota(message: String) -> ApiError {
    ApiError::new(ErrorKind::QuotaExceeded, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn sha256_hex_is_lowercase_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    fn tenant(rpm: Option<u32>, tokens: Option<u64>) -> TenantConfig {
        TenantConfig {
            key_sha256: sha256_hex(b"sk-a"),
            models: None,
            routes: None,
            daily_tokens: tokens,
            daily_usd: Some(0.01),
            rpm,
        }
    }

    #[test]
    fn keys_are_matched_by_hash() {
        let mut tenants = BTreeMap::new();
        tenants.insert("a".to_owned(), tenant(None, None));
        let mut h = HeaderMap::new();
        assert_eq!(
            authenticate(&tenants, &h).unwrap_err().status(),
            StatusCode::UNAUTHORIZED
        );
        h.insert("authorization", "Bearer sk-b".parse().unwrap());
        let e = authenticate(&tenants, &h).unwrap_err();
        assert!(!e.message.contains("sk-b"));
        h.insert("authorization", "Bearer sk-a".parse().unwrap());
        assert_eq!(authenticate(&tenants, &h).unwrap().unwrap().0, "a");
    }

    #[test]
    fn budgets_and_rate_limits() {
        let ledger = Ledger::default();
        let t = tenant(Some(2), Some(100));
        ledger.admit("a", &t).unwrap();
        ledger.admit("a", &t).unwrap();
        let e = ledger.admit("a", &t).unwrap_err();
        assert_eq!(e.kind.code(), Some("rate_limit_exceeded"));
        assert!(e.retry_after.is_some());

        let t = tenant(None, Some(100));
        ledger.charge("b", 100, 0.0);
        assert_eq!(
            ledger.admit("b", &t).unwrap_err().kind.code(),
            Some("insufficient_quota")
        );
        ledger.charge("c", 1, 0.02);
        assert!(ledger.admit("c", &t).unwrap_err().message.contains("$0.01"));
    }
}
