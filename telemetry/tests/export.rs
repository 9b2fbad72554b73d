//! The exporter against sockets: spans reach a collector as OTLP protobuf with their
//! parent links; a collector that never answers costs a timeout on the export task, not on
//! the code making spans, and a full queue drops spans (counted) instead of waiting.
//! One test: the tracer provider is process-global.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use stellaops_telemetry::{FutureExt as _, TraceContext, export, finish, in_span, init, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A minimal HTTP/1.1 collector: decodes each POST body, answers 200.
async fn collector() -> (String, Arc<Mutex<Vec<ExportTraceServiceRequest>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let got: Arc<Mutex<Vec<ExportTraceServiceRequest>>> = Arc::default();
    let store = got.clone();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let store = store.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse().unwrap())
                        .unwrap_or(0);
                    if buffer.len() < end + 4 + length {
                        continue;
                    }
                    assert!(head.starts_with("post /v1/traces "), "{head}");
                    assert!(
                        head.contains("content-type: application/x-protobuf"),
                        "{head}"
                    );
                    let body = &buffer[end + 4..end + 4 + length];
                    store
                        .lock()
                        .unwrap()
                        .push(ExportTraceServiceRequest::decode(body).unwrap());
                    buffer.drain(..end + 4 + length);
                    let _ = socket
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
            });
        }
    });
    (url, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_arrive_with_their_links_and_a_stuck_collector_never_blocks() {
    // OTLP over HTTP only: another scheme is refused, naming the endpoint.
    let refused = init("bad", Some("ftp://x")).err().unwrap();
    assert!(refused.contains("ftp://x"), "{refused}");

    let (url, got) = collector().await;
    let tracing = init("export-test", Some(&url)).unwrap().unwrap();
    let parent = start(
        "parent",
        &TraceContext::new(),
        SpanKind::Internal,
        Vec::new(),
    );
    let child: Result<(), String> = in_span("child", Vec::new(), async { Err("boom".into()) })
        .with_context(parent.clone())
        .await;
    assert!(child.is_err());
    finish(&parent, &Ok::<(), String>(()));
    tracing.shutdown(Duration::from_secs(5)).await;
    let requests = got.lock().unwrap().clone();
    let spans: Vec<_> = requests
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    assert_eq!(spans.len(), 2, "{requests:#?}");
    // The resource's attributes come in no fixed order.
    let resource = requests[0].resource_spans[0].resource.as_ref().unwrap();
    assert!(
        resource.attributes.iter().any(|a| a.key == "service.name"),
        "{resource:?}"
    );
    let (p, c) = (
        spans.iter().find(|s| s.name == "parent").unwrap(),
        spans.iter().find(|s| s.name == "child").unwrap(),
    );
    assert_eq!(c.trace_id, p.trace_id);
    assert_eq!(c.parent_span_id, p.span_id);
    assert!(p.parent_span_id.is_empty());
    assert_eq!(c.status.as_ref().unwrap().code, 2, "the child failed");
    assert_eq!(c.status.as_ref().unwrap().message, "boom");

    // A collector that accepts connections and never answers; a queue of 2.
    let stuck = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stuck_url = format!("http://{}/v1/traces", stuck.local_addr().unwrap());
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = stuck.accept().await {
            open.push(socket);
        }
    });
    let settings = export::Settings {
        url: stuck_url,
        delay: Duration::from_millis(10),
        queue: 2,
        batch: 1,
        timeout: Duration::from_millis(500),
    };
    let resource = opentelemetry_sdk::Resource::builder_empty().build();
    let (queue, handle) = export::start(settings, &resource).unwrap();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(queue)
        .build();
    let tracer = provider.tracer("stuck");
    let began = Instant::now();
    for _ in 0..50 {
        use opentelemetry::trace::{Span as _, Tracer as _};
        tracer.start("lost").end();
    }
    assert!(
        began.elapsed() < Duration::from_millis(200),
        "making spans waited on the collector: {:?}",
        began.elapsed()
    );
    // All 50 are lost: most dropped at the full queue, the rest when their post times out.
    let deadline = Instant::now() + Duration::from_secs(60);
    while handle.dropped() < 50 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(handle.dropped(), 50);
}
