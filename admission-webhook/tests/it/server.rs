//! The webhook over TLS on a real socket, with real AdmissionReview documents and a
//! counting evidence source.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::BoxFuture;
use serde_json::{Value, json};
use stellaops_admission_webhook::cosign;
use stellaops_admission_webhook::evidence::{EvidenceSource, FoundSignature};
use stellaops_admission_webhook::policy::{ScanRecord, compile};
use stellaops_admission_webhook::server::{Metrics, Settings, Webhook, health_router, serve_tls};
use stellaops_crds::scan::Verdict;
use stellaops_tls::ReloadableCert;

use crate::policy::{public_pem, sign, signing_key, zastava_policy};

const SIGNED: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const UNSIGNED: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

#[derive(Default)]
pub struct FakeRegistry {
    pub tags: HashMap<String, String>,
    pub signatures: HashMap<String, Vec<FoundSignature>>,
    pub digest_calls: AtomicUsize,
    pub signature_calls: AtomicUsize,
    pub scan_calls: AtomicUsize,
}

impl EvidenceSource for FakeRegistry {
    fn resolve_digest<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<String, String>> {
        self.digest_calls.fetch_add(1, Ordering::SeqCst);
        let found = self.tags.get(image).cloned();
        Box::pin(async move { found.ok_or(format!("{image} not found in the registry")) })
    }
    fn signatures<'a>(
        &'a self,
        _image: &'a str,
        digest: &'a str,
    ) -> BoxFuture<'a, Result<Vec<FoundSignature>, String>> {
        self.signature_calls.fetch_add(1, Ordering::SeqCst);
        let found = self.signatures.get(digest).cloned().unwrap_or_default();
        Box::pin(async move { Ok(found) })
    }
    fn latest_scan<'a>(
        &'a self,
        _digest: &'a str,
    ) -> BoxFuture<'a, Result<Option<ScanRecord>, String>> {
        self.scan_calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            Ok(Some(ScanRecord {
                verdict: Verdict::Pass,
                finished_at: chrono::Utc::now(),
                unverified: None,
            }))
        })
    }
}

pub fn review(kind: &str, operation: &str, object: Value, old: Value) -> Value {
    let (group, resource) = match kind {
        "Pod" => ("", "pods"),
        "Deployment" => ("apps", "deployments"),
        _ => ("batch", "cronjobs"),
    };
    let version = if group.is_empty() {
        "v1".to_string()
    } else {
        format!("{group}/v1")
    };
    let mut object = object;
    object["apiVersion"] = json!(version);
    object["kind"] = json!(kind);
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": format!("uid-{}", rand_uid()),
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "name": object["metadata"]["name"], "namespace": "shop", "operation": operation,
            "userInfo": {"username": "alice@example.com"},
            "object": object, "oldObject": old, "dryRun": false
        }
    })
}

fn rand_uid() -> u64 {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

pub fn pod(images: &[&str]) -> Value {
    json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"containers": images.iter().enumerate()
            .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
            .collect::<Vec<_>>()}
    })
}

pub fn deployment(images: &[&str]) -> Value {
    json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"template": {"spec": pod(images)["spec"].clone()}}
    })
}

pub fn certificate() -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    (certified.cert.pem(), certified.signing_key.serialize_pem())
}

pub struct Running {
    pub webhook: Arc<Webhook>,
    pub addr: std::net::SocketAddr,
    pub health: std::net::SocketAddr,
    pub cert_pem: String,
}

pub async fn start(evidence: Arc<dyn EvidenceSource>) -> Running {
    let (cert_pem, key_pem) = certificate();
    let certificate = Arc::new(ReloadableCert::new(None));
    let metrics = Metrics::register(&prometheus::Registry::new()).unwrap();
    let webhook = Webhook::new(
        Settings::default(),
        evidence,
        None,
        metrics,
        certificate.clone(),
    );
    let health_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let health = health_listener.local_addr().unwrap();
    let app = health_router(webhook.clone());
    tokio::spawn(async move { axum::serve(health_listener, app).await });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_tls(listener, webhook.clone()));
    // Not ready without a certificate and policies.
    let ready = reqwest::get(format!("http://{health}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    certificate.set(stellaops_tls::certified_key(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap());
    Running {
        webhook,
        addr,
        health,
        cert_pem,
    }
}

/// The webhook's answer (`response`) to a Pod CREATE running `image`, under `policy`.
pub async fn ask_for_pod(
    https: reqwest::Client,
    port: u16,
    policy: String,
    image: String,
) -> Value {
    let answer: Value = https
        .post(format!("https://localhost:{port}/validate/{policy}"))
        .json(&review("Pod", "CREATE", pod(&[&image]), Value::Null))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["response"].clone()
}

pub fn client(running: &Running, cert_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .resolve("localhost", running.addr)
        .build()
        .unwrap()
}

async fn post(
    client: &reqwest::Client,
    running: &Running,
    policy: &str,
    body: &Value,
) -> (u16, Value) {
    let response = client
        .post(format!(
            "https://localhost:{}/validate/{policy}",
            running.addr.port()
        ))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn signed_registry() -> FakeRegistry {
    let key = signing_key(3);
    let payload = cosign::payload("registry.example.com/shop/web", SIGNED);
    let mut registry = FakeRegistry::default();
    registry.signatures.insert(
        SIGNED.into(),
        vec![FoundSignature {
            signature: sign(&key, &payload),
            payload,
            ..Default::default()
        }],
    );
    registry
        .tags
        .insert("registry.example.com/shop/web:2".into(), UNSIGNED.into());
    registry
}

fn enforce_signatures(generation: i64) -> stellaops_admission_webhook::policy::CompiledPolicy {
    let policy = zastava_policy(
        json!({"mode": "enforce", "images": ["registry.example.com/**"],
               "requireSignature": {"publicKeys": {"name": "keys", "namespace": "stellaops-system"}},
               "requireScan": {"maxAge": "24h"}}),
        generation,
    );
    compile(&policy, &[public_pem(&signing_key(3))]).unwrap()
}

#[tokio::test]
async fn pods_and_deployments_are_judged_over_tls_and_lookups_are_cached() {
    let registry = Arc::new(signed_registry());
    let running = start(registry.clone()).await;
    running.webhook.set_policies([enforce_signatures(1)]);
    let ready = reqwest::get(format!("http://{}/readyz", running.health))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let client = client(&running, &running.cert_pem);
    let signed = format!("registry.example.com/shop/web@{SIGNED}");

    // A Pod of three containers running the same signed image: admitted, one lookup each.
    let (status, answer) = post(
        &client,
        &running,
        "prod",
        &review(
            "Pod",
            "CREATE",
            pod(&[&signed, &signed, &signed]),
            Value::Null,
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert!(
        answer["response"]["uid"]
            .as_str()
            .unwrap()
            .starts_with("uid-")
    );
    assert_eq!(registry.signature_calls.load(Ordering::SeqCst), 1);
    assert_eq!(registry.scan_calls.load(Ordering::SeqCst), 1);

    // Again: everything from the cache.
    post(
        &client,
        &running,
        "prod",
        &review("Pod", "CREATE", pod(&[&signed]), Value::Null),
    )
    .await;
    assert_eq!(registry.signature_calls.load(Ordering::SeqCst), 1);

    // An unsigned tag, outside images ignored: denied with a message naming the container.
    let unsigned = "registry.example.com/shop/web:2";
    let (_, answer) = post(
        &client,
        &running,
        "prod",
        &review(
            "Pod",
            "CREATE",
            pod(&[&signed, unsigned, "nginx:1.27"]),
            Value::Null,
        ),
    )
    .await;
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["status"]["code"], 403);
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert_eq!(
        message,
        format!(
            "ZastavaPolicy prod denies this: spec.containers[1].image (registry.example.com/shop/web:2): signature check failed for {UNSIGNED}: no cosign signature (neither an OCI referrer of the digest nor the tag {} in the image's repository); sign it with cosign",
            cosign::signature_tag(UNSIGNED)
        )
    );

    // A Deployment update adding the unsigned image is refused for that image only; an
    // update that leaves the images alone (a relabel) is admitted.
    let (_, answer) = post(
        &client,
        &running,
        "prod",
        &review(
            "Deployment",
            "UPDATE",
            deployment(&[&signed, unsigned]),
            deployment(&[&signed]),
        ),
    )
    .await;
    assert_eq!(answer["response"]["allowed"], false);
    assert!(
        answer["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("spec.template.spec.containers[1].image")
    );
    let (_, answer) = post(
        &client,
        &running,
        "prod",
        &review(
            "Deployment",
            "UPDATE",
            deployment(&[unsigned]),
            deployment(&[unsigned]),
        ),
    )
    .await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");

    // A new policy generation (or key) is a cache miss: the registry is asked again.
    let before = registry.signature_calls.load(Ordering::SeqCst);
    running.webhook.set_policies([enforce_signatures(2)]);
    post(
        &client,
        &running,
        "prod",
        &review("Pod", "CREATE", pod(&[&signed]), Value::Null),
    )
    .await;
    assert_eq!(registry.signature_calls.load(Ordering::SeqCst), before + 1);

    // Deletes are never judged.
    let (_, answer) = post(
        &client,
        &running,
        "prod",
        &review("Pod", "DELETE", pod(&[unsigned]), Value::Null),
    )
    .await;
    assert_eq!(answer["response"]["allowed"], true);
}

#[tokio::test]
async fn bad_bodies_get_invalid_and_unknown_policies_fall_to_the_failure_policy() {
    let running = start(Arc::new(FakeRegistry::default())).await;
    running.webhook.set_policies([enforce_signatures(1)]);
    let client = client(&running, &running.cert_pem);
    let url = format!("https://localhost:{}/validate/prod", running.addr.port());
    for body in [
        "{".to_string(),
        "[]".to_string(),
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).to_string(),
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 5}}).to_string(),
        "\u{0}\u{1}binary".to_string(),
    ] {
        let response = client.post(&url).body(body.clone()).send().await.unwrap();
        assert_eq!(response.status(), 200, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["response"]["allowed"], false, "{body}");
        assert_eq!(answer["response"]["status"]["reason"], "InvalidRequest", "{body}");
    }
    let (status, answer) = post(
        &client,
        &running,
        "missing",
        &review("Pod", "CREATE", pod(&["x"]), Value::Null),
    )
    .await;
    assert_eq!(status, 503);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("missing is not loaded")
    );
}

/// The AdmissionReview path answered without the router and every request it leaves to
/// the router agree: a chunked body and a percent-escaped policy name are judged alike,
/// other methods and paths are refused as before, and a body over the cap is refused,
/// whether its length is declared or not.
#[tokio::test]
async fn requests_off_the_direct_path_are_answered_as_by_the_router() {
    use stellaops_admission_webhook::server::{Endpoint, MAX_BODY};
    let running = start(Arc::new(signed_registry())).await;
    running.webhook.set_policies([enforce_signatures(1)]);
    let endpoint = Endpoint::new(running.webhook.clone());
    let body = review(
        "Pod",
        "CREATE",
        pod(&[&format!("registry.example.com/shop/web@{UNSIGNED}")]),
        Value::Null,
    )
    .to_string();
    let send = |method: &str, path: &str, chunked: bool, body: String| {
        let request = axum::http::Request::builder().method(method).uri(path);
        let request = if chunked {
            let chunks: Vec<Result<String, std::io::Error>> = vec![Ok(body)];
            request.body(axum::body::Body::from_stream(futures::stream::iter(chunks)))
        } else {
            request
                .header("content-length", body.len())
                .body(axum::body::Body::from(body))
        };
        let answer = endpoint.clone().answer(request.unwrap());
        async move {
            let response = answer.await;
            let status = response.status().as_u16();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, body)
        }
    };
    // The same denial by every route to `validate`, and over TLS.
    let (status, direct) = send("POST", "/validate/prod", false, body.clone()).await;
    assert_eq!(status, 200);
    let direct: Value = serde_json::from_slice(&direct).unwrap();
    assert_eq!(direct["response"]["allowed"], false, "{direct}");
    for (path, chunked) in [("/validate/prod", true), ("/validate/%70rod", false)] {
        let (status, answer) = send("POST", path, chunked, body.clone()).await;
        assert_eq!(status, 200, "{path}");
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer, direct, "{path}");
    }
    let client = client(&running, &running.cert_pem);
    for path in ["prod", "%70rod"] {
        let response = client
            .post(format!(
                "https://localhost:{}/validate/{path}",
                running.addr.port()
            ))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{path}"
        );
        assert_eq!(response.json::<Value>().await.unwrap(), direct, "{path}");
    }
    // Not routes of the webhook.
    for path in ["/validate/", "/validate/prod/more", "/other"] {
        let (status, _) = send("POST", path, false, body.clone()).await;
        assert_eq!(status, 404, "{path}");
    }
    let (status, _) = send("GET", "/validate/prod", false, String::new()).await;
    assert_eq!(status, 405);
    // Over the cap: 413, declared or streamed.
    for chunked in [false, true] {
        let (status, _) = send("POST", "/validate/prod", chunked, " ".repeat(MAX_BODY + 1)).await;
        assert_eq!(status, 413, "chunked: {chunked}");
    }
    // At the cap, read and judged (a malformed review).
    let (status, answer) = send("POST", "/validate/prod", false, " ".repeat(MAX_BODY)).await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["response"]["status"]["reason"], "InvalidRequest");
}

#[tokio::test]
async fn a_rotated_certificate_serves_new_connections() {
    let running = start(Arc::new(FakeRegistry::default())).await;
    running.webhook.set_policies([]);
    let (new_cert, new_key) = certificate();
    let old_client = client(&running, &running.cert_pem);
    let new_client = client(&running, &new_cert);
    let url = format!("https://localhost:{}/validate/none", running.addr.port());
    assert!(old_client.post(&url).body("{}").send().await.is_ok());
    assert!(new_client.post(&url).body("{}").send().await.is_err());
    running
        .webhook
        .certificate
        .set(stellaops_tls::certified_key(new_cert.as_bytes(), new_key.as_bytes()).unwrap());
    assert!(new_client.post(&url).body("{}").send().await.is_ok());
    // A fresh client trusting only the old certificate is refused now.
    let fresh_old = client(&running, &running.cert_pem);
    assert!(fresh_old.post(&url).body("{}").send().await.is_err());
}

/// The webhook over TLS reading the real registry at `registry` (no database), serving one
/// policy, asked about Pods as the API server asks.
pub struct RegistryWebhook {
    running: Running,
    https: reqwest::Client,
}

impl RegistryWebhook {
    pub async fn start(
        registry: &str,
        policy: stellaops_admission_webhook::policy::CompiledPolicy,
    ) -> RegistryWebhook {
        let evidence = Arc::new(stellaops_admission_webhook::evidence::RegistryEvidence {
            registry: stellaops_registry::RegistryClient::new(
                stellaops_registry::Credentials::default(),
                vec![registry.to_string()],
            )
            .unwrap(),
            database: None,
            verdict_keys: Default::default(),
        });
        let running = start(evidence).await;
        running.webhook.set_policies([policy]);
        let https = client(&running, &running.cert_pem);
        RegistryWebhook { running, https }
    }

    /// The answer (`response`) to a Pod in namespace `prod` running `image`.
    pub async fn ask(&self, image: &str) -> Value {
        ask_for_pod(
            self.https.clone(),
            self.running.addr.port(),
            "prod".into(),
            image.into(),
        )
        .await
    }

    /// Assert that `image` is denied with a message holding `why`.
    pub async fn denies(&self, image: &str, why: &str) {
        let answer = self.ask(image).await;
        assert_eq!(answer["allowed"], false, "{answer}");
        assert!(
            answer["status"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(why),
            "expected {why:?} in {answer}"
        );
    }
}
