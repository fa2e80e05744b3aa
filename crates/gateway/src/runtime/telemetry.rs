//! OpenTelemetry traces over OTLP/HTTP: one server span per chat request, with a child span
//! per stage (cache lookup, embedding, classification, routing, each upstream attempt),
//! carrying the GenAI
//! semantic-convention attributes (`gen_ai.operation.name`, `gen_ai.request.model`,
//! `gen_ai.response.model`, `gen_ai.provider.name`, `gen_ai.usage.input_tokens`, ...) and
//! Switchyard's own (`switchyard.route`, `switchyard.task`, `switchyard.cache`, ...).
//!
//! Spans are built when the request has finished, from the record the traffic log gets:
//! nothing is added to the request's path but handing the spans to the batch exporter's
//! thread. Stage spans are laid end to end in pipeline order from their measured durations.
//! An incoming W3C `traceparent` header makes the request's span its child.
//!
//! Off unless `[telemetry] endpoint` or `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` is set. The
//! exporter reads the other standard variables itself (`OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf` or `http/json`, timeouts). Prompts are
//! never put in spans unless `capture_prompts = true`.

use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Span, SpanContext, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue, SpanId};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};

use super::resolved::Runtime;
use crate::config::TelemetryConfig;
use crate::traffic::TrafficRecord;

/// The exporter and what goes in spans.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    tracer: opentelemetry_sdk::trace::Tracer,
    capture_prompts: bool,
}

impl Telemetry {
    /// The exporter `config` and the environment ask for; `None` when neither names an
    /// endpoint.
    pub fn start(
        config: &TelemetryConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, String> {
        let from_env = [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .iter()
        .any(|v| env(v).is_some_and(|s| !s.is_empty()));
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || (config.endpoint.is_none() && !from_env)
        {
            return Ok(None);
        }
        // The exporter's HTTP client uses the process's TLS provider.
        switchyard_providers::install_crypto_provider();
        let mut builder = opentelemetry_otlp::SpanExporter::builder().with_http();
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        builder = builder.with_protocol(protocol(config, env)?);
        let exporter = builder
            .build()
            .map_err(|e| format!("telemetry: cannot start the OTLP exporter: {e}"))?;
        let batch = BatchConfigBuilder::default()
            .with_scheduled_delay(Duration::from_millis(config.export_delay_ms))
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        let service = config
            .service_name
            .clone()
            .or_else(|| env("OTEL_SERVICE_NAME"))
            .unwrap_or_else(|| "switchyard".into());
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(service)
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("switchyard");
        Ok(Some(Self {
            provider,
            tracer,
            capture_prompts: config.capture_prompts,
        }))
    }

    /// Exports what is batched and stops (at shutdown).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "telemetry: spans not exported at shutdown");
        }
    }

    /// The spans of one finished request. `parent` is the caller's `traceparent`, if any.
    pub fn export(&self, record: &TrafficRecord, runtime: &Runtime, parent: Option<&str>) {
        let total = Duration::from_secs_f64(record.latency.total_ms.max(0.0) / 1000.0);
        let end = SystemTime::now();
        let start = end.checked_sub(total).unwrap_or(end);
        let parent_cx = parent
            .and_then(parse_traceparent)
            .map_or_else(Context::new, |sc| {
                Context::new().with_remote_span_context(sc)
            });
        let mut span = self
            .tracer
            .span_builder(format!("chat {}", record.requested))
            .with_kind(SpanKind::Server)
            .with_start_time(start)
            .with_attributes(self.request_attributes(record, runtime))
            .start_with_context(&self.tracer, &parent_cx);
        if record.status >= 500 {
            span.set_status(Status::error(record.error.clone().unwrap_or_default()));
        }
        let cx = parent_cx.with_span(span);
        self.stage_spans(record, runtime, &cx, start);
        cx.span().end_with_timestamp(end);
    }

    fn request_attributes(&self, r: &TrafficRecord, runtime: &Runtime) -> Vec<KeyValue> {
        let mut a = vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.request.model", r.requested.clone()),
            KeyValue::new("gen_ai.response.id", r.request_id.clone()),
            KeyValue::new("http.response.status_code", i64::from(r.status)),
            KeyValue::new("switchyard.tenant", r.tenant.clone()),
            KeyValue::new(
                "switchyard.route",
                r.route.clone().unwrap_or_else(|| "pinned".into()),
            ),
            KeyValue::new("switchyard.cache", r.cache.as_str()),
            KeyValue::new("switchyard.attempts", r.attempts.len() as i64),
        ];
        if let Some(model) = &r.model {
            a.push(KeyValue::new("gen_ai.response.model", model.clone()));
            if let Some(m) = runtime.models.get(model) {
                a.push(KeyValue::new("gen_ai.provider.name", m.provider.clone()));
            }
        }
        if let Some(u) = r.usage {
            a.push(KeyValue::new(
                "gen_ai.usage.input_tokens",
                u.prompt_tokens as i64,
            ));
            a.push(KeyValue::new(
                "gen_ai.usage.output_tokens",
                u.completion_tokens as i64,
            ));
        }
        if let Some(cost) = r.cost_usd {
            a.push(KeyValue::new("switchyard.cost_usd", cost));
        }
        if let Some(e) = &r.error {
            a.push(KeyValue::new("error.type", e.clone()));
        }
        a.extend(decision_attributes(r));
        if self.capture_prompts
            && let Some(prompt) = &r.prompt
        {
            let messages = serde_json::json!([{"role": "user", "parts": [{"type": "text", "content": prompt}]}]);
            a.push(KeyValue::new("gen_ai.input.messages", messages.to_string()));
        }
        a
    }

    /// Cache, embedding, classification, routing (scoring and the policy), then each
    /// attempt, end to end from `start`; a stage that took no time has no span.
    fn stage_spans(&self, r: &TrafficRecord, runtime: &Runtime, cx: &Context, start: SystemTime) {
        let mut at = start;
        let l = &r.latency;
        let stages = [
            (
                "cache",
                l.cache_ms,
                vec![KeyValue::new("switchyard.cache", r.cache.as_str())],
            ),
            ("embed", l.embed_ms, Vec::new()),
            ("classify", l.classify_ms, Vec::new()),
            ("route", l.score_ms, decision_attributes(r)),
        ];
        for (name, ms, attributes) in stages {
            if ms <= 0.0 {
                continue;
            }
            at = self.child(
                cx,
                name.into(),
                SpanKind::Internal,
                at,
                ms,
                attributes,
                None,
            );
        }
        for attempt in &r.attempts {
            let mut attributes = vec![
                KeyValue::new("gen_ai.operation.name", "chat"),
                KeyValue::new("gen_ai.request.model", attempt.model.clone()),
            ];
            if let Some(m) = runtime.models.get(&attempt.model) {
                attributes.push(KeyValue::new("gen_ai.provider.name", m.provider.clone()));
                attributes.push(KeyValue::new(
                    "switchyard.upstream_model",
                    m.upstream_model.clone(),
                ));
            }
            if let Some(status) = attempt.status {
                attributes.push(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
            }
            let error = attempt.error_class.map(|c| format!("{c:?}"));
            if let Some(class) = &error {
                attributes.push(KeyValue::new("error.type", class.clone()));
            }
            let name = format!("chat {}", attempt.model);
            at = self.child(
                cx,
                name,
                SpanKind::Client,
                at,
                attempt.latency_ms,
                attributes,
                error,
            );
        }
    }

    /// One child span of `ms` from `at`; returns its end.
    #[allow(
        clippy::too_many_arguments,
        reason = "one span's fields, named at the call"
    )]
    fn child(
        &self,
        cx: &Context,
        name: String,
        kind: SpanKind,
        at: SystemTime,
        ms: f64,
        attributes: Vec<KeyValue>,
        error: Option<String>,
    ) -> SystemTime {
        let end = at + Duration::from_secs_f64(ms.max(0.0) / 1000.0);
        let mut span = self
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_start_time(at)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, cx);
        if let Some(e) = error {
            span.set_status(Status::error(e));
        }
        span.end_with_timestamp(end);
        end
    }
}

/// OTLP over HTTP with protobuf (the specification's default) unless `[telemetry] protocol`
/// or `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL` says `http/json`.
fn protocol(
    config: &TelemetryConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Protocol, String> {
    let named = config
        .protocol
        .clone()
        .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"));
    match named.as_deref().map(str::trim) {
        None | Some("" | "http/protobuf") => Ok(Protocol::HttpBinary),
        Some("http/json") => Ok(Protocol::HttpJson),
        Some(other) => Err(format!(
            "telemetry: OTLP protocol {other:?} is not built in; use http/protobuf or http/json (OTEL_EXPORTER_OTLP_PROTOCOL or [telemetry] protocol)"
        )),
    }
}

/// The routing decision's attributes.
fn decision_attributes(r: &TrafficRecord) -> Vec<KeyValue> {
    let Some(d) = &r.decision else {
        return Vec::new();
    };
    let mut a = vec![
        KeyValue::new("switchyard.chosen", d.chosen.clone()),
        KeyValue::new("switchyard.explored", d.explored),
    ];
    if let Some(task) = d.task {
        a.push(KeyValue::new("switchyard.task", task.to_string()));
    }
    if let Some(difficulty) = d.difficulty {
        a.push(KeyValue::new("switchyard.difficulty", difficulty));
    }
    if let Some(version) = &d.router_version {
        a.push(KeyValue::new("switchyard.router_version", version.clone()));
    }
    if let Some(q) = d.ranked.iter().find(|c| c.model == d.chosen) {
        a.push(KeyValue::new("switchyard.predicted_quality", q.quality));
    }
    a
}

/// A W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`) as a remote span context.
fn parse_traceparent(header: &str) -> Option<SpanContext> {
    let mut parts = header.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace = TraceId::from_hex(trace)
        .ok()
        .filter(|t| *t != TraceId::INVALID)?;
    let span = SpanId::from_hex(span)
        .ok()
        .filter(|s| *s != SpanId::INVALID)?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(SpanContext::new(
        trace,
        span,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_defaults_to_protobuf_and_grpc_is_refused() {
        let config = TelemetryConfig::default();
        let none = |_: &str| None;
        assert_eq!(protocol(&config, &none), Ok(Protocol::HttpBinary));
        let json = |k: &str| (k == "OTEL_EXPORTER_OTLP_PROTOCOL").then(|| "http/json".into());
        assert_eq!(protocol(&config, &json), Ok(Protocol::HttpJson));
        let grpc = |k: &str| (k == "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").then(|| "grpc".into());
        let e = protocol(&config, &grpc).unwrap_err();
        assert!(e.contains("http/protobuf"), "{e}");
    }

    #[test]
    fn traceparent_is_parsed_strictly() {
        let sc =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(sc.is_remote() && sc.is_sampled());
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-xyz-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?}");
        }
    }
}
