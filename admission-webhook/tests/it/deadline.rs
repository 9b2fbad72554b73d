//! The answer budget: a registry that stalls, a database that is stopped or hangs, a burst
//! of reviews for one image, more reviews than the webhook takes at once. Each review is
//! answered by the webhook itself within `timeoutSeconds` − 1 s (measured here), under
//! `enforce` as a deny that says what was not checked, under `warn` as an admission with a
//! warning.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde_json::{Value, json};
use stellaops_admission_webhook::evidence::{EvidenceSource, FoundSignature, RegistryEvidence};
use stellaops_admission_webhook::policy::{ScanRecord, compile};
use stellaops_admission_webhook::server::{Metrics, Settings, Webhook};
use stellaops_registry::{Credentials, RegistryClient};
use stellaops_tls::ReloadableCert;

use crate::policy::zastava_policy;
use crate::server::{pod, review};

const DIGEST: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

/// A TCP peer that accepts connections and never says a word (a hung registry or
/// database); returns its address.
async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    address
}

/// A loopback address nothing listens on (a stopped server).
fn closed_port() -> String {
    format!("127.0.0.1:{}", stellaops_testing::ports::unused_port())
}

fn webhook(
    evidence: Arc<dyn EvidenceSource>,
    settings: Settings,
) -> (Arc<Webhook>, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let webhook = Webhook::new(
        settings,
        evidence,
        None,
        Metrics::register(&registry).unwrap(),
        Arc::new(ReloadableCert::new(None)),
    );
    (webhook, registry)
}

fn policy(spec: Value) -> stellaops_admission_webhook::policy::CompiledPolicy {
    compile(&zastava_policy(spec, 1), &[]).unwrap()
}

/// Review a Pod running `image` under the loaded policy; the answer and how long it took.
async fn timed_review(webhook: &Webhook, image: &str) -> (Value, Duration) {
    let body = serde_json::to_vec(&review("Pod", "CREATE", pod(&[image]), Value::Null)).unwrap();
    let started = Instant::now();
    let (status, answer) = webhook.review("prod", &body).await;
    let elapsed = started.elapsed();
    assert_eq!(status, 200);
    (serde_json::from_slice(&answer).unwrap(), elapsed)
}

fn denial(answer: &Value) -> String {
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    answer["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .to_string()
}

fn warnings(answer: &Value) -> Vec<String> {
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    answer["response"]["warnings"]
        .as_array()
        .map(|w| w.iter().map(|w| w.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_stalled_registry_is_answered_inside_the_budget() {
    let registry = black_hole().await;
    let evidence = Arc::new(RegistryEvidence {
        registry: RegistryClient::new(Credentials::default(), vec![]).unwrap(),
        database: None,
        verdict_keys: Default::default(),
    });
    let (webhook, _) = webhook(evidence, Settings::default());
    let image = format!("{registry}/shop/web:2");
    let scan = json!({"maxAge": "24h", "denyOnVerdict": ["Fail"]});
    // timeoutSeconds 2: the API server waits 2 s, the webhook answers within 1 s.
    for (mode, on_timeout) in [
        ("enforce", "deny"),
        ("enforce", "allow"),
        ("warn", "deny"),
        ("dryRun", "deny"),
    ] {
        webhook.set_policies([policy(json!({
            "mode": mode, "onTimeout": on_timeout, "timeoutSeconds": 2, "requireScan": scan,
        }))]);
        let (answer, elapsed) = timed_review(&webhook, &image).await;
        eprintln!("stalled registry, {mode}/onTimeout {on_timeout}: answered in {elapsed:?}");
        assert!(
            elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(2),
            "answered in {elapsed:?}; the budget is 1 s and the API server waits 2 s"
        );
        let expected = "cannot resolve its digest: the registry did not answer within 1.0 s, so this was not checked";
        match (mode, on_timeout) {
            ("enforce", "deny") => {
                let message = denial(&answer);
                assert!(message.contains(expected), "{message}");
                assert!(message.contains("spec.containers[0].image"), "{message}");
            }
            ("enforce", "allow") => {
                let warnings = warnings(&answer);
                assert_eq!(warnings.len(), 1, "{warnings:?}");
                assert!(
                    warnings[0].contains("not checked in time, admitted by onTimeout: allow")
                        && warnings[0].contains(expected),
                    "{warnings:?}"
                );
            }
            _ => {
                let warnings = warnings(&answer);
                assert_eq!(warnings.len(), 1, "{warnings:?}");
                assert!(warnings[0].contains(expected), "{warnings:?}");
            }
        }
    }
}

#[tokio::test]
async fn a_stopped_or_hung_database_is_answered_inside_the_budget() {
    for (what, address) in [("stopped", closed_port()), ("hung", black_hole().await)] {
        let pool = stellaops_store::lookup_pool(
            &format!("postgres://zastava:secret@{address}/stellaops"),
            4,
            Duration::from_millis(500),
            Duration::from_secs(2),
        )
        .unwrap();
        let evidence = Arc::new(RegistryEvidence {
            registry: RegistryClient::new(Credentials::default(), vec![]).unwrap(),
            database: Some(pool),
            verdict_keys: Default::default(),
        });
        let (webhook, _) = webhook(evidence, Settings::default());
        // Pinned by digest: only the database is asked.
        let image = format!("registry.example.com/shop/web@{DIGEST}");
        let scan = json!({"maxAge": "24h", "denyOnVerdict": ["Fail"]});
        for mode in ["enforce", "warn"] {
            webhook.set_policies([policy(
                json!({"mode": mode, "timeoutSeconds": 3, "requireScan": scan}),
            )]);
            let (answer, elapsed) = timed_review(&webhook, &image).await;
            eprintln!("{what} database, {mode}: answered in {elapsed:?}");
            assert!(
                elapsed < Duration::from_secs(2),
                "answered in {elapsed:?}; the budget is 2 s"
            );
            let expected = format!("cannot read the scan result of {DIGEST}");
            let text = if mode == "enforce" {
                denial(&answer)
            } else {
                warnings(&answer).join("\n")
            };
            assert!(text.contains(&expected), "{text}");
            assert!(!text.contains("secret"), "the database URL leaked: {text}");
        }
    }
}

/// An evidence source whose digest lookups take `delay` and are counted.
struct Slow {
    delay: Duration,
    digest_calls: AtomicUsize,
}

impl EvidenceSource for Slow {
    fn resolve_digest<'a>(&'a self, _image: &'a str) -> BoxFuture<'a, Result<String, String>> {
        self.digest_calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            Ok(DIGEST.to_string())
        })
    }
    fn signatures<'a>(
        &'a self,
        _image: &'a str,
        _digest: &'a str,
    ) -> BoxFuture<'a, Result<Vec<FoundSignature>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn latest_scan<'a>(
        &'a self,
        _digest: &'a str,
    ) -> BoxFuture<'a, Result<Option<ScanRecord>, String>> {
        Box::pin(async {
            Ok(Some(ScanRecord {
                verdict: stellaops_crds::scan::Verdict::Pass,
                finished_at: chrono::Utc::now(),
                unverified: None,
            }))
        })
    }
}

#[tokio::test]
async fn concurrent_misses_for_one_image_share_one_lookup() {
    let slow = Arc::new(Slow {
        delay: Duration::from_millis(300),
        digest_calls: AtomicUsize::new(0),
    });
    let (webhook, _) = webhook(slow.clone(), Settings::default());
    webhook.set_policies([policy(json!({
        "mode": "enforce", "requireScan": {"maxAge": "24h", "denyOnVerdict": ["Fail"]},
    }))]);
    let answers = futures::future::join_all(
        (0..50).map(|_| timed_review(&webhook, "registry.example.com/shop/web:2")),
    )
    .await;
    for (answer, _) in &answers {
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
    }
    assert_eq!(
        slow.digest_calls.load(Ordering::SeqCst),
        1,
        "50 concurrent reviews of one tag resolve it once"
    );
}

#[tokio::test]
async fn past_the_concurrency_limit_a_review_is_answered_at_once() {
    let slow = Arc::new(Slow {
        delay: Duration::from_secs(10),
        digest_calls: AtomicUsize::new(0),
    });
    let (webhook, _) = webhook(
        slow,
        Settings {
            max_in_flight: 1,
            ..Settings::default()
        },
    );
    webhook.set_policies([policy(json!({
        "mode": "enforce", "timeoutSeconds": 5,
        "requireScan": {"maxAge": "24h", "denyOnVerdict": ["Fail"]},
    }))]);
    let first = {
        let webhook = webhook.clone();
        tokio::spawn(async move { timed_review(&webhook, "registry.example.com/a:1").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (answer, elapsed) = timed_review(&webhook, "registry.example.com/b:1").await;
    eprintln!("overloaded review answered in {elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(1),
        "the second review waited {elapsed:?} behind the first"
    );
    let message = denial(&answer);
    assert!(
        message.contains("the webhook is answering its limit of 1 reviews at once"),
        "{message}"
    );
    let (first, first_elapsed) = first.await.unwrap();
    assert!(
        denial(&first).contains("did not answer within 4.0 s"),
        "{first}"
    );
    assert!(first_elapsed < Duration::from_secs(5), "{first_elapsed:?}");
}

#[tokio::test]
async fn a_policy_not_loaded_never_becomes_a_metric_label() {
    let slow = Arc::new(Slow {
        delay: Duration::ZERO,
        digest_calls: AtomicUsize::new(0),
    });
    let (webhook, registry) = webhook(slow, Settings::default());
    webhook.set_policies([policy(json!({"mode": "enforce"}))]);
    let body = serde_json::to_vec(&review("Pod", "CREATE", pod(&["nginx"]), Value::Null)).unwrap();
    for name in ["attacker-chosen-1", "attacker-chosen-2"] {
        let (status, _) = webhook.review(name, &body).await;
        assert_eq!(status, 503);
        let (status, _) = webhook.review(name, b"not json").await;
        assert_eq!(status, 200, "a bad body is answered as invalid");
    }
    let (status, _) = webhook.review("prod", &body).await;
    assert_eq!(status, 200);
    let labels: Vec<String> = registry
        .gather()
        .iter()
        .flat_map(|family| family.get_metric().to_vec())
        .flat_map(|metric| {
            metric
                .get_label()
                .iter()
                .map(|l| l.value().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(labels.iter().any(|l| l == "prod"), "{labels:?}");
    assert!(labels.iter().any(|l| l == "(not loaded)"), "{labels:?}");
    assert!(
        !labels.iter().any(|l| l.starts_with("attacker")),
        "{labels:?}"
    );
}

#[tokio::test]
async fn readiness_needs_synced_policies_and_a_certificate_once_a_policy_exists() {
    let slow = Arc::new(Slow {
        delay: Duration::ZERO,
        digest_calls: AtomicUsize::new(0),
    });
    let (webhook, _) = webhook(slow, Settings::default());
    assert!(!webhook.is_ready(), "policies not synced yet");
    webhook.set_policies([]);
    assert!(
        webhook.is_ready(),
        "no policy: nothing to serve, no certificate needed"
    );
    webhook.set_policies([policy(json!({"mode": "enforce"}))]);
    assert!(
        !webhook.is_ready(),
        "a policy without a certificate to serve it"
    );
    let (cert, key) = crate::server::certificate();
    webhook
        .certificate
        .set(stellaops_tls::certified_key(cert.as_bytes(), key.as_bytes()).unwrap());
    assert!(webhook.is_ready());
}
