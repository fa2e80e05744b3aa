//! The whole configuration: its sections, parsing with key paths, validation, and the
//! configuration used when there is no file at all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use switchyard_providers::ProviderKind;

use super::cache::CacheConfig;
use super::error::{ConfigError, names};
use super::learn::LearnConfig;
use super::log::LogConfig;
use super::models::{
    LOCAL_MODEL_ID, ModelConfig, ProviderConfig, RouteConfig, RoutePolicy, default_policy,
    validate_provider,
};
use super::reliability::{BreakerSection, RetryConfig};
use super::router::RouterConfig;
use super::server::ServerConfig;
use super::state::StateConfig;
use super::telemetry::TelemetryConfig;
use super::tenants::TenantConfig;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub router: RouterConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub breaker: BreakerSection,
    /// Upstreams by name.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Models clients may name (or routes may choose), by the id clients use.
    #[serde(default)]
    pub models: BTreeMap<String, ModelConfig>,
    /// Named routes: a set of models and how to choose among them. `auto` is the default
    /// route; without one, `auto` routes over every model with the default policy.
    #[serde(default)]
    pub routes: BTreeMap<String, RouteConfig>,
    /// API keys → tenants. With none, the gateway needs no key and everything is tenant
    /// `default`.
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantConfig>,
    /// The semantic cache.
    #[serde(default)]
    pub cache: CacheConfig,
    /// State shared by several replicas (Redis or Valkey).
    #[serde(default)]
    pub state: StateConfig,
    /// OpenTelemetry traces over OTLP/HTTP.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// The learner (`switchyard learn`).
    #[serde(default)]
    pub learn: LearnConfig,
}

impl Config {
    /// Reads and validates a TOML file. Errors name the file and the key path.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(path.display().to_string(), format!("cannot read: {e}"))
        })?;
        Self::parse(&text)
            .map_err(|e| ConfigError::new(format!("{}: {}", path.display(), e.path), e.message))
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::parse(text)
            .map_err(|e| ConfigError::new("(syntax)", e.to_string().trim().to_owned()))?;
        let config: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::new(
                if path == "." {
                    "(top level)".into()
                } else {
                    path
                },
                e.into_inner().message().trim().to_owned(),
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate_cache(&self) -> Result<(), ConfigError> {
        let c = &self.cache;
        let unit = |t: Option<f32>| t.is_none_or(|t| t > 0.0 && t <= 1.0);
        if !unit(c.threshold) {
            return Err(ConfigError::new("cache.threshold", "must be in (0, 1]"));
        }
        for (name, r) in &self.routes {
            if !unit(r.cache_threshold) {
                return Err(ConfigError::new(
                    format!("routes.{name}.cache_threshold"),
                    "must be in (0, 1]",
                ));
            }
            if !(0.0..=1.0).contains(&r.explore) {
                return Err(ConfigError::new(
                    format!("routes.{name}.explore"),
                    "must be in [0, 1] (a share of the route's requests, e.g. 0.05)",
                ));
            }
            if r.explore_daily_usd
                .is_some_and(|u| !(u >= 0.0 && u.is_finite()))
            {
                return Err(ConfigError::new(
                    format!("routes.{name}.explore_daily_usd"),
                    "must be a non-negative number of USD",
                ));
            }
        }
        if c.capacity == 0 {
            return Err(ConfigError::new("cache.capacity", "must be at least 1"));
        }
        if c.candidates == 0 || c.candidates > 64 {
            return Err(ConfigError::new(
                "cache.candidates",
                "must be between 1 and 64",
            ));
        }
        for (key, n) in [
            ("shards", c.shards),
            ("replication_factor", c.replication_factor),
        ] {
            if n == Some(0) {
                return Err(ConfigError::new(format!("cache.{key}"), "must be ≥ 1"));
            }
        }
        if let Some(url) = &c.url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::new(
                "cache.url",
                format!("{url:?} must start with http:// or https:// (Qdrant's gRPC port, 6334)"),
            ));
        }
        Ok(())
    }

    fn validate_telemetry(&self) -> Result<(), ConfigError> {
        let t = &self.telemetry;
        if let Some(url) = &t.endpoint
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::new(
                "telemetry.endpoint",
                format!(
                    "{url:?} must start with http:// or https:// (OTLP/HTTP, e.g. http://127.0.0.1:4318/v1/traces)"
                ),
            ));
        }
        if let Some(p) = &t.protocol
            && p != "http/protobuf"
            && p != "http/json"
        {
            return Err(ConfigError::new(
                "telemetry.protocol",
                format!("{p:?}: expected \"http/protobuf\" or \"http/json\""),
            ));
        }
        if t.export_delay_ms == 0 {
            return Err(ConfigError::new("telemetry.export_delay_ms", "must be > 0"));
        }
        Ok(())
    }

    fn validate_state(&self) -> Result<(), ConfigError> {
        let s = &self.state;
        if let Some(url) = &s.url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(ConfigError::new(
                "state.url",
                "must start with redis:// or rediss:// (redis://HOST:PORT[/DB])",
            ));
        }
        for (key, value) in [
            ("timeout_ms", s.timeout_ms),
            ("ids_ttl_s", s.ids_ttl_s),
            ("router_poll_ms", s.router_poll_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::new(format!("state.{key}"), "must be > 0"));
            }
        }
        if s.key_prefix.is_empty() || s.key_prefix.contains(char::is_whitespace) {
            return Err(ConfigError::new(
                "state.key_prefix",
                "must be a non-empty word without spaces",
            ));
        }
        Ok(())
    }

    /// Everything a config must satisfy that the types cannot say.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.validate_cache()?;
        self.validate_state()?;
        self.validate_telemetry()?;
        self.learn.validate()?;
        for (name, p) in &self.providers {
            validate_provider(name, p)?;
        }
        for (id, m) in &self.models {
            self.validate_model(id, m)?;
        }
        for (name, r) in &self.routes {
            self.validate_route(name, r)?;
        }
        for (name, t) in &self.tenants {
            self.validate_tenant(name, t)?;
        }
        let mut seen = std::collections::BTreeMap::new();
        for (name, t) in &self.tenants {
            if let Some(other) = seen.insert(t.key_sha256.to_ascii_lowercase(), name) {
                return Err(ConfigError::new(
                    format!("tenants.{name}.key_sha256"),
                    format!("the same key as tenant {other:?}"),
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.breaker.error_rate) {
            return Err(ConfigError::new("breaker.error_rate", "must be in [0, 1]"));
        }
        Ok(())
    }

    fn validate_model(&self, id: &str, m: &ModelConfig) -> Result<(), ConfigError> {
        if !self.providers.contains_key(&m.provider) {
            return Err(ConfigError::new(
                format!("models.{id}.provider"),
                format!(
                    "no provider {:?}; configured: {}",
                    m.provider,
                    names(self.providers.keys())
                ),
            ));
        }
        for (key, v) in [
            ("input_per_mtok", m.input_per_mtok),
            ("output_per_mtok", m.output_per_mtok),
            ("output_tokens", m.output_tokens),
        ] {
            if v.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                return Err(ConfigError::new(
                    format!("models.{id}.{key}"),
                    "must be a finite number ≥ 0",
                ));
            }
        }
        if m.quality.is_some_and(|q| !(0.0..=1.0).contains(&q)) {
            return Err(ConfigError::new(
                format!("models.{id}.quality"),
                "must be in [0, 1]",
            ));
        }
        Ok(())
    }

    fn validate_route(&self, name: &str, r: &RouteConfig) -> Result<(), ConfigError> {
        if self.models.contains_key(name) {
            return Err(ConfigError::new(
                format!("routes.{name}"),
                "a route may not share its name with a model",
            ));
        }
        if r.models.is_empty() {
            return Err(ConfigError::new(
                format!("routes.{name}.models"),
                "must list at least one model",
            ));
        }
        for (i, m) in r.models.iter().enumerate() {
            if !self.models.contains_key(m) {
                return Err(ConfigError::new(
                    format!("routes.{name}.models[{i}]"),
                    format!("no model {m:?}; configured: {}", names(self.models.keys())),
                ));
            }
        }
        Ok(())
    }

    fn validate_tenant(&self, name: &str, t: &TenantConfig) -> Result<(), ConfigError> {
        let hex = t.key_sha256.len() == 64 && t.key_sha256.chars().all(|c| c.is_ascii_hexdigit());
        if !hex {
            return Err(ConfigError::new(
                format!("tenants.{name}.key_sha256"),
                "must be 64 hex digits: the sha256 of the key (`printf %s \"$KEY\" | sha256sum`), never the key itself",
            ));
        }
        for (i, m) in t.models.iter().flatten().enumerate() {
            if !self.models.contains_key(m) {
                return Err(ConfigError::new(
                    format!("tenants.{name}.models[{i}]"),
                    format!("no model {m:?}"),
                ));
            }
        }
        for (i, r) in t.routes.iter().flatten().enumerate() {
            if !self.routes.contains_key(r) && r != "auto" {
                return Err(ConfigError::new(
                    format!("tenants.{name}.routes[{i}]"),
                    format!("no route {r:?}"),
                ));
            }
        }
        if t.daily_usd.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
            return Err(ConfigError::new(
                format!("tenants.{name}.daily_usd"),
                "must be ≥ 0",
            ));
        }
        Ok(())
    }

    /// The configuration with no file: one provider per API-key variable that is set
    /// (`OPENAI_API_KEY` with `OPENAI_BASE_URL` when set; `ANTHROPIC_API_KEY`), a small and
    /// a large model for each, priced from the built-in table, and `auto` over all of them.
    ///
    /// With `local_model` (a GGUF file), also the local tier: provider `local` and model
    /// `smollm2-135m-instruct`, free, with a fixed quality prior of 0.3, so `auto` answers
    /// with no API key at all.
    pub fn from_env(env: impl Fn(&str) -> Option<String>, local_model: Option<PathBuf>) -> Self {
        let mut config = Self::default();
        if let Some(path) = local_model {
            let mut provider = ProviderConfig::new(ProviderKind::Local, None, None);
            provider.model = Some(path);
            config.providers.insert("local".into(), provider);
            config.models.insert(
                LOCAL_MODEL_ID.into(),
                ModelConfig {
                    provider: "local".into(),
                    upstream_model: None,
                    input_per_mtok: Some(0.0),
                    output_per_mtok: Some(0.0),
                    quality_like: None,
                    quality: Some(0.3),
                    output_tokens: None,
                    context_window: Some(8192),
                },
            );
        }
        let mut add = |provider: &str,
                       kind,
                       base: Option<String>,
                       key_env: &str,
                       models: [(&str, &str); 2]| {
            config.providers.insert(
                provider.into(),
                ProviderConfig::new(kind, base, Some(key_env.into())),
            );
            for (id, like) in models {
                config.models.insert(
                    id.into(),
                    ModelConfig {
                        provider: provider.into(),
                        upstream_model: None,
                        input_per_mtok: None,
                        output_per_mtok: None,
                        quality_like: Some(like.into()),
                        quality: None,
                        output_tokens: None,
                        context_window: None,
                    },
                );
            }
        };
        if env("OPENAI_API_KEY").is_some() {
            add(
                "openai",
                ProviderKind::Openai,
                env("OPENAI_BASE_URL"),
                "OPENAI_API_KEY",
                // Stand-ins from the scorer's training data (RouterBench's tiers: a strong
                // mid-size model and GPT-4) until it is retrained on this traffic.
                [
                    ("gpt-4o-mini", "mistralai/mixtral-8x7b-chat"),
                    ("gpt-4o", "gpt-4-1106-preview"),
                ],
            );
        }
        if env("ANTHROPIC_API_KEY").is_some() {
            add(
                "anthropic",
                ProviderKind::Anthropic,
                env("ANTHROPIC_BASE_URL"),
                "ANTHROPIC_API_KEY",
                [
                    ("claude-3-5-haiku-latest", "claude-instant-v1"),
                    ("claude-3-5-sonnet-latest", "gpt-4-1106-preview"),
                ],
            );
        }
        config
    }

    /// The routes in force: the configured ones, plus `auto` over every model when no
    /// route is called `auto`.
    pub fn effective_routes(&self) -> BTreeMap<String, RouteConfig> {
        let mut routes = self.routes.clone();
        if !routes.contains_key("auto") && !self.models.contains_key("auto") {
            routes.insert(
                "auto".into(),
                RouteConfig {
                    models: self.models.keys().cloned().collect(),
                    // Without the learned router, the configured order.
                    policy: if self.router.enabled {
                        default_policy()
                    } else {
                        RoutePolicy::Order
                    },
                    cache_threshold: None,
                    cache: true,
                    explore: 0.0,
                    explore_daily_usd: None,
                    shadow: None,
                    target: None,
                },
            );
        }
        routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::DeviceSpec;

    const GOOD: &str = r#"
[providers.local]
kind = "openai"
base_url = "http://127.0.0.1:9999/v1"

[models.small]
provider = "local"
quality = 0.6

[models.big]
provider = "local"
quality = 0.9

[routes.auto]
models = ["small", "big"]
policy = "order"
"#;

    #[test]
    fn a_good_config_parses_with_defaults() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.routes["auto"].policy, RoutePolicy::Order);
        assert_eq!(c.router.device, DeviceSpec::Auto);
        assert!(c.log.log_prompts);
    }

    #[test]
    fn errors_name_the_key_path() {
        let cases = [
            (
                GOOD.replace("provider = \"local\"\nquality = 0.6", "provider = \"nope\""),
                "models.small.provider",
            ),
            (
                GOOD.replace("policy = \"order\"", "policy = \"fastest:1\""),
                "routes.auto.policy",
            ),
            (
                GOOD.replace("\"small\", \"big\"", "\"small\", \"huge\""),
                "routes.auto.models[1]",
            ),
            (
                GOOD.replace("quality = 0.9", "quality = 1.5"),
                "models.big.quality",
            ),
            (GOOD.replace("quality = 0.9", "qualty = 0.9"), "models.big"),
            (
                GOOD.replace("kind = \"openai\"", "kind = \"gopher\""),
                "providers.local.kind",
            ),
            (
                format!("{GOOD}\n[tenants.a]\nkey_sha256 = \"sk-plain\"\n"),
                "tenants.a.key_sha256",
            ),
            (
                "[server]\nlisten = \"localhost\"\n".to_owned(),
                "server.listen",
            ),
            ("[router]\ndevice = \"tpu\"\n".to_owned(), "router.device"),
            ("[cache]\nmethod = \"fuzzy\"\n".to_owned(), "cache.method"),
            ("[cache]\nshards = 0\n".to_owned(), "cache.shards"),
            ("[state]\nurl = \"http://h:6379\"\n".to_owned(), "state.url"),
            ("[state]\ntimeout_ms = 0\n".to_owned(), "state.timeout_ms"),
            (
                "[state]\nlimits_when_down = \"maybe\"\n".to_owned(),
                "state.limits_when_down",
            ),
            (
                "[telemetry]\nprotocol = \"grpc\"\n".to_owned(),
                "telemetry.protocol",
            ),
            (
                "[telemetry]\nendpoint = \"collector:4318\"\n".to_owned(),
                "telemetry.endpoint",
            ),
        ];
        for (text, path) in cases.into_iter().chain(validation_cases()) {
            let e = Config::parse(&text).unwrap_err();
            assert!(e.path.starts_with(path), "{path}: got {e}");
        }
        let e = Config::parse("[server\nlisten=1").unwrap_err();
        assert!(e.to_string().contains("line"), "{e}");
    }

    /// Configs that parse but break a rule `Config::validate` checks, with the key each
    /// error must name.
    fn validation_cases() -> Vec<(String, &'static str)> {
        let key = |c: char| c.to_string().repeat(64);
        let tenant = |name: &str, k: char, rest: &str| {
            format!("\n[tenants.{name}]\nkey_sha256 = \"{}\"\n{rest}", key(k))
        };
        vec![
            (
                GOOD.replace("http://127.0.0.1:9999/v1", "ftp://127.0.0.1/v1"),
                "providers.local.base_url",
            ),
            (
                GOOD.replace(
                    "kind = \"openai\"",
                    "kind = \"openai\"\nidle_timeout_ms = 0",
                ),
                "providers.local.idle_timeout_ms",
            ),
            (
                GOOD.replace("kind = \"openai\"", "kind = \"local\""),
                "providers.local.model",
            ),
            (
                GOOD.replace("quality = 0.9", "quality = 0.9\ninput_per_mtok = -1.0"),
                "models.big.input_per_mtok",
            ),
            (
                GOOD.replace(
                    "[routes.auto]",
                    "[routes.small]\nmodels = [\"big\"]\n\n[routes.auto]",
                ),
                "routes.small",
            ),
            (
                GOOD.replace("models = [\"small\", \"big\"]", "models = []"),
                "routes.auto.models",
            ),
            (
                format!("{GOOD}{}", tenant("a", 'a', "models = [\"huge\"]\n")),
                "tenants.a.models[0]",
            ),
            (
                format!(
                    "{GOOD}{}",
                    tenant("a", 'a', "routes = [\"auto\", \"nope\"]\n")
                ),
                "tenants.a.routes[1]",
            ),
            (
                format!("{GOOD}{}", tenant("a", 'a', "daily_usd = -1.0\n")),
                "tenants.a.daily_usd",
            ),
            (
                format!("{GOOD}{}{}", tenant("a", 'a', ""), tenant("b", 'A', "")),
                "tenants.b.key_sha256",
            ),
            (
                format!("{GOOD}\n[breaker]\nerror_rate = 1.5\n"),
                "breaker.error_rate",
            ),
        ]
    }

    #[test]
    fn no_file_means_providers_from_the_environment() {
        let none = Config::from_env(|_| None, None);
        assert!(none.models.is_empty());
        let offline = Config::from_env(|_| None, Some("m.gguf".into()));
        offline.validate().unwrap();
        assert_eq!(offline.effective_routes()["auto"].models, [LOCAL_MODEL_ID]);
        let c = Config::from_env(
            |k| (k == "OPENAI_API_KEY").then(|| "sk-test".to_owned()),
            None,
        );
        assert_eq!(
            c.models.keys().collect::<Vec<_>>(),
            ["gpt-4o", "gpt-4o-mini"]
        );
        c.validate().unwrap();
        let routes = c.effective_routes();
        assert_eq!(routes["auto"].models.len(), 2);
    }
}

#[cfg(test)]
mod example {
    #[test]
    fn the_annotated_example_is_valid() {
        let text = include_str!("../../../../switchyard.example.toml");
        let config = super::Config::parse(text).unwrap();
        assert_eq!(config.routes["auto"].models.len(), 5);
        assert_eq!(config.tenants["team-a"].rpm, Some(600));
    }
}
