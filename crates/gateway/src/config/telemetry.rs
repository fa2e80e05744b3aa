//! `[telemetry]`: OpenTelemetry traces over OTLP/HTTP.

use serde::Deserialize;

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
