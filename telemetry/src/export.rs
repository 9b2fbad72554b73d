//! Our OTLP/HTTP span exporter: a span processor that queues finished spans (bounded,
//! never blocking), and a Tokio task that posts them in batches as protobuf
//! `ExportTraceServiceRequest`s, each post with a timeout.
//!
//! Settings follow the OpenTelemetry environment variables where they exist:
//! `OTEL_BSP_SCHEDULE_DELAY` (ms between posts, 5000), `OTEL_BSP_MAX_QUEUE_SIZE` (2048),
//! `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` (512), `OTEL_EXPORTER_OTLP_TIMEOUT` (ms per post, 10000).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};

/// Where and how spans are sent.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The traces URL (`…/v1/traces`).
    pub url: String,
    /// Time between posts while spans trickle in.
    pub delay: Duration,
    /// Spans waiting at most; more are dropped (and counted).
    pub queue: usize,
    /// Spans per post at most.
    pub batch: usize,
    /// Longest a post may take.
    pub timeout: Duration,
}

fn env_number(name: &str, default: u64, min: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n >= min)
            .ok_or_else(|| format!("{name}={value:?}: expected a whole number ≥ {min}")),
        _ => Ok(default),
    }
}

impl Settings {
    /// Defaults, overridden by the standard variables; a variable that is not a number is
    /// an error naming it.
    pub fn from_env(url: String) -> Result<Settings, String> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "OTLP endpoint {url:?}: expected an http:// or https:// URL (OTLP over HTTP)"
            ));
        }
        reqwest::Url::parse(&url).map_err(|e| format!("OTLP endpoint {url:?}: {e}"))?;
        Ok(Settings {
            url,
            delay: Duration::from_millis(env_number("OTEL_BSP_SCHEDULE_DELAY", 5000, 10)?),
            queue: env_number("OTEL_BSP_MAX_QUEUE_SIZE", 2048, 1)? as usize,
            batch: env_number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, 1)? as usize,
            timeout: Duration::from_millis(env_number("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000, 1)?),
        })
    }
}

enum Message {
    Span(Box<SpanData>),
    Flush(oneshot::Sender<()>),
}

/// The span processor the provider calls: queues sampled spans for the export task.
#[derive(Debug)]
pub struct Queue {
    sender: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Message::Span(_) => "Span",
            Message::Flush(_) => "Flush",
        })
    }
}

impl SpanProcessor for Queue {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.sender.try_send(Message::Span(Box::new(span))).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        // Flushing waits on the export task: see `Handle::flush` (async).
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// The export task's handle: flush and the dropped count.
pub struct Handle {
    sender: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
    url: String,
}

impl Handle {
    /// Post everything queued now; waits at most `timeout`.
    pub async fn flush(&self, timeout: Duration) {
        let (ack, done) = oneshot::channel();
        let _ = tokio::time::timeout(timeout, async {
            if self.sender.send(Message::Flush(ack)).await.is_ok() {
                let _ = done.await;
            }
        })
        .await;
    }

    /// Spans dropped so far (queue full, or the post failed).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The traces URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Start the export task (on the current Tokio runtime) and return its processor and handle.
pub fn start(
    settings: Settings,
    resource: &opentelemetry_sdk::Resource,
) -> Result<(Queue, Handle), String> {
    let client = reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .build()
        .map_err(|e| format!("building the OTLP client: {e}"))?;
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| "the OTLP exporter needs a Tokio runtime".to_string())?;
    let (sender, receiver) = mpsc::channel(settings.queue);
    let dropped = Arc::new(AtomicU64::new(0));
    let exporter = Exporter {
        client,
        resource: ResourceAttributesWithSchema::from(resource),
        dropped: dropped.clone(),
        settings: settings.clone(),
        failing: false,
    };
    runtime.spawn(exporter.run(receiver));
    Ok((
        Queue {
            sender: sender.clone(),
            dropped: dropped.clone(),
        },
        Handle {
            sender,
            dropped,
            url: settings.url,
        },
    ))
}

struct Exporter {
    client: reqwest::Client,
    resource: ResourceAttributesWithSchema,
    dropped: Arc<AtomicU64>,
    settings: Settings,
    /// The last post failed (warn once per outage, not per batch).
    failing: bool,
}

impl Exporter {
    async fn run(mut self, mut receiver: mpsc::Receiver<Message>) {
        let mut batch: Vec<SpanData> = Vec::new();
        let mut tick = tokio::time::interval(self.settings.delay);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = receiver.recv() => match message {
                    Some(Message::Span(span)) => {
                        batch.push(*span);
                        if batch.len() >= self.settings.batch {
                            self.post(std::mem::take(&mut batch)).await;
                        }
                    }
                    Some(Message::Flush(ack)) => {
                        // Spans queued before the flush request are already in `batch`.
                        self.post(std::mem::take(&mut batch)).await;
                        let _ = ack.send(());
                    }
                    None => {
                        self.post(std::mem::take(&mut batch)).await;
                        return;
                    }
                },
                _ = tick.tick() => {
                    if !batch.is_empty() {
                        self.post(std::mem::take(&mut batch)).await;
                    }
                }
            }
        }
    }

    async fn post(&mut self, spans: Vec<SpanData>) {
        if spans.is_empty() {
            return;
        }
        let count = spans.len() as u64;
        let request = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(spans, &self.resource),
        };
        let outcome = self
            .client
            .post(&self.settings.url)
            .header("content-type", "application/x-protobuf")
            .body(request.encode_to_vec())
            .send()
            .await;
        let problem = match outcome {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!("the collector answered {}", response.status())),
            Err(error) => Some(error.to_string()),
        };
        match problem {
            None => {
                if self.failing {
                    tracing::info!(url = %self.settings.url, "exporting traces again");
                }
                self.failing = false;
            }
            Some(problem) => {
                self.dropped.fetch_add(count, Ordering::Relaxed);
                if !self.failing {
                    tracing::warn!(url = %self.settings.url, %problem, spans = count, "exporting traces failed; their spans are dropped");
                }
                self.failing = true;
            }
        }
    }
}
