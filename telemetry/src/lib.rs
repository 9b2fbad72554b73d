//! Tracing for the operator and the workers: OpenTelemetry spans exported over OTLP/HTTP
//! (protobuf), and the W3C trace context that carries one trace from a reconcile into the
//! Job it creates (`TRACEPARENT`), through the events outbox, to a notification delivery.
//!
//! Off unless an endpoint is given (`--otlp-endpoint` or `OTEL_EXPORTER_OTLP_ENDPOINT`):
//! then every span is a no-op, and a `TRACEPARENT` received is still passed on unchanged.
//!
//! The exporter is our own ([`export`]): spans go into a bounded queue (full: dropped and
//! counted, never blocking a reconcile), a task posts them in batches as
//! `ExportTraceServiceRequest` protobuf with the workspace's reqwest client, each post
//! with a timeout. See docs/tracing.md for why not `opentelemetry-otlp`.

pub mod export;

use std::borrow::Cow;
use std::time::Duration;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer,
};
use opentelemetry::{Context, KeyValue};

pub use opentelemetry::context::FutureExt;
pub use opentelemetry::{Context as TraceContext, KeyValue as Attribute};

/// The environment variable a parent's trace context arrives in (W3C `traceparent` form).
pub const TRACEPARENT: &str = "TRACEPARENT";
/// The standard OTLP endpoint variable (base URL; `/v1/traces` is appended).
pub const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The standard traces-only endpoint variable (used as given).
pub const TRACES_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";

/// Name of our instrumentation scope.
const SCOPE: &str = "stellaops";

/// Exporting spans; dropping it without [`Tracing::shutdown`] loses the spans still queued.
pub struct Tracing {
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
    exporter: export::Handle,
}

impl Tracing {
    /// Send what is queued (waiting at most `timeout`), then stop exporting.
    pub async fn shutdown(self, timeout: Duration) {
        self.exporter.flush(timeout).await;
        let _ = self
            .provider
            .shutdown_with_timeout(Duration::from_millis(100));
        opentelemetry::global::set_tracer_provider(
            opentelemetry::trace::noop::NoopTracerProvider::new(),
        );
    }

    /// Spans dropped because the queue was full or an export failed.
    pub fn dropped(&self) -> u64 {
        self.exporter.dropped()
    }
}

/// The traces URL: `endpoint` (a flag) as the base URL, else the environment's traces
/// endpoint as given, else its base endpoint. `None`: tracing stays off.
pub fn traces_url(endpoint: Option<&str>) -> Option<String> {
    let base = |base: &str| format!("{}/v1/traces", base.trim_end_matches('/'));
    let nonempty = |v: String| (!v.trim().is_empty()).then(|| v.trim().to_string());
    match endpoint.map(str::to_string).and_then(nonempty) {
        Some(endpoint) => Some(base(&endpoint)),
        None => match std::env::var(TRACES_ENDPOINT_ENV).ok().and_then(nonempty) {
            Some(url) => Some(url),
            None => std::env::var(ENDPOINT_ENV)
                .ok()
                .and_then(nonempty)
                .map(|b| base(&b)),
        },
    }
}

/// Start exporting spans of `service` to `endpoint` (see [`traces_url`]); `Ok(None)` when
/// no endpoint is set. Needs a Tokio runtime (the exporter is a task on it).
pub fn init(service: &str, endpoint: Option<&str>) -> Result<Option<Tracing>, String> {
    let Some(url) = traces_url(endpoint) else {
        return Ok(None);
    };
    let settings = export::Settings::from_env(url)?;
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name(service.to_string())
        .with_attribute(KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION").to_string(),
        ))
        .build();
    let (processor, exporter) = export::start(settings, &resource)?;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_resource(resource)
        .with_span_processor(processor)
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    tracing::info!(url = %exporter.url(), service, "exporting traces over OTLP/HTTP");
    Ok(Some(Tracing { provider, exporter }))
}

/// A new span named `name` under `parent` (an empty context: a new trace), as a context
/// that holds it. End it with [`finish`].
pub fn start(
    name: impl Into<Cow<'static, str>>,
    parent: &Context,
    kind: SpanKind,
    attributes: Vec<KeyValue>,
) -> Context {
    let tracer = opentelemetry::global::tracer(SCOPE);
    let span = tracer
        .span_builder(name)
        .with_kind(kind)
        .with_attributes(attributes)
        .start_with_context(&tracer, parent);
    parent.with_span(span)
}

/// End the span `cx` holds, with an error status (and the error's text) when `outcome` is
/// one.
pub fn finish<T, E: std::fmt::Display>(cx: &Context, outcome: &Result<T, E>) {
    let span = cx.span();
    if let Err(error) = outcome {
        span.set_status(Status::error(format!("{error:#}")));
    }
    span.end();
}

/// Run `work` in a child span of the current context named `name`: the span is current
/// while it runs (so what it starts or publishes is its child) and ends with its outcome.
pub async fn in_span<F, T, E>(
    name: impl Into<Cow<'static, str>>,
    attributes: Vec<KeyValue>,
    work: F,
) -> Result<T, E>
where
    F: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let cx = start(name, &Context::current(), SpanKind::Internal, attributes);
    let outcome = work.with_context(cx.clone()).await;
    finish(&cx, &outcome);
    outcome
}

/// Mark the current span as failed, with `message`.
pub fn mark_error(message: impl Into<String>) {
    Context::current()
        .span()
        .set_status(Status::error(message.into()));
}

/// Add attributes to the current span.
pub fn annotate(attributes: Vec<KeyValue>) {
    Context::current().span().set_attributes(attributes);
}

/// The W3C `traceparent` of the span `cx` holds; `None` when it holds none (tracing off
/// and no parent received).
pub fn traceparent(cx: &Context) -> Option<String> {
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8() & 1
        )
    })
}

/// [`traceparent`] of the current context.
pub fn current_traceparent() -> Option<String> {
    traceparent(&Context::current())
}

/// A `traceparent` header value read back; `None` for anything malformed (version `ff`,
/// wrong lengths, upper-case or non-hex digits, all-zero ids).
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let parts: Vec<&str> = value.trim().split('-').collect();
    let [version, trace, span, flags, ..] = parts.as_slice() else {
        return None;
    };
    let lower_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    // Version 00 has exactly four fields; a later version may add fields after them.
    if !lower_hex(version, 2)
        || *version == "ff"
        || (*version == "00" && parts.len() != 4)
        || !lower_hex(trace, 32)
        || !lower_hex(span, 16)
        || !lower_hex(flags, 2)
    {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let sc = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & 1),
        true,
        TraceState::default(),
    );
    sc.is_valid().then_some(sc)
}

/// A context whose parent is the remote span `traceparent` names; empty (a new trace) when
/// there is none or it is malformed (a warning says so).
pub fn remote_parent(traceparent: Option<&str>) -> Context {
    let Some(value) = traceparent.filter(|v| !v.trim().is_empty()) else {
        return Context::new();
    };
    match parse_traceparent(value) {
        Some(sc) => Context::new().with_remote_span_context(sc),
        None => {
            tracing::warn!(
                traceparent = value,
                "ignoring a malformed traceparent: starting a new trace"
            );
            Context::new()
        }
    }
}

/// The parent this process was started under: the `TRACEPARENT` environment variable.
pub fn parent_from_env() -> Context {
    remote_parent(std::env::var(TRACEPARENT).ok().as_deref())
}

pub use opentelemetry::trace::SpanKind as Kind;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_refuses_malformed_values() {
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sc = parse_traceparent(value).unwrap();
        assert!(sc.is_sampled() && sc.is_remote());
        let cx = Context::new().with_remote_span_context(sc);
        assert_eq!(traceparent(&cx).as_deref(), Some(value));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?} was accepted");
        }
        // A later version may append fields.
        assert!(
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
                .is_some()
        );
        assert!(traceparent(&Context::new()).is_none());
        assert!(traceparent(&remote_parent(Some("garbage"))).is_none());
    }

    #[test]
    fn the_endpoint_flag_is_a_base_url() {
        assert_eq!(
            traces_url(Some("http://collector:4318/")).as_deref(),
            Some("http://collector:4318/v1/traces")
        );
    }
}
