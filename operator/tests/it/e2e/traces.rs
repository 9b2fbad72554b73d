//! One trace from a Scan to its Slack message, through real processes: the operator
//! reconciles the Scan (a span) and makes the scan Job with `TRACEPARENT`; the runner starts
//! the real worker, whose stage spans continue that trace and whose `report.ready` outbox
//! event keeps its trace context; a real notify worker delivers the event to a Slack
//! receiver in a span under the scan's. All three processes export over OTLP/HTTP protobuf
//! to a receiver started here, which decodes the official OTLP definitions.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use stellaops_testing::otlp::{ReceivedSpan, Receiver};

use super::operator_runs::{ingest_openssl_advisory, push_image, scan};
use super::{Cluster, workspace_binary};

const SETTLE: Duration = Duration::from_secs(120);

/// What the Slack stand-in got: each body with its `traceparent` header.
type Messages = Arc<Mutex<Vec<(Value, Option<String>)>>>;

/// A Slack incoming-webhook stand-in.
async fn slack() -> (String, Messages) {
    let got: Messages = Arc::default();
    let state = got.clone();
    let app = axum::Router::new().route(
        "/slack",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    let parent = headers
                        .get("traceparent")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    state.lock().unwrap().push((body, parent));
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slack", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, got)
}

fn describe(spans: &[ReceivedSpan]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "{} {:?} trace {} span {} parent {}",
                s.service, s.name, s.trace_id, s.span_id, s.parent_span_id
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_scan_reconcile_through_the_job_and_outbox_to_slack() {
    let Some(mut cluster) = Cluster::start("e2e_trace").await else {
        return;
    };
    let receiver = Receiver::start().await;
    ingest_openssl_advisory(&cluster.database_url).await;
    let (image, _) = push_image(&cluster, "e2e/traced").await;
    cluster.start_operator("solo", &["--otlp-endpoint", &receiver.endpoint]);
    cluster.apply(scan("tenant-a", "traced", &image)).await;
    let scanned = cluster
        .wait_for("the Scan finishes", SETTLE, || async {
            let object = cluster.get("Scan", Some("tenant-a"), "traced").await?;
            matches!(object["status"]["phase"].as_str()?, "Succeeded" | "Failed").then_some(object)
        })
        .await;
    assert_eq!(
        scanned["status"]["phase"],
        "Succeeded",
        "{scanned:#}\n{}",
        cluster.logs()
    );

    // The Job's worker got the reconcile's trace context and the endpoint.
    let run = cluster
        .runner
        .as_ref()
        .unwrap()
        .started()
        .into_iter()
        .find(|p| p.argv.iter().any(|a| a == "scan"))
        .expect("the scan worker ran");
    let env: BTreeMap<String, String> = run.env.iter().cloned().collect();
    let job_parent = env
        .get("TRACEPARENT")
        .unwrap_or_else(|| panic!("the scan Job has no TRACEPARENT: {env:?}"))
        .clone();
    assert_eq!(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        Some(&receiver.endpoint)
    );

    // The outbox event kept the worker's trace context.
    let pool = sqlx::PgPool::connect(&cluster.database_url).await.unwrap();
    let stored: Option<String> = sqlx::query_scalar(
        "SELECT traceparent FROM events_outbox WHERE kind = 'report.ready' AND namespace = 'tenant-a'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    let event_parent = stored.expect("report.ready carries a traceparent");

    // A notify worker, as the NotifyRule's Deployment runs it, delivering to "Slack".
    let (slack_url, messages) = slack().await;
    let secret = cluster.dir.join("slack-secret");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("url"), &slack_url).unwrap();
    let config = cluster.dir.join("notify.json");
    std::fs::write(
        &config,
        json!({"consumer": "trace-test", "rules": [{
            "namespace": "tenant-a", "name": "scans", "eventKinds": ["report.ready"],
            "actions": [{"name": "slack", "channel": "slack", "target": "#scans",
                         "template": "concise", "digest": "none",
                         "secretDir": secret.display().to_string()}]}]})
        .to_string(),
    )
    .unwrap();
    let listen = format!("127.0.0.1:{}", stellaops_testing::ports::unused_port());
    let notify_log = cluster.dir.join("notify.log");
    let mut notify = Command::new(workspace_binary("stellaops-worker"))
        .args(["notify", "run", "--config"])
        .arg(&config)
        .args(["--listen", &listen])
        .env("DATABASE_URL", &cluster.worker_database_url)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("STELLAOPS_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&notify_log).unwrap())
        .spawn()
        .expect("start the notify worker");
    let (message, header) = cluster
        .wait_for("the Slack message", SETTLE, || async {
            messages.lock().unwrap().first().cloned()
        })
        .await;
    assert_eq!(message["channel"], "#scans", "{message}");

    // Every span arrives (the operator exports every 5 s; the workers on exit or 200 ms).
    let wanted = [
        "scan",
        "scan.pull",
        "scan.analyze",
        "scan.match",
        "scan.store",
    ];
    let spans = cluster
        .wait_for("the spans of every process", SETTLE, || async {
            let spans = receiver.spans();
            let has = |service: &str, name: &str| {
                spans.iter().any(|s| s.service == service && s.name == name)
            };
            (has("stellaops-operator", "reconcile Scan")
                && wanted.iter().all(|n| has("stellaops-worker", n))
                && has("stellaops-worker", "notify deliver slack"))
            .then_some(spans)
        })
        .await;
    let _ = Command::new("kill")
        .args(["-TERM", &notify.id().to_string()])
        .status();
    let _ = notify.wait();
    let all = describe(&spans);

    // reconcile Scan → (TRACEPARENT) → scan → its stages.
    let by_id: BTreeMap<&str, &ReceivedSpan> =
        spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let root = spans
        .iter()
        .find(|s| s.service == "stellaops-worker" && s.name == "scan")
        .unwrap();
    let reconcile = by_id
        .get(root.parent_span_id.as_str())
        .unwrap_or_else(|| panic!("the scan span's parent was not received\n{all}"));
    assert_eq!(reconcile.service, "stellaops-operator", "{all}");
    assert_eq!(reconcile.name, "reconcile Scan", "{all}");
    assert_eq!(reconcile.attributes["k8s.name"], "traced", "{all}");
    assert!(
        reconcile.parent_span_id.is_empty(),
        "a reconcile starts a trace\n{all}"
    );
    assert_eq!(
        job_parent,
        format!("00-{}-{}-01", reconcile.trace_id, reconcile.span_id),
        "{all}"
    );
    let trace = &root.trace_id;
    for name in &wanted[1..] {
        let stages: Vec<&&ReceivedSpan> = by_id
            .values()
            .filter(|s| s.name == *name && s.service == "stellaops-worker")
            .collect();
        assert!(!stages.is_empty(), "no {name} span\n{all}");
        for stage in stages {
            assert_eq!(&stage.trace_id, trace, "{name} in another trace\n{all}");
            assert_eq!(
                stage.parent_span_id, root.span_id,
                "{name} is not a child of the scan span\n{all}"
            );
        }
    }

    // scan.store (the verdict) → (outbox) → notify deliver slack → the Slack request.
    let store = spans
        .iter()
        .find(|s| {
            s.name == "scan.store"
                && s.attributes.get("scan.object").map(String::as_str) == Some("verdict")
        })
        .unwrap_or_else(|| panic!("no scan.store span for the verdict\n{all}"));
    assert_eq!(
        event_parent,
        format!("00-{}-{}-01", store.trace_id, store.span_id),
        "{all}"
    );
    let deliver = spans
        .iter()
        .find(|s| s.name == "notify deliver slack")
        .unwrap();
    assert_eq!(&deliver.trace_id, trace, "{all}");
    assert_eq!(
        deliver.parent_span_id, store.span_id,
        "the delivery is not a child of the span that recorded the verdict\n{all}"
    );
    assert_eq!(deliver.attributes["notify.event_kind"], "report.ready");
    assert_eq!(deliver.attributes["http.response.status_code"], "200");
    assert_eq!(
        header.as_deref(),
        Some(format!("00-{}-{}-01", deliver.trace_id, deliver.span_id).as_str()),
        "the Slack request carries the delivery span's context"
    );
    // One trace from the reconcile to the message.
    assert_eq!(&reconcile.trace_id, trace);
    assert!(
        receiver.requests().iter().all(|r| r.ends_with("200 OK")),
        "{:?}",
        receiver.requests()
    );
    cluster.stop().await;
}
