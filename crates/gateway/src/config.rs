//! The gateway's TOML configuration: types with defaults for everything, validation whose
//! errors name the key path, and the configuration used when there is no file at all.
//!
//! The annotated example is `switchyard.example.toml` at the repository root.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use switchyard_cache::Method;
use switchyard_core::DeviceSpec;
use switchyard_core::policy::Policy;
use switchyard_providers::ProviderKind;

/// One configuration problem, located by its key path (`models.gpt-4o.provider`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

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
}

/// Traces exported over OTLP/HTTP (see `crate::runtime::telemetry`). Off unless `endpoint` or
/// `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set; the
/// exporter also reads `OTEL_EXPORTER_OTLP_HEADERS` and the other standard variables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's traces URL, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: Option<String>,
    /// `http/protobuf` (the default) or `http/json`; `OTEL_EXPORTER_OTLP_PROTOCOL` when unset.
    pub protocol: Option<String>,
    /// `service.name` (default `OTEL_SERVICE_NAME`, else `switchyard`).
    pub service_name: Option<String>,
    /// Put the routed prompt in spans (`gen_ai.input.messages`). Off: prompts stay out of
    /// traces. Needs `[log] log_prompts` too.
    #[serde(default)]
    pub capture_prompts: bool,
    /// How long spans wait to be sent in a batch.
    #[serde(default = "TelemetryConfig::default_delay")]
    pub export_delay_ms: u64,
}

impl TelemetryConfig {
    fn default_delay() -> u64 {
        1_000
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            protocol: None,
            service_name: None,
            capture_prompts: false,
            export_delay_ms: Self::default_delay(),
        }
    }
}

/// State that replicas share: tenant budgets and rate limits, request ids for feedback,
/// the router to serve. Without a URL (here or in `SWITCHYARD_REDIS_URL`) each process
/// keeps its own, as a single gateway needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `redis://HOST:PORT[/DB]`. A URL with a password belongs in `SWITCHYARD_REDIS_URL`,
    /// not in this file; it is never logged or shown.
    pub url: Option<String>,
    /// Every key starts with `PREFIX:`, so deployments can share one Redis.
    #[serde(default = "StateConfig::default_prefix")]
    pub key_prefix: String,
    /// The longest one call may wait for Redis before it counts as unreachable.
    #[serde(default = "StateConfig::default_timeout")]
    pub timeout_ms: u64,
    /// What budgets and rate limits do while Redis is unreachable: `local` (each replica
    /// enforces every tenant's limits on its own, so up to N replicas × each limit can be
    /// admitted during the outage; what was spent is added to the shared totals once Redis
    /// is back) or `reject` (requests of tenants with limits get 503 until it is back).
    #[serde(default)]
    pub limits_when_down: WhenDown,
    /// How long request ids are kept for feedback.
    #[serde(default = "StateConfig::default_ids_ttl")]
    pub ids_ttl_s: u64,
    /// How often each replica checks for a router promoted on another one.
    #[serde(default = "StateConfig::default_router_poll")]
    pub router_poll_ms: u64,
}

/// The behaviour of shared limits while Redis is unreachable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenDown {
    /// Fail open: this replica's own limits.
    #[default]
    Local,
    /// Fail closed: 503.
    Reject,
}

impl WhenDown {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Reject => "reject",
        }
    }
}

impl StateConfig {
    fn default_prefix() -> String {
        "switchyard".into()
    }
    fn default_timeout() -> u64 {
        250
    }
    fn default_ids_ttl() -> u64 {
        7 * 86_400
    }
    fn default_router_poll() -> u64 {
        2_000
    }
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            url: None,
            key_prefix: Self::default_prefix(),
            timeout_ms: Self::default_timeout(),
            limits_when_down: WhenDown::default(),
            ids_ttl_s: Self::default_ids_ttl(),
            router_poll_ms: Self::default_router_poll(),
        }
    }
}

/// Where cached answers live, and when one may be served.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Look answers up and store them. Needs the encoder (`[router] enabled`).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `edge` (Qdrant in-process, on disk under `path`) or `qdrant` (a server at `url`).
    /// Default: `qdrant` when `url` or `SWITCHYARD_QDRANT_URL` is set, else `edge`.
    pub backend: Option<CacheBackend>,
    /// The embedded store's directory.
    #[serde(default = "CacheConfig::default_path")]
    pub path: PathBuf,
    /// The Qdrant server's gRPC URL (port 6334). `SWITCHYARD_QDRANT_URL` is used when unset.
    pub url: Option<String>,
    /// The env var holding the Qdrant API key (never the key itself).
    pub api_key_env: Option<String>,
    #[serde(default = "CacheConfig::default_collection")]
    pub collection: String,
    /// A Qdrant cluster: the shards and the copies of each shard when Switchyard creates
    /// the collection (an existing one keeps its own).
    pub shards: Option<u32>,
    pub replication_factor: Option<u32>,
    /// `verifier` (guard + learned verifier; the default), `guard` (cosine + guard) or
    /// `cosine`.
    #[serde(default = "CacheConfig::default_method", deserialize_with = "parsed")]
    pub method: Method,
    /// Minimum score for a semantic hit: the verifier's probability, or cosine. Default:
    /// the method's operating point from `switchyard eval cache`. Routes may override it.
    pub threshold: Option<f32>,
    /// Entries are served for this long after they are stored.
    #[serde(default = "CacheConfig::default_ttl")]
    pub ttl_s: u64,
    /// Most entries kept; the least recently hit are evicted beyond it.
    #[serde(default = "CacheConfig::default_capacity")]
    pub capacity: u64,
    /// Nearest entries judged per lookup.
    #[serde(default = "CacheConfig::default_candidates")]
    pub candidates: usize,
    /// The trained hit verifier. Default: `models/cache-verifier/verifier.json`, and when
    /// that file is missing the cache is off (with a warning) rather than the start failing.
    pub verifier: Option<PathBuf>,
    /// The env var holding the key for `POST /v1/cache/invalidate`; the endpoint is off
    /// without it.
    pub admin_key_env: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheBackend {
    Edge,
    Qdrant,
}

/// Where the committed verifier is, relative to the repository root.
pub const DEFAULT_VERIFIER: &str = "models/cache-verifier/verifier.json";

impl CacheConfig {
    fn default_path() -> PathBuf {
        "data/cache".into()
    }
    fn default_collection() -> String {
        "switchyard-cache".into()
    }
    fn default_method() -> Method {
        Method::Verifier
    }
    fn default_ttl() -> u64 {
        86_400
    }
    fn default_capacity() -> u64 {
        100_000
    }
    fn default_candidates() -> usize {
        4
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            backend: None,
            path: Self::default_path(),
            url: None,
            api_key_env: None,
            collection: Self::default_collection(),
            shards: None,
            replication_factor: None,
            method: Self::default_method(),
            threshold: None,
            ttl_s: Self::default_ttl(),
            capacity: Self::default_capacity(),
            candidates: Self::default_candidates(),
            verifier: None,
            admin_key_env: None,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// A field read from its string form through `FromStr`; the parse error names the problem
/// and `Config::parse` adds the key path.
fn parsed<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let text = String::deserialize(de)?;
    text.parse()
        .map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
}

/// [`parsed`] for an optional value.
fn parsed_opt<'de, D, T>(de: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    parsed(de).map(Some)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// HOST:PORT, e.g. 127.0.0.1:8080.
    #[serde(default = "default_listen", deserialize_with = "parsed")]
    pub listen: SocketAddr,
    /// Larger request bodies get 413.
    #[serde(default = "ServerConfig::default_max_body")]
    pub max_body_bytes: usize,
    /// Overall deadline for one request, retries and fallbacks included.
    #[serde(default = "ServerConfig::default_deadline")]
    pub deadline_ms: u64,
    /// Event loops serving connections, each a single-threaded runtime on its own thread
    /// with its own listening socket on the same address (`SO_REUSEPORT`); 0 = one per
    /// CPU core. See [`crate::serve_on_threads`].
    #[serde(default)]
    pub io_threads: usize,
    /// How long a connection may take to send a request's headers, counted from when it
    /// is ready for one: a new connection, or a keep-alive connection after its last
    /// answer (so this is also the idle keep-alive timeout). Then it is closed.
    #[serde(default = "ServerConfig::default_header_timeout")]
    pub header_timeout_ms: u64,
    /// How long a request's body may take to arrive once its headers are in (408 after).
    #[serde(default = "ServerConfig::default_body_timeout")]
    pub body_timeout_ms: u64,
    /// Open client connections at most; beyond, new ones get a 503 and are closed at
    /// once. 0 = three quarters of the process's open-file limit (`ulimit -n`), so the
    /// gateway keeps descriptors for its upstreams, cache and log.
    #[serde(default)]
    pub max_connections: usize,
    /// Whether `GET /v1/models` needs a tenant's key when tenants are configured (as
    /// OpenAI's does). `/health` and `/ready` never do.
    #[serde(default = "yes")]
    pub models_need_key: bool,
    /// Whether `GET /metrics` needs a tenant's key when tenants are configured. Off by
    /// default: Prometheus scrapes it from inside the network; bind or firewall
    /// accordingly, or turn this on.
    #[serde(default)]
    pub metrics_need_key: bool,
}

impl ServerConfig {
    fn default_max_body() -> usize {
        4 * 1024 * 1024
    }
    fn default_deadline() -> u64 {
        300_000
    }
    fn default_header_timeout() -> u64 {
        30_000
    }
    fn default_body_timeout() -> u64 {
        60_000
    }

    /// `max_connections`, with 0 resolved from the open-file limit.
    pub fn connection_cap(&self) -> usize {
        match self.max_connections {
            0 => open_file_limit().map_or(768, |n| (n / 4 * 3).clamp(64, 1 << 20)),
            n => n,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.io_threads > 1024 {
            return Err(ConfigError::new(
                "server.io_threads",
                "must be at most 1024 (0 = one per CPU core)",
            ));
        }
        for (key, value) in [
            ("max_body_bytes", self.max_body_bytes as u64),
            ("deadline_ms", self.deadline_ms),
            ("header_timeout_ms", self.header_timeout_ms),
            ("body_timeout_ms", self.body_timeout_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::new(format!("server.{key}"), "must be > 0"));
            }
        }
        Ok(())
    }
}

/// The soft limit on open files, from `/proc/self/limits` (Linux); `None` elsewhere.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            max_body_bytes: Self::default_max_body(),
            deadline_ms: Self::default_deadline(),
            io_threads: 0,
            header_timeout_ms: Self::default_header_timeout(),
            body_timeout_ms: Self::default_body_timeout(),
            max_connections: 0,
            models_need_key: true,
            metrics_need_key: false,
        }
    }
}

/// The learned router: encoder, classifier heads and scorer (read at start only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// Load the encoder and the router. Without it only `policy = "order"` routes and
    /// pinned models work, and `/v1/embeddings` is off.
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "RouterConfig::default_encoder")]
    pub encoder: String,
    #[serde(default = "RouterConfig::default_heads")]
    pub heads: PathBuf,
    #[serde(default = "RouterConfig::default_scorer")]
    pub scorer: PathBuf,
    /// auto, cpu, cuda or cuda:N.
    #[serde(default, deserialize_with = "parsed")]
    pub device: DeviceSpec,
    /// The env var holding the key for `POST /admin/router` (`switchyard router promote`);
    /// the endpoint is off without it.
    pub admin_key_env: Option<String>,
    /// Seed for the exploration draws. With one request in flight at a time the same
    /// traffic then explores the same way (simulations, tests); unset, draws are random.
    pub explore_seed: Option<u64>,
}

fn yes() -> bool {
    true
}

impl RouterConfig {
    fn default_encoder() -> String {
        "models/all-MiniLM-L6-v2".into()
    }
    fn default_heads() -> PathBuf {
        "models/classifier".into()
    }
    fn default_scorer() -> PathBuf {
        "models/scorer".into()
    }
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            encoder: Self::default_encoder(),
            heads: Self::default_heads(),
            scorer: Self::default_scorer(),
            device: DeviceSpec::default(),
            admin_key_env: None,
            explore_seed: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Holds `traffic.jsonl` (rotated to `traffic-<time>.jsonl`) and `feedback.jsonl`.
    #[serde(default = "LogConfig::default_dir")]
    pub dir: PathBuf,
    /// With `false`, records hold only the prompt's sha256.
    #[serde(default = "yes")]
    pub log_prompts: bool,
    /// Also log each answer's text (what `switchyard label --judge` grades). Off by default.
    #[serde(default)]
    pub log_answers: bool,
    /// Rotate when the file reaches this size ...
    #[serde(default = "LogConfig::default_max_bytes")]
    pub max_bytes: u64,
    /// ... or this age.
    #[serde(default = "LogConfig::default_max_age")]
    pub max_age_s: u64,
}

impl LogConfig {
    fn default_dir() -> PathBuf {
        "logs".into()
    }
    fn default_max_bytes() -> u64 {
        64 * 1024 * 1024
    }
    fn default_max_age() -> u64 {
        86_400
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: Self::default_dir(),
            log_prompts: true,
            log_answers: false,
            max_bytes: Self::default_max_bytes(),
            max_age_s: Self::default_max_age(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Retries of one target (after its first attempt) before falling back.
    #[serde(default = "RetryConfig::default_retries")]
    pub max_retries: u32,
    #[serde(default = "RetryConfig::default_base")]
    pub base_ms: u64,
    #[serde(default = "RetryConfig::default_max")]
    pub max_ms: u64,
}

impl RetryConfig {
    fn default_retries() -> u32 {
        2
    }
    fn default_base() -> u64 {
        100
    }
    fn default_max() -> u64 {
        5_000
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: Self::default_retries(),
            base_ms: Self::default_base(),
            max_ms: Self::default_max(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSection {
    #[serde(default = "BreakerSection::default_failures")]
    pub consecutive_failures: u32,
    #[serde(default = "BreakerSection::default_window")]
    pub window: u32,
    #[serde(default = "BreakerSection::default_rate")]
    pub error_rate: f64,
    #[serde(default = "BreakerSection::default_open")]
    pub open_ms: u64,
}

impl BreakerSection {
    fn default_failures() -> u32 {
        5
    }
    fn default_window() -> u32 {
        20
    }
    fn default_rate() -> f64 {
        0.5
    }
    fn default_open() -> u64 {
        30_000
    }
}

impl Default for BreakerSection {
    fn default() -> Self {
        Self {
            consecutive_failures: Self::default_failures(),
            window: Self::default_window(),
            error_rate: Self::default_rate(),
            open_ms: Self::default_open(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// Default: OpenAI's or Anthropic's public API.
    pub base_url: Option<String>,
    /// The environment variable that holds the API key (never the key itself).
    pub api_key_env: Option<String>,
    #[serde(default = "ProviderConfig::default_connect")]
    pub connect_timeout_ms: u64,
    #[serde(default = "ProviderConfig::default_first_byte")]
    pub first_byte_timeout_ms: u64,
    #[serde(default = "ProviderConfig::default_idle")]
    pub idle_timeout_ms: u64,
    /// kind = "local": the GGUF file.
    pub model: Option<PathBuf>,
    /// kind = "local": a tokenizer.json (default: built from the GGUF's vocabulary).
    pub tokenizer: Option<PathBuf>,
    /// kind = "local": worker threads, each with its own copy of the weights (default 1).
    pub workers: Option<usize>,
    /// kind = "local": requests that may wait for a worker before 429 (default 16).
    pub queue: Option<usize>,
}

impl ProviderConfig {
    fn default_connect() -> u64 {
        5_000
    }
    fn default_first_byte() -> u64 {
        60_000
    }
    fn default_idle() -> u64 {
        30_000
    }

    pub fn new(kind: ProviderKind, base_url: Option<String>, api_key_env: Option<String>) -> Self {
        Self {
            kind,
            base_url,
            api_key_env,
            connect_timeout_ms: Self::default_connect(),
            first_byte_timeout_ms: Self::default_first_byte(),
            idle_timeout_ms: Self::default_idle(),
            model: None,
            tokenizer: None,
            workers: None,
            queue: None,
        }
    }

    pub fn resolved_base_url(&self) -> String {
        self.base_url.clone().unwrap_or_else(|| match self.kind {
            ProviderKind::Openai => "https://api.openai.com/v1".into(),
            ProviderKind::Anthropic => "https://api.anthropic.com/v1".into(),
            ProviderKind::Local => String::new(),
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub provider: String,
    /// The id the upstream knows (default: this model's id).
    pub upstream_model: Option<String>,
    /// USD per 1M input tokens (default: the built-in price table, else 0).
    pub input_per_mtok: Option<f64>,
    /// USD per 1M output tokens.
    pub output_per_mtok: Option<f64>,
    /// A model the scorer knows whose predicted quality stands in for this one's
    /// (default: this model's id, when the scorer knows it).
    pub quality_like: Option<String>,
    /// A fixed quality prior in [0, 1] for models the scorer cannot predict.
    pub quality: Option<f64>,
    /// Expected output tokens when the scorer has no estimate (default 256).
    pub output_tokens: Option<f64>,
    /// Prompt + completion tokens the model accepts.
    pub context_window: Option<u64>,
}

/// How a route chooses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RoutePolicy {
    /// The learned router: scorer predictions and this policy.
    Learned(Policy),
    /// The configured order, first healthy model first (no encoder needed).
    Order,
}

impl std::str::FromStr for RoutePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim() == "order" {
            Ok(Self::Order)
        } else {
            s.parse()
                .map(Self::Learned)
                .map_err(|e| format!("{e}, or order"))
        }
    }
}

impl std::fmt::Display for RoutePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Learned(p) => p.fmt(f),
            Self::Order => f.write_str("order"),
        }
    }
}

/// The local model's id in the configuration without a file.
pub const LOCAL_MODEL_ID: &str = "smollm2-135m-instruct";
/// Where `bash models/fetch.sh local-llm` puts it.
pub const DEFAULT_LOCAL_GGUF: &str = "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

fn default_policy() -> RoutePolicy {
    RoutePolicy::Learned(Policy::Threshold { tau: 0.7 })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The models this route may choose (and fall back to).
    pub models: Vec<String>,
    /// `threshold:TAU`, `tradeoff:LAMBDA`, `budget:USD`, `margin:M`, or `order`.
    #[serde(default = "default_policy", deserialize_with = "parsed")]
    pub policy: RoutePolicy,
    /// This route's semantic-hit threshold (default: `[cache] threshold`).
    pub cache_threshold: Option<f32>,
    /// Set `false` to never cache this route.
    #[serde(default = "yes")]
    pub cache: bool,
    /// Share of this route's requests that explore: they go to a model drawn among the
    /// eligible ones, weighted toward those the scorer knows least (README, "Learning from
    /// your traffic"). 0 (the default) never explores.
    #[serde(default)]
    pub explore: f64,
    /// Most USD per UTC day that explored requests may spend on this route; once reached,
    /// the route stops exploring until the next day. Unset: no cap.
    pub explore_daily_usd: Option<f64>,
    /// A scorer directory (trained on the configured heads) whose decision for every
    /// request of this route is computed off the request path and logged beside the served
    /// one, in `<log.dir>/shadow.jsonl`, to compare before promoting it.
    pub shadow: Option<PathBuf>,
    /// An outcome to meet instead of a raw parameter: `cost:USD` (mean per request),
    /// `quality:Q` (mean) or `strong-share:S` (share of calls to the strongest model).
    /// The policy fitted for it by `switchyard calibrate` (stored with the router) replaces
    /// `policy`.
    #[serde(default, deserialize_with = "parsed_opt")]
    pub target: Option<switchyard_router::calibration::Target>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// sha256 (hex) of the tenant's API key: `printf %s "$KEY" | sha256sum`.
    pub key_sha256: String,
    /// Models the tenant may pin or be routed to (default: all).
    pub models: Option<Vec<String>>,
    /// Routes the tenant may use (default: all).
    pub routes: Option<Vec<String>>,
    /// Tokens (prompt + completion) per UTC day.
    pub daily_tokens: Option<u64>,
    /// USD per UTC day.
    pub daily_usd: Option<f64>,
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Set `false` so this tenant's requests never explore (always the policy's pick).
    #[serde(default = "yes")]
    pub explore: bool,
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

/// A provider's own settings: a local one names its GGUF file, a remote one has an
/// http(s) URL and non-zero timeouts.
fn validate_provider(name: &str, p: &ProviderConfig) -> Result<(), ConfigError> {
    if p.kind == ProviderKind::Local {
        if p.model.is_none() {
            return Err(ConfigError::new(
                format!("providers.{name}.model"),
                "kind = \"local\" needs model = \"path/to/model.gguf\"",
            ));
        }
        if p.workers == Some(0) {
            return Err(ConfigError::new(
                format!("providers.{name}.workers"),
                "must be ≥ 1",
            ));
        }
        return Ok(());
    }
    let url = p.resolved_base_url();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ConfigError::new(
            format!("providers.{name}.base_url"),
            format!("{url:?} must start with http:// or https://"),
        ));
    }
    for (key, ms) in [
        ("connect_timeout_ms", p.connect_timeout_ms),
        ("first_byte_timeout_ms", p.first_byte_timeout_ms),
        ("idle_timeout_ms", p.idle_timeout_ms),
    ] {
        if ms == 0 {
            return Err(ConfigError::new(
                format!("providers.{name}.{key}"),
                "must be > 0",
            ));
        }
    }
    Ok(())
}

fn names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = it.map(String::as_str).collect();
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let text = include_str!("../../../switchyard.example.toml");
        let config = super::Config::parse(text).unwrap();
        assert_eq!(config.routes["auto"].models.len(), 5);
        assert_eq!(config.tenants["team-a"].rpm, Some(600));
    }
}
