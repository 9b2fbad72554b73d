//! The notify worker against real PostgreSQL, HTTP receivers on loopback that answer 200,
//! 500, 429 with `Retry-After`, 404 or hang, and a real SMTP server (aiosmtpd) with
//! STARTTLS: every event reaches every action once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sqlx::PgPool;
use stellaops_store::notify::{ActionConfig, NotifyConfig, RuleConfig, rule_counts};
use stellaops_store::outbox::{NewEvent, publish};
use stellaops_workers::notify::{Options, Worker, signature};

/// How a receiver answers, request by request (the last entry repeats).
#[derive(Clone, Debug)]
enum Answer {
    Ok,
    Status(u16),
    RetryAfter(u64),
    Hang,
}

#[derive(Clone, Debug)]
struct Received {
    delivery: String,
    body: Value,
    signature: Option<String>,
    answered: u16,
}

#[derive(Clone)]
struct Receiver {
    url: String,
    log: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// Deliveries answered 200, by delivery key.
    fn accepted(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for r in self.received().into_iter().filter(|r| r.answered == 200) {
            *out.entry(r.delivery).or_insert(0) += 1;
        }
        out
    }
}

/// A receiver's log, script and request count.
type ReceiverState = (
    Arc<Mutex<Vec<Received>>>,
    Arc<Vec<Answer>>,
    Arc<Mutex<usize>>,
);

async fn receiver(script: Vec<Answer>) -> Receiver {
    let log: Arc<Mutex<Vec<Received>>> = Arc::default();
    let state = (log.clone(), Arc::new(script), Arc::new(Mutex::new(0usize)));
    async fn handle(
        State((log, script, count)): State<ReceiverState>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> Response {
        let n = {
            let mut c = count.lock().unwrap();
            *c += 1;
            *c - 1
        };
        let answer = script[n.min(script.len() - 1)].clone();
        let code = match answer {
            Answer::Ok => 200,
            Answer::Status(c) => c,
            Answer::RetryAfter(_) => 429,
            Answer::Hang => 0,
        };
        log.lock().unwrap().push(Received {
            delivery: headers
                .get("x-stellaops-delivery")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            signature: headers
                .get("x-stellaops-signature")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            answered: code,
        });
        match answer {
            Answer::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                StatusCode::OK.into_response()
            }
            Answer::RetryAfter(seconds) => (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", seconds.to_string())],
                "slow down",
            )
                .into_response(),
            _ => StatusCode::from_u16(code).unwrap().into_response(),
        }
    }
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(handle))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, log }
}

struct Fixture {
    pool: PgPool,
    dir: PathBuf,
}

async fn fixture(name: &str) -> Option<Fixture> {
    let pool = stellaops_testing::migrated_database(name, &stellaops_store::MIGRATOR).await?;
    let dir = std::env::temp_dir().join(format!("stellaops-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Some(Fixture { pool, dir })
}

impl Drop for Fixture {
    /// The mounted-Secret directories go with the test.
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Fixture {
    /// A mounted Secret: one file per key.
    fn secret(&self, name: &str, entries: &[(&str, &str)]) -> String {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (key, value) in entries {
            std::fs::write(dir.join(key), format!("{value}\n")).unwrap();
        }
        dir.display().to_string()
    }

    async fn event(&self, key: &str, kind: &str, ns: &str, subject: &str, severity: Option<&str>) {
        publish(
            &self.pool,
            &NewEvent {
                kind: kind.into(),
                namespace: Some(ns.into()),
                subject: subject.into(),
                severity: severity.map(Into::into),
                payload: json!({"verdict": "Fail", "findings": {"critical": 1, "high": 2}}),
                idempotency_key: key.into(),
            },
        )
        .await
        .unwrap();
    }
}

fn action(name: &str, channel: &str, secret_dir: &str) -> ActionConfig {
    ActionConfig {
        name: name.into(),
        channel: channel.into(),
        target: String::new(),
        template: "concise".into(),
        throttle_seconds: None,
        digest: "none".into(),
        secret_dir: secret_dir.into(),
    }
}

fn rule(name: &str, actions: Vec<ActionConfig>) -> RuleConfig {
    RuleConfig {
        namespace: "stellaops".into(),
        name: name.into(),
        event_kinds: vec!["report.ready".into(), "rescan.delta".into()],
        min_severity: Some("high".into()),
        namespaces: vec!["prod-*".into()],
        scope: None,
        include_accepted_vex: false,
        actions,
    }
}

fn options() -> Options {
    Options {
        grace_seconds: 0,
        lease_seconds: 2,
        max_attempts: 3,
        base_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(5),
        concurrency: 16,
        http_timeout: Duration::from_millis(500),
    }
}

/// Run a worker until `done` or `limit`.
async fn drive(worker: &Worker, limit: Duration, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() && started.elapsed() < limit {
        worker.plan_once().await.unwrap();
        worker.deliver_once().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn each_matching_event_reaches_each_action_once_even_with_two_workers() {
    let Some(f) = fixture("notify_once").await else {
        return;
    };
    let slack = receiver(vec![Answer::Ok]).await;
    let hook = receiver(vec![Answer::Ok]).await;
    let slack_dir = f.secret("slack", &[("url", &slack.url)]);
    let hook_dir = f.secret("hook", &[("url", &hook.url), ("hmacKey", "k3y")]);
    let mut slack_action = action("slack-sec-alerts", "slack", &slack_dir);
    slack_action.target = "#sec-alerts".into();
    let config = NotifyConfig {
        consumer: "notify/stellaops".into(),
        rules: vec![rule(
            "high-critical-alerts",
            vec![slack_action, action("siem", "webhook", &hook_dir)],
        )],
    };
    // 30 matching events; the producer retries 10 of them (same idempotency key); and
    // events the rule does not take.
    for i in 0..30 {
        f.event(
            &format!("e{i}"),
            "report.ready",
            "prod-eu",
            &format!("img{i}"),
            Some("critical"),
        )
        .await;
    }
    for i in 0..10 {
        f.event(
            &format!("e{i}"),
            "report.ready",
            "prod-eu",
            &format!("img{i}"),
            Some("critical"),
        )
        .await;
    }
    f.event("low", "report.ready", "prod-eu", "x", Some("low"))
        .await;
    f.event("dev", "report.ready", "dev", "x", Some("critical"))
        .await;
    f.event("kind", "mirror.synced", "prod-eu", "x", None).await;

    // Two workers at once, each with its own lease token.
    let a = Arc::new(Worker::new(f.pool.clone(), config.clone(), options()));
    let b = Arc::new(Worker::new(f.pool.clone(), config.clone(), options()));
    let done = {
        let (slack, hook) = (slack.clone(), hook.clone());
        move || slack.accepted().len() >= 30 && hook.accepted().len() >= 30
    };
    let (wa, wb) = (a.clone(), b.clone());
    let (d1, d2) = (done.clone(), done.clone());
    tokio::join!(
        async move { drive(&wa, Duration::from_secs(20), d1).await },
        async move { drive(&wb, Duration::from_secs(20), d2).await },
    );
    // A little longer: nothing more may arrive.
    drive(&a, Duration::from_millis(300), || false).await;
    for r in [&slack, &hook] {
        let accepted = r.accepted();
        assert_eq!(accepted.len(), 30, "{accepted:?}");
        assert!(accepted.values().all(|n| *n == 1), "{accepted:?}");
        assert_eq!(r.received().len(), 30, "no retries were needed");
    }
    let first = &slack.received()[0];
    assert_eq!(first.body["channel"], "#sec-alerts");
    assert!(
        first.body["text"]
            .as_str()
            .unwrap()
            .starts_with("[CRITICAL] report.ready img"),
        "{}",
        first.body
    );
    // The webhook's signature is HMAC-SHA256 of the exact body with the Secret's key.
    for r in hook.received() {
        let body = serde_json::to_vec(&r.body).unwrap();
        assert_eq!(
            r.signature.as_deref(),
            Some(signature(b"k3y", &body).as_str())
        );
        assert_eq!(r.body["id"].as_str(), Some(r.delivery.as_str()));
    }
    let counts = rule_counts(&f.pool, "stellaops", "high-critical-alerts")
        .await
        .unwrap();
    assert_eq!(
        (counts.sent, counts.failed, counts.throttled, counts.pending),
        (60, 0, 0, 0)
    );
    assert!(counts.last_delivery_at.is_some());
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM notify_attempts")
        .fetch_one(&f.pool)
        .await
        .unwrap();
    assert_eq!(attempts, 60, "every attempt is recorded");
}

#[tokio::test]
async fn failures_are_retried_with_backoff_honouring_retry_after_then_dead_lettered() {
    let Some(f) = fixture("notify_retry").await else {
        return;
    };
    let busy = receiver(vec![Answer::RetryAfter(1), Answer::Ok]).await;
    let broken = receiver(vec![Answer::Status(500)]).await;
    let gone = receiver(vec![Answer::Status(404)]).await;
    let hanging = receiver(vec![Answer::Hang, Answer::Ok]).await;
    // A Slack URL is a secret: nothing may repeat it once nobody answers there.
    let closed = format!("127.0.0.1:{}", stellaops_testing::ports::unused_port());
    let unreachable = format!("http://{closed}/services/T0000/B0000/SECRETPATHTOKEN");
    let rules = vec![
        rule(
            "busy",
            vec![action(
                "a",
                "slack",
                &f.secret("busy", &[("url", &busy.url)]),
            )],
        ),
        rule(
            "broken",
            vec![action(
                "a",
                "teams",
                &f.secret("broken", &[("url", &broken.url)]),
            )],
        ),
        rule(
            "gone",
            vec![action(
                "a",
                "slack",
                &f.secret("gone", &[("url", &gone.url)]),
            )],
        ),
        rule(
            "hanging",
            vec![action(
                "a",
                "slack",
                &f.secret("hanging", &[("url", &hanging.url)]),
            )],
        ),
        rule(
            "misconfigured",
            vec![action("a", "webhook", &f.secret("empty", &[]))],
        ),
        rule(
            "unreachable",
            vec![action(
                "a",
                "slack",
                &f.secret("unreachable", &[("url", &unreachable)]),
            )],
        ),
    ];
    let config = NotifyConfig {
        consumer: "notify/stellaops".into(),
        rules,
    };
    f.event("e1", "report.ready", "prod-eu", "img", Some("high"))
        .await;
    let worker = Worker::new(f.pool.clone(), config, options());
    let started = Instant::now();
    let busy2 = busy.clone();
    let hanging2 = hanging.clone();
    drive(&worker, Duration::from_secs(10), move || {
        busy2.accepted().len() == 1 && hanging2.accepted().len() == 1
    })
    .await;
    // Dead letters need their three attempts: let the backoff run out.
    drive(&worker, Duration::from_millis(1500), || false).await;

    let busy_log = busy.received();
    assert_eq!(busy_log.len(), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    let counts = |name: &'static str| {
        let pool = f.pool.clone();
        async move { rule_counts(&pool, "stellaops", name).await.unwrap() }
    };
    assert_eq!(counts("busy").await.sent, 1);
    let broken_counts = counts("broken").await;
    assert_eq!((broken_counts.sent, broken_counts.failed), (0, 1));
    assert_eq!(broken_counts.last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(broken.received().len(), 3, "max_attempts 3, then dead");
    let gone_counts = counts("gone").await;
    assert_eq!(gone_counts.failed, 1);
    assert_eq!(gone.received().len(), 1, "a 404 is not retried");
    assert_eq!(
        gone_counts.last_error.as_deref(),
        Some("HTTP 404 (not retried)")
    );
    assert_eq!(
        counts("hanging").await.sent,
        1,
        "a hung receiver times out and is retried"
    );
    assert_eq!(hanging.accepted().len(), 1);
    let misconfigured = counts("misconfigured").await;
    assert!(
        misconfigured
            .last_error
            .as_deref()
            .unwrap()
            .contains("has no key url"),
        "{misconfigured:?}"
    );
    let unreachable_counts = counts("unreachable").await;
    let error = unreachable_counts.last_error.clone().unwrap_or_default();
    assert!(error.contains("error sending request"), "{error}");
    assert!(
        !error.contains("SECRETPATHTOKEN") && !error.contains("/services/"),
        "the webhook URL leaked into the delivery record: {error}"
    );
    let attempt_errors: Vec<(Option<String>,)> = sqlx::query_as(
        "SELECT a.error FROM notify_attempts a
         JOIN notify_deliveries d ON d.id = a.delivery_id WHERE d.rule_name = 'unreachable'",
    )
    .fetch_all(&f.pool)
    .await
    .unwrap();
    assert!(!attempt_errors.is_empty());
    for (error,) in attempt_errors {
        assert!(!error.unwrap_or_default().contains("SECRETPATHTOKEN"));
    }
    // Every attempt recorded: status code (or none), latency, error.
    let rows: Vec<(Option<i32>, i32, Option<String>)> = sqlx::query_as(
        "SELECT a.status_code, a.latency_ms, a.error FROM notify_attempts a
         JOIN notify_deliveries d ON d.id = a.delivery_id WHERE d.rule_name = 'hanging' ORDER BY a.id",
    )
    .fetch_all(&f.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].0, None);
    assert!(rows[0].1 >= 450, "the timeout is the latency: {rows:?}");
    assert!(rows[0].2.as_deref().unwrap().contains("no answer within"));
    assert_eq!(rows[1].0, Some(200));
}

#[tokio::test]
async fn a_throttle_suppresses_repeats_of_a_subject_and_counts_them() {
    let Some(f) = fixture("notify_throttle").await else {
        return;
    };
    let slack = receiver(vec![Answer::Ok]).await;
    let mut a = action("a", "slack", &f.secret("s", &[("url", &slack.url)]));
    a.throttle_seconds = Some(300);
    let config = NotifyConfig {
        consumer: "notify/stellaops".into(),
        rules: vec![rule("throttled", vec![a])],
    };
    for (key, subject) in [
        ("1", "img-a"),
        ("2", "img-a"),
        ("3", "img-b"),
        ("4", "img-a"),
    ] {
        f.event(key, "rescan.delta", "prod-eu", subject, Some("critical"))
            .await;
    }
    let worker = Worker::new(f.pool.clone(), config, options());
    drive(&worker, Duration::from_secs(5), || false).await;
    assert_eq!(slack.accepted().len(), 2, "one per subject");
    let counts = rule_counts(&f.pool, "stellaops", "throttled")
        .await
        .unwrap();
    assert_eq!((counts.sent, counts.throttled), (2, 2));
}

#[tokio::test]
async fn a_digest_sends_one_message_per_window_even_across_a_restart() {
    let Some(f) = fixture("notify_digest").await else {
        return;
    };
    let hook = receiver(vec![Answer::Ok]).await;
    let mut a = action(
        "hourly",
        "webhook",
        &f.secret("h", &[("url", &hook.url), ("hmacKey", "k")]),
    );
    a.digest = "hourly".into();
    let config = NotifyConfig {
        consumer: "notify/stellaops".into(),
        rules: vec![rule("digest", vec![a])],
    };
    for i in 0..5 {
        f.event(
            &format!("d{i}"),
            "report.ready",
            "prod-eu",
            &format!("img{i}"),
            Some("high"),
        )
        .await;
    }
    {
        let worker = Worker::new(f.pool.clone(), config.clone(), options());
        drive(&worker, Duration::from_millis(500), || false).await;
    } // The worker stops before the window ends.
    assert!(
        hook.received().is_empty(),
        "nothing before the window closes"
    );
    let (items, due): (i64, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM notify_digest_items), next_attempt_at FROM notify_deliveries",
    )
    .fetch_one(&f.pool)
    .await
    .unwrap();
    assert_eq!(items, 5);
    assert!(
        due > chrono::Utc::now(),
        "due after the window (and its grace)"
    );
    // The hour passes (moved, not waited for); a new worker process sends it.
    sqlx::query("UPDATE notify_deliveries SET next_attempt_at = now()")
        .execute(&f.pool)
        .await
        .unwrap();
    let restarted = Worker::new(f.pool.clone(), config, options());
    let h = hook.clone();
    drive(&restarted, Duration::from_secs(5), move || {
        !h.received().is_empty()
    })
    .await;
    drive(&restarted, Duration::from_millis(200), || false).await;
    let received = hook.received();
    assert_eq!(received.len(), 1);
    let body = &received[0].body;
    assert_eq!(body["events"].as_array().unwrap().len(), 5);
    assert!(body["text"].as_str().unwrap().contains(": 5 events"));
    assert!(
        received[0]
            .delivery
            .starts_with("digest/stellaops/digest/hourly/")
    );
}

#[tokio::test]
async fn a_worker_killed_mid_delivery_is_taken_over_and_the_event_arrives_once() {
    let Some(f) = fixture("notify_kill").await else {
        return;
    };
    // The first request hangs (the worker dies while waiting); later ones are answered.
    let hook = receiver(vec![Answer::Hang, Answer::Ok]).await;
    let config = NotifyConfig {
        consumer: "notify/stellaops".into(),
        rules: vec![rule(
            "kill",
            vec![action("a", "slack", &f.secret("k", &[("url", &hook.url)]))],
        )],
    };
    f.event("k1", "report.ready", "prod-eu", "img", Some("critical"))
        .await;
    let slow = Options {
        http_timeout: Duration::from_secs(60),
        ..options()
    };
    let doomed = Worker::new(f.pool.clone(), config.clone(), slow.clone());
    doomed.plan_once().await.unwrap();
    let task = tokio::spawn(async move {
        doomed.deliver_once().await.unwrap();
    });
    let h = hook.clone();
    let started = Instant::now();
    while h.received().is_empty() && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort(); // killed mid-delivery: the request is in flight, nothing recorded
    let _ = task.await;
    let state: String = sqlx::query_scalar("SELECT state FROM notify_deliveries")
        .fetch_one(&f.pool)
        .await
        .unwrap();
    assert_eq!(state, "sending", "leased to the dead worker");
    // A second worker takes it over once the lease (2 s) expires.
    let survivor = Worker::new(f.pool.clone(), config, options());
    let h = hook.clone();
    drive(&survivor, Duration::from_secs(10), move || {
        h.accepted().len() == 1
    })
    .await;
    drive(&survivor, Duration::from_millis(300), || false).await;
    assert_eq!(
        hook.accepted().values().copied().collect::<Vec<_>>(),
        vec![1]
    );
    let received = hook.received();
    assert_eq!(received.len(), 2);
    assert_eq!(
        received[0].delivery, received[1].delivery,
        "the retry carries the same delivery key, so a receiver can deduplicate"
    );
    let (state, attempts): (String, i32) =
        sqlx::query_as("SELECT state, attempts FROM notify_deliveries")
            .fetch_one(&f.pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), attempts), ("sent", 2));
}

#[tokio::test]
async fn email_goes_to_a_real_smtp_server_over_starttls_with_auth() {
    let Some(f) = fixture("notify_smtp").await else {
        return;
    };
    let Some(python) = stellaops_testing::service("STELLAOPS_TEST_PYTHON") else {
        return;
    };
    let ca = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca);
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(f.dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(f.dir.join("key.pem"), key.serialize_pem()).unwrap();
    let mail = f.dir.join("mail");
    std::fs::create_dir_all(&mail).unwrap();
    let port = stellaops_testing::ports::unused_port();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
    let mut server = std::process::Command::new(python)
        .arg(script)
        .arg(port.to_string())
        .arg(f.dir.join("cert.pem"))
        .arg(f.dir.join("key.pem"))
        .arg(&mail)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(server.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
    }
    let secret = f.secret(
        "smtp",
        &[
            ("host", "localhost"),
            ("port", &port.to_string()),
            ("username", "notify"),
            ("password", "s3cret"),
            ("from", "stellaops@acme.org"),
            ("caCert", &ca_cert.pem()),
        ],
    );
    let mut soc = action("soc-mailbox", "email", &secret);
    soc.target = "soc@acme.org".into();
    soc.template = "detailed".into();
    let wrong = f.secret(
        "smtp-wrong",
        &[
            ("host", "localhost"),
            ("port", &port.to_string()),
            ("username", "notify"),
            ("password", "wrong"),
            ("from", "stellaops@acme.org"),
            ("caCert", &ca_cert.pem()),
        ],
    );
    let mut bad = action("bad-password", "email", &wrong);
    bad.target = "soc@acme.org".into();
    let config = NotifyConfig {
        consumer: "notify/stellaops".into(),
        rules: vec![rule("mail", vec![soc, bad])],
    };
    f.event(
        "m1",
        "report.ready",
        "prod-eu",
        "registry/app@sha256:ab",
        Some("critical"),
    )
    .await;
    let worker = Worker::new(f.pool.clone(), config, options());
    let m = mail.clone();
    drive(&worker, Duration::from_secs(15), move || {
        std::fs::read_dir(&m).unwrap().count() >= 1
    })
    .await;
    drive(&worker, Duration::from_millis(1500), || false).await;
    server.kill().unwrap();
    let _ = server.wait();
    let files: Vec<_> = std::fs::read_dir(&mail).unwrap().collect();
    assert_eq!(files.len(), 1, "one message; the wrong password sends none");
    let message = std::fs::read_to_string(mail.join("1.eml")).unwrap();
    assert!(message.contains("X-Tls: True"), "{message}");
    assert!(message.contains("X-Envelope-To: soc@acme.org"));
    assert!(message.contains("Subject: [CRITICAL] report.ready registry/app@sha256:ab"));
    assert!(
        message.contains("\"verdict\": \"Fail\""),
        "the detailed template: {message}"
    );
    let counts = rule_counts(&f.pool, "stellaops", "mail").await.unwrap();
    assert_eq!((counts.sent, counts.failed), (1, 1));
    assert!(
        counts
            .last_error
            .as_deref()
            .unwrap()
            .contains("SMTP AUTH: 535"),
        "{counts:?}"
    );
}

#[test]
fn smtp_settings_never_show_the_password_in_debug() {
    let settings = stellaops_workers::notify::smtp::SmtpSettings {
        host: "smtp.example.com".into(),
        port: 587,
        tls: "starttls".into(),
        username: Some("notify".into()),
        password: Some("hunter2-smtp".into()),
        from: "stellaops@example.com".into(),
        ca_pem: None,
    };
    let text = format!("{settings:?}");
    assert!(
        text.contains("smtp.example.com") && text.contains("<redacted>"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}
