//! Notification latency (issue 7): event written to the outbox → webhook received, over
//! 1,000 events to a local HTTP receiver, p50/p95/max. Two loads: a steady 100 events/s,
//! and a burst of 1,000 written in one go. Seed target p95 ≤ 30–60 s; aim ≤ 2 s.
//!
//! Run through scripts/bench.sh (needs the test PostgreSQL). Prints figures.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stellaops_store::notify::{ActionConfig, NotifyConfig, RuleConfig};
use stellaops_store::outbox::{NewEvent, publish, publish_many};
use stellaops_workers::notify::{Options, Worker};

type Arrivals = Arc<Mutex<Vec<(String, Instant)>>>;

async fn receiver(arrivals: Arrivals) -> String {
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |axum::extract::State(arrivals): axum::extract::State<Arrivals>,
                 body: axum::body::Bytes| async move {
                    let value: Value = serde_json::from_slice(&body).unwrap_or_default();
                    let key = value["event"]["subject"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    arrivals.lock().unwrap().push((key, Instant::now()));
                    "ok"
                },
            ),
        )
        .with_state(arrivals);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn run(label: &str, pool: &sqlx::PgPool, arrivals: &Arrivals, burst: bool) {
    arrivals.lock().unwrap().clear();
    let mut written = std::collections::HashMap::new();
    let n = 1000;
    let started = Instant::now();
    if burst {
        let events: Vec<NewEvent> = (0..n)
            .map(|i| NewEvent {
                kind: "report.ready".into(),
                namespace: Some("prod-eu".into()),
                subject: format!("{label}-{i}"),
                severity: Some("critical".into()),
                payload: json!({"verdict": "Fail"}),
                idempotency_key: format!("{label}-{i}"),
            })
            .collect();
        let mut conn = pool.acquire().await.unwrap();
        let at = Instant::now();
        publish_many(&mut conn, &events).await.unwrap();
        for i in 0..n {
            written.insert(format!("{label}-{i}"), at);
        }
    } else {
        for i in 0..n {
            let target = started + Duration::from_millis(i as u64 * 10);
            tokio::time::sleep_until(target.into()).await;
            let key = format!("{label}-{i}");
            written.insert(key.clone(), Instant::now());
            publish(
                pool,
                &NewEvent {
                    kind: "report.ready".into(),
                    namespace: Some("prod-eu".into()),
                    subject: key.clone(),
                    severity: Some("critical".into()),
                    payload: json!({"verdict": "Fail"}),
                    idempotency_key: key,
                },
            )
            .await
            .unwrap();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while arrivals.lock().unwrap().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let arrived = arrivals.lock().unwrap().clone();
    let mut latencies: Vec<Duration> = arrived
        .iter()
        .filter_map(|(key, at)| Some(at.duration_since(*written.get(key)?)))
        .collect();
    latencies.sort();
    assert_eq!(latencies.len(), n, "{label}: every event arrives");
    println!(
        "notify {label:<22} {n} events: p50 {:>7.1} ms  p95 {:>7.1} ms  max {:>7.1} ms  ({:.1} s total)",
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.95).as_secs_f64() * 1000.0,
        latencies.last().unwrap().as_secs_f64() * 1000.0,
        started.elapsed().as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let Some(url) =
        stellaops_testing::migrated_database_url("notify_bench", &stellaops_store::MIGRATOR).await
    else {
        eprintln!("skipped: no STELLAOPS_TEST_DATABASE_URL (run scripts/bench.sh)");
        return;
    };
    let pool = stellaops_store::connect(&url).await.unwrap();
    stellaops_store::migrate(&pool).await.unwrap();
    let arrivals: Arrivals = Arc::default();
    let hook = receiver(arrivals.clone()).await;
    let secrets =
        std::env::temp_dir().join(format!("stellaops-notify-bench-{}", std::process::id()));
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("url"), &hook).unwrap();
    std::fs::write(secrets.join("hmacKey"), "bench").unwrap();
    let config = NotifyConfig {
        consumer: "notify/bench".into(),
        rules: vec![RuleConfig {
            namespace: "bench".into(),
            name: "all".into(),
            event_kinds: vec!["report.ready".into()],
            min_severity: Some("high".into()),
            namespaces: vec!["prod-*".into()],
            scope: None,
            include_accepted_vex: false,
            actions: vec![ActionConfig {
                name: "hook".into(),
                channel: "webhook".into(),
                target: String::new(),
                template: "concise".into(),
                throttle_seconds: None,
                digest: "none".into(),
                secret_dir: secrets.display().to_string(),
            }],
        }],
    };
    let worker = Arc::new(Worker::new(pool.clone(), config, Options::default()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = {
        let worker = worker.clone();
        tokio::spawn(async move {
            worker
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    run("steady 100/s", &pool, &arrivals, false).await;
    run("burst of 1000", &pool, &arrivals, true).await;
    let _ = stop.send(());
    let _ = running.await;
    let _ = std::fs::remove_dir_all(&secrets);
}
