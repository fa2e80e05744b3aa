//! API keys → tenants, and what each tenant may use (its route and model allow-lists):
//! the one place both are checked.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use super::error::LimitError;
use crate::config::TenantConfig;

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
) -> Result<Option<(&'a str, &'a TenantConfig)>, LimitError> {
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
        return Err(LimitError::MissingKey);
    };
    let hash = sha256_hex(key.as_bytes());
    tenants
        .iter()
        .find(|(_, t)| t.key_sha256.eq_ignore_ascii_case(&hash))
        .map(|(name, t)| Some((name.as_str(), t)))
        .ok_or(LimitError::InvalidKey)
}

/// Whether `tenant` (none: no tenants configured) may use route `name`.
pub fn may_use_route(tenant: Option<&TenantConfig>, name: &str) -> bool {
    tenant
        .and_then(|t| t.routes.as_ref())
        .is_none_or(|r| r.iter().any(|r| r == name))
}

/// Whether `tenant` (none: no tenants configured) may use model `id`.
pub fn may_use_model(tenant: Option<&TenantConfig>, id: &str) -> bool {
    tenant
        .and_then(|t| t.models.as_ref())
        .is_none_or(|m| m.iter().any(|m| m == id))
}

/// What a tenant asks to use: a route or a pinned model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Route,
    Model,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Route => "route",
            Self::Model => "model",
        }
    }
}

/// [`may_use_route`] or [`may_use_model`] as a refusal naming the tenant.
pub fn check_allowed(
    tenant: Option<(&str, &TenantConfig)>,
    what: Target,
    name: &str,
) -> Result<(), LimitError> {
    let config = tenant.map(|(_, t)| t);
    let ok = match what {
        Target::Route => may_use_route(config, name),
        Target::Model => may_use_model(config, name),
    };
    if ok {
        return Ok(());
    }
    Err(LimitError::NotAllowed {
        tenant: tenant.map_or("", |(n, _)| n).to_owned(),
        what: what.as_str(),
        name: name.to_owned(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::error::ApiError;
    use axum::http::StatusCode;

    #[test]
    fn sha256_hex_is_lowercase_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// A tenant of key `sk-a` with $0.01 a day and the given limits.
    pub(crate) fn tenant(rpm: Option<u32>, tokens: Option<u64>) -> TenantConfig {
        TenantConfig {
            key_sha256: sha256_hex(b"sk-a"),
            models: None,
            routes: None,
            daily_tokens: tokens,
            daily_usd: Some(0.01),
            rpm,
            explore: true,
        }
    }

    #[test]
    fn keys_are_matched_by_hash() {
        let mut tenants = BTreeMap::new();
        tenants.insert("a".to_owned(), tenant(None, None));
        let mut h = HeaderMap::new();
        let api = |h: &HeaderMap| ApiError::from(authenticate(&tenants, h).unwrap_err());
        assert_eq!(api(&h).status(), StatusCode::UNAUTHORIZED);
        h.insert("authorization", "Bearer sk-b".parse().unwrap());
        let e = api(&h);
        assert!(!e.message.contains("sk-b"));
        h.insert("authorization", "Bearer sk-a".parse().unwrap());
        assert_eq!(authenticate(&tenants, &h).unwrap().unwrap().0, "a");
    }

    #[test]
    fn allow_lists_name_the_tenant() {
        let mut t = tenant(None, None);
        t.routes = Some(vec!["auto".into()]);
        t.models = Some(vec!["m1".into()]);
        assert!(check_allowed(Some(("a", &t)), Target::Route, "auto").is_ok());
        assert!(check_allowed(Some(("a", &t)), Target::Model, "m1").is_ok());
        let e = ApiError::from(check_allowed(Some(("a", &t)), Target::Model, "m2").unwrap_err());
        assert_eq!(e.message, "tenant \"a\" may not use model \"m2\"");
        assert_eq!(e.kind.code(), Some("model_not_allowed"));
        assert!(check_allowed(None, Target::Route, "anything").is_ok());
    }
}
