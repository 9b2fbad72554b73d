//! Zastava's answer time over TLS on loopback, next to a bare axum TLS endpoint that only
//! echoes, measured in the same run with the same client, certificate and listener:
//! * an AdmissionReview for a 3-container Pod with cached verification results, at a fixed
//!   1,000 requests/s (open loop: each request on its own task at its time, latency from
//!   its send) and at maximum throughput (closed loop, 32 connections);
//! * the uncached path: every request verifies each image against the real registry
//!   (`STELLAOPS_TEST_REGISTRY`, images pushed and signed here) — skipped, and said so,
//!   when no registry is configured.
//!
//! Run with `scripts/bench.sh -p stellaops-admission-webhook --bench admission`.

/// The operator binary's allocator (operator/src/main.rs), which serves the webhook.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use base64::Engine;
use futures::future::BoxFuture;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use stellaops_admission_webhook::cosign;
use stellaops_admission_webhook::evidence::{EvidenceSource, FoundSignature, RegistryEvidence};
use stellaops_admission_webhook::policy::{ScanRecord, compile};
use stellaops_admission_webhook::server::{Metrics, Settings, Webhook, serve_tls};
use stellaops_crds::ZastavaPolicy;
use stellaops_crds::scan::Verdict;
use stellaops_tls::ReloadableCert;

const RATE: u64 = 1000;
const SECONDS: u64 = 5;
const CONCURRENCY: usize = 32;
/// Rounds of the alternating throughput comparison.
const ROUNDS: usize = 6;

/// Signatures and verdicts from memory: after the first request nothing is asked anyway.
struct InMemory {
    signatures: Vec<(String, FoundSignature)>,
}

impl EvidenceSource for InMemory {
    fn resolve_digest<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move { Err(format!("{image} is not pinned")) })
    }
    fn signatures<'a>(
        &'a self,
        _image: &'a str,
        digest: &'a str,
    ) -> BoxFuture<'a, Result<Vec<FoundSignature>, String>> {
        let found = self
            .signatures
            .iter()
            .filter(|(d, _)| d == digest)
            .map(|(_, s)| s.clone())
            .collect();
        Box::pin(async move { Ok(found) })
    }
    fn latest_scan<'a>(
        &'a self,
        _digest: &'a str,
    ) -> BoxFuture<'a, Result<Option<ScanRecord>, String>> {
        Box::pin(async move {
            Ok(Some(ScanRecord {
                verdict: Verdict::Pass,
                finished_at: chrono::Utc::now(),
                unverified: None,
            }))
        })
    }
}

fn sign(key: &SigningKey, payload: &[u8]) -> String {
    let signature: Signature = key.sign(payload);
    base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
}

fn policy_for(
    key: &SigningKey,
    require_scan: bool,
) -> stellaops_admission_webhook::policy::CompiledPolicy {
    let mut spec = json!({"mode": "enforce", "requireDigest": true,
        "requireSignature": {"publicKeys": {"name": "keys", "namespace": "stellaops-system"}}});
    if require_scan {
        spec["requireScan"] = json!({"maxAge": "24h"});
    }
    let policy: ZastavaPolicy = serde_json::from_value(json!({
        "apiVersion": "stella-ops.org/v1alpha1", "kind": "ZastavaPolicy",
        "metadata": {"name": "bench", "generation": 1}, "spec": spec,
    }))
    .unwrap();
    let pem = key
        .verifying_key()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap();
    compile(&policy, &[pem]).unwrap()
}

fn pod_review(images: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "bench", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "web", "namespace": "shop", "operation": "CREATE",
            "userInfo": {"username": "bench"},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"containers": images.iter().enumerate()
                    .map(|(i, image)| json!({"name": format!("c{i}"), "image": image})).collect::<Vec<_>>()}},
            "dryRun": false
        }
    }))
    .unwrap()
}

struct Tls {
    cert_pem: String,
    resolver: Arc<ReloadableCert>,
}

fn tls() -> Tls {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = certified.cert.pem();
    let key = stellaops_tls::certified_key(
        cert_pem.as_bytes(),
        certified.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    Tls {
        cert_pem,
        resolver: Arc::new(ReloadableCert::new(Some(key))),
    }
}

async fn start_webhook(
    tls: &Tls,
    evidence: Arc<dyn EvidenceSource>,
    settings: Settings,
    policy: stellaops_admission_webhook::policy::CompiledPolicy,
) -> std::net::SocketAddr {
    start_webhook_with_handle(tls, evidence, settings, policy)
        .await
        .0
}

async fn start_webhook_with_handle(
    tls: &Tls,
    evidence: Arc<dyn EvidenceSource>,
    settings: Settings,
    policy: stellaops_admission_webhook::policy::CompiledPolicy,
) -> (std::net::SocketAddr, Arc<Webhook>) {
    let metrics = Metrics::register(&prometheus::Registry::new()).unwrap();
    let webhook = Webhook::new(settings, evidence, None, metrics, tls.resolver.clone());
    webhook.set_policies([policy]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_tls(listener, webhook.clone()));
    (addr, webhook)
}

/// The review handler alone, in this task (no TLS, HTTP or client): mean microseconds per
/// review over `count`, after a warm-up, checking each answer admits.
async fn handler_alone(webhook: &Webhook, body: &[u8], count: u32) -> f64 {
    for _ in 0..1000 {
        webhook.review("bench", body).await;
    }
    let started = Instant::now();
    for _ in 0..count {
        let (status, answer) = webhook.review("bench", body).await;
        assert!(status == 200 && answer.windows(14).any(|w| w == b"\"allowed\":true"));
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(count)
}

async fn start_echo(tls: &Tls) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = stellaops_tls::config_with_resolver(tls.resolver.clone());
    let listener = stellaops_tls::TlsListener::new(listener, config).unwrap();
    let app = axum::Router::new().route(
        "/validate/{policy}",
        axum::routing::post(|body: Bytes| async move { body }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// The echo served as the webhook is served (`serve_bounded` with the webhook's connection
/// limits: a header-read timer per request, connection slots): the transport without the
/// webhook's work.
async fn start_bounded_echo(tls: &Tls) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = stellaops_tls::config_with_resolver(tls.resolver.clone());
    let listener = stellaops_tls::TlsListener::new(listener, config).unwrap();
    let app = axum::Router::new().route(
        "/validate/{policy}",
        axum::routing::post(|body: Bytes| async move { body }),
    );
    tokio::spawn(stellaops_tls::serve_bounded(
        listener,
        app,
        stellaops_admission_webhook::server::CONNECTION_LIMITS,
        |_, peer: &std::net::SocketAddr| *peer,
        std::future::pending(),
    ));
    addr
}

fn client(tls: &Tls, addr: std::net::SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(tls.cert_pem.as_bytes()).unwrap())
        .resolve("localhost", addr)
        .pool_max_idle_per_host(256)
        .build()
        .unwrap()
}

fn url(addr: std::net::SocketAddr) -> String {
    format!("https://localhost:{}/validate/bench", addr.port())
}

async fn send(client: &reqwest::Client, url: &str, body: &[u8]) -> bool {
    match client.post(url).body(body.to_vec()).send().await {
        Ok(response) => response.status() == 200 && response.bytes().await.is_ok(),
        Err(_) => false,
    }
}

/// The measured request must be admitted, or the figures would be about refusals.
async fn assert_admitted(client: &reqwest::Client, addr: std::net::SocketAddr, body: &[u8]) {
    let answer: Value = client
        .post(url(addr))
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Open loop at `rate` per second: each request is sent on its own task at its time
/// whatever the others are doing; latency from when it was sent (tokio's timer has a
/// 1 ms resolution, so the send can lag the schedule by up to that; the lag is reported).
async fn fixed_rate(
    client: &reqwest::Client,
    url: &str,
    body: &[u8],
    rate: u64,
    seconds: u64,
) -> (Vec<Duration>, usize) {
    let total = rate * seconds;
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let scheduled = start + interval * i as u32;
        tokio::time::sleep_until(scheduled.into()).await;
        let (client, url, body) = (client.clone(), url.to_string(), body.to_vec());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let ok = send(&client, &url, &body).await;
            (ok, sent.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut failed = 0;
    for task in tasks {
        let (ok, latency) = task.await.unwrap();
        if ok {
            latencies.push(latency);
        } else {
            failed += 1;
        }
    }
    latencies.sort();
    (latencies, failed)
}

/// CPU time this process has used so far (user + system, all threads: the client's and
/// the servers'), from `/proc/self/stat` in clock ticks of 10 ms; zero where unreadable.
fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // The fields after the command name (which is in parentheses and may hold spaces):
    // utime and stime are the 14th and 15th of the line, the 12th and 13th after it.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Closed loop with `concurrency` requests in flight for `seconds`: requests per second.
async fn max_throughput(
    client: &reqwest::Client,
    url: &str,
    body: &[u8],
    concurrency: usize,
    seconds: u64,
) -> f64 {
    let (done, elapsed) = closed_loop(client, url, body, concurrency, seconds).await;
    done as f64 / elapsed.as_secs_f64()
}

/// Closed loop with `concurrency` requests in flight for `seconds`: requests answered and
/// the time taken.
async fn closed_loop(
    client: &reqwest::Client,
    url: &str,
    body: &[u8],
    concurrency: usize,
    seconds: u64,
) -> (u64, Duration) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.to_string(), body.to_vec());
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    if send(&client, &url, &body).await {
                        done += 1;
                    }
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for worker in workers {
        total += worker.await.unwrap();
    }
    (total, started.elapsed())
}

/// One target's figures from [`alternating_throughput`].
struct Throughput {
    /// Mean requests per second over the rounds.
    rate: f64,
    /// The lowest and highest ratio of the first target's rate to this one's in a round.
    ratios: (f64, f64),
    /// CPU time of the whole process (client and servers) per request, in microseconds,
    /// and the share of the machine's cores it kept busy.
    cpu_us: f64,
    busy: f64,
}

/// Maximum throughput of several targets measured in alternating one-second rounds, so
/// that other work on a shared machine weighs on all alike.
async fn alternating_throughput(
    targets: &[(&reqwest::Client, &str, &[u8])],
    rounds: usize,
) -> Vec<Throughput> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut sums = vec![0.0; targets.len()];
    let mut ranges = vec![(f64::MAX, 0.0f64); targets.len()];
    let mut cpu = vec![Duration::ZERO; targets.len()];
    let mut requests = vec![0u64; targets.len()];
    let mut wall = vec![Duration::ZERO; targets.len()];
    for _ in 0..rounds {
        let mut round = Vec::new();
        for (i, (client, url, body)) in targets.iter().enumerate() {
            let before = process_cpu();
            let (done, elapsed) = closed_loop(client, url, body, CONCURRENCY, 1).await;
            cpu[i] += process_cpu().saturating_sub(before);
            requests[i] += done;
            wall[i] += elapsed;
            round.push(done as f64 / elapsed.as_secs_f64());
        }
        for (i, rate) in round.iter().enumerate() {
            sums[i] += rate;
            let ratio = round[0] / rate;
            ranges[i] = (ranges[i].0.min(ratio), ranges[i].1.max(ratio));
        }
    }
    (0..targets.len())
        .map(|i| Throughput {
            rate: sums[i] / rounds as f64,
            ratios: ranges[i],
            cpu_us: cpu[i].as_secs_f64() * 1e6 / requests[i].max(1) as f64,
            busy: cpu[i].as_secs_f64() / wall[i].as_secs_f64() / cores,
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn uncached(tls: &Tls, key: &SigningKey) {
    let Ok(registry) = std::env::var("STELLAOPS_TEST_REGISTRY") else {
        println!(
            "uncached path: skipped (STELLAOPS_TEST_REGISTRY is not set; scripts/bench.sh starts the registry)"
        );
        return;
    };
    let mut images = Vec::new();
    for i in 0..3 {
        let repository = format!("zastava-bench/app{i}");
        let dir = std::env::temp_dir().join(format!("zastava-bench-{}-{i}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let layer = stellaops_testing::oci::tar_of(&[("etc/id", format!("{i}").as_bytes())]);
        let built = stellaops_testing::oci::write_layout(&dir, &[layer], "1");
        stellaops_testing::oci::push(&dir, "1", &registry, &repository);
        let _ = std::fs::remove_dir_all(&dir);
        let payload = cosign::payload(&format!("{registry}/{repository}"), &built.manifest_digest);
        stellaops_testing::oci::push_cosign_signature(
            &registry,
            &repository,
            &built.manifest_digest,
            &payload,
            &sign(key, &payload),
        )
        .await;
        images.push(format!("{registry}/{repository}@{}", built.manifest_digest));
    }
    let evidence = RegistryEvidence {
        registry: stellaops_registry::RegistryClient::new(
            Default::default(),
            vec![registry.clone()],
        )
        .unwrap(),
        database: None,
        verdict_keys: Default::default(),
    };
    // Nothing is remembered: every request asks the registry for each image.
    let settings = Settings {
        cache_capacity: 1,
        signature_ttl: Duration::ZERO,
        negative_ttl: Duration::ZERO,
        fact_ttl: Duration::ZERO,
        ..Settings::default()
    };
    let addr = start_webhook(tls, Arc::new(evidence), settings, policy_for(key, false)).await;
    let client = client(tls, addr);
    let body = pod_review(&images);
    assert_admitted(&client, addr, &body).await;
    let (latencies, rate) = sequential(&client, addr, &body).await;
    println!(
        "uncached path (3 images, each: signature manifest + payload blob from the local registry): p50 {:.2} ms, p99 {:.2} ms over {} sequential requests ({rate:.0} req/s one at a time)",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        latencies.len()
    );
}

/// 200 requests one after the other: their latencies (sorted) and the requests per second.
async fn sequential(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    body: &[u8],
) -> (Vec<Duration>, f64) {
    let mut latencies = Vec::new();
    let all = Instant::now();
    for _ in 0..200 {
        let started = Instant::now();
        assert!(send(client, &url(addr), body).await);
        latencies.push(started.elapsed());
    }
    let rate = latencies.len() as f64 / all.elapsed().as_secs_f64();
    latencies.sort();
    (latencies, rate)
}

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[tokio::main]
async fn main() {
    let tls = tls();
    let key = SigningKey::from_slice(&[9; 32]).unwrap();
    let digests: Vec<String> = (0..3)
        .map(|i| digest_of(format!("image {i}").as_bytes()))
        .collect();
    let images: Vec<String> = digests
        .iter()
        .enumerate()
        .map(|(i, d)| format!("registry.example.com/shop/app{i}@{d}"))
        .collect();
    let signatures = digests
        .iter()
        .zip(&images)
        .map(|(digest, image)| {
            let payload = cosign::payload(image.split('@').next().unwrap(), digest);
            (
                digest.clone(),
                FoundSignature {
                    signature: sign(&key, &payload),
                    payload,
                    ..Default::default()
                },
            )
        })
        .collect();
    let (webhook, handler) = start_webhook_with_handle(
        &tls,
        Arc::new(InMemory { signatures }),
        Settings::default(),
        policy_for(&key, true),
    )
    .await;
    let echo = start_echo(&tls).await;
    let bounded_echo = start_bounded_echo(&tls).await;
    let body = pod_review(&images);
    let webhook_client = client(&tls, webhook);
    let echo_client = client(&tls, echo);
    let bounded_client = client(&tls, bounded_echo);
    assert_admitted(&webhook_client, webhook, &body).await;

    println!(
        "AdmissionReview: 3-container Pod, requireDigest + requireSignature + requireScan, cached; {} bytes",
        body.len()
    );
    let mut p99 = Vec::new();
    for (name, client, addr) in [
        ("zastava", &webhook_client, webhook),
        ("echo", &echo_client, echo),
    ] {
        // Warm the connection pool.
        max_throughput(client, &url(addr), &body, CONCURRENCY, 1).await;
        let (latencies, failed) = fixed_rate(client, &url(addr), &body, RATE, SECONDS).await;
        println!(
            "{name:8} at {RATE}/s for {SECONDS}s: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, failed {failed}",
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
            ms(percentile(&latencies, 1.0)),
        );
        p99.push(percentile(&latencies, 0.99));
    }
    let rates = alternating_throughput(
        &[
            (&webhook_client, &url(webhook), &body),
            (&echo_client, &url(echo), &body),
            (&bounded_client, &url(bounded_echo), &body),
        ],
        ROUNDS,
    )
    .await;
    let (zastava, echo_figures, bounded) = (&rates[0], &rates[1], &rates[2]);
    println!(
        "max throughput ({CONCURRENCY} connections, {ROUNDS} alternating 1 s rounds): zastava {:.0} req/s, echo {:.0} req/s, ratio {:.2} (per round {:.2}-{:.2}; aim >= 0.8); echo served like the webhook (serve_bounded) {:.0} req/s, ratio {:.2} (per round {:.2}-{:.2}); zastava p99 {:.3} ms (aim < 2 ms)",
        zastava.rate,
        echo_figures.rate,
        zastava.rate / echo_figures.rate,
        echo_figures.ratios.0,
        echo_figures.ratios.1,
        bounded.rate,
        zastava.rate / bounded.rate,
        bounded.ratios.0,
        bounded.ratios.1,
        ms(p99[0])
    );
    println!(
        "CPU per request, whole process (client and server): zastava {:.1} us ({:.0}% of the cores busy), echo {:.1} us ({:.0}%), serve_bounded echo {:.1} us ({:.0}%)",
        zastava.cpu_us,
        zastava.busy * 100.0,
        echo_figures.cpu_us,
        echo_figures.busy * 100.0,
        bounded.cpu_us,
        bounded.busy * 100.0,
    );
    println!(
        "handler alone (Webhook::review in-process, no TLS/HTTP, cached, 3-container Pod): {:.2} us per review",
        handler_alone(&handler, &body, 50_000).await
    );
    uncached(&tls, &key).await;
    keyless(&tls, &echo_client, echo).await;
    keyless_bundle(&tls).await;
}

/// A keyless Sigstore bundle (DSSE signature statement, SET and inclusion proof with a
/// signed checkpoint, made by `tests/it/bundle_material.py`): one verification uncached,
/// then uncached requests against the local registry (the bundle found as a referrer
/// through the tag schema, nothing cached).
async fn keyless_bundle(tls: &Tls) {
    let Some(python) = stellaops_testing::service("STELLAOPS_TEST_PYTHON") else {
        println!("keyless bundle: skipped (no STELLAOPS_TEST_PYTHON to make the material)");
        return;
    };
    let registry = std::env::var("STELLAOPS_TEST_REGISTRY").ok();
    // With a registry, the material is made for an image pushed there.
    let (digest, image) = match &registry {
        Some(registry) => {
            let repository = "zastava-bench/bundle";
            let dir =
                std::env::temp_dir().join(format!("zastava-bench-bundle-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let layer = stellaops_testing::oci::tar_of(&[("etc/id", b"bundle")]);
            let built = stellaops_testing::oci::write_layout(&dir, &[layer], "1");
            stellaops_testing::oci::push(&dir, "1", registry, repository);
            let _ = std::fs::remove_dir_all(&dir);
            let image = format!("{registry}/{repository}@{}", built.manifest_digest);
            (built.manifest_digest, image)
        }
        None => {
            let digest = digest_of(b"bundle image");
            let image = format!("registry.example.com/shop/bundle@{digest}");
            (digest, image)
        }
    };
    let dir = std::env::temp_dir().join(format!("bundle-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let status = std::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/bundle_material.py"
        ))
        .arg(&digest)
        .arg(dir.join("material.json"))
        .status()
        .unwrap();
    assert!(status.success(), "bundle_material.py failed");
    let material: Value =
        serde_json::from_slice(&std::fs::read(dir.join("material.json")).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let bundle = material["cases"]["good"]
        .as_str()
        .unwrap()
        .as_bytes()
        .to_vec();
    let policy: ZastavaPolicy = serde_json::from_value(json!({
        "apiVersion": "stella-ops.org/v1alpha1", "kind": "ZastavaPolicy",
        "metadata": {"name": "bench", "generation": 1},
        "spec": {"mode": "enforce", "requireDigest": true, "requireSignature": {"keyless": [{
            "subject": material["subject"], "issuer": material["issuer"],
            "trustedRoot": {"name": "sigstore-trusted-root"}}]}},
    }))
    .unwrap();
    let compiled = stellaops_admission_webhook::policy::compile_with_trusted_roots(
        &policy,
        &[],
        &[material["trusted_root"].as_str().unwrap().to_string()],
    )
    .unwrap();
    let check = compiled.signature.clone().unwrap();
    let mut each = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        stellaops_admission_webhook::bundle::verify_image_signature(
            &check,
            &bundle,
            &digest,
            chrono::Utc::now(),
        )
        .unwrap();
        each.push(started.elapsed());
    }
    each.sort();
    println!(
        "keyless bundle: one verification (parse, DSSE signature, SET, inclusion proof of 5 hashes, signed checkpoint, body, chain of two, SCT, identity) p50 {:.3} ms, p99 {:.3} ms",
        ms(percentile(&each, 0.5)),
        ms(percentile(&each, 0.99)),
    );
    let Some(registry) = registry else {
        println!(
            "keyless bundle, uncached from the registry: skipped (STELLAOPS_TEST_REGISTRY is not set)"
        );
        return;
    };
    let bundle_type = cosign::SIGSTORE_BUNDLE_ARTIFACT_TYPE;
    stellaops_testing::oci::push_referrer(
        &registry,
        "zastava-bench/bundle",
        &digest,
        bundle_type,
        &[(
            &bundle,
            bundle_type,
            json!({"dev.sigstore.bundle.predicateType": stellaops_admission_webhook::bundle::SIGN_PREDICATE_TYPE}),
        )],
        true,
    )
    .await;
    let evidence = RegistryEvidence {
        registry: stellaops_registry::RegistryClient::new(
            Default::default(),
            vec![registry.clone()],
        )
        .unwrap(),
        database: None,
        verdict_keys: Default::default(),
    };
    let settings = Settings {
        cache_capacity: 1,
        signature_ttl: Duration::ZERO,
        negative_ttl: Duration::ZERO,
        fact_ttl: Duration::ZERO,
        ..Settings::default()
    };
    let addr = start_webhook(tls, Arc::new(evidence), settings, compiled).await;
    let client = client(tls, addr);
    let body = pod_review(std::slice::from_ref(&image));
    assert_admitted(&client, addr, &body).await;
    let (latencies, rate) = sequential(&client, addr, &body).await;
    println!(
        "keyless bundle, uncached 1-container Pod (referrers tag index, bundle manifest and blob, the .sig tag's 404, verification; nothing cached): p50 {:.2} ms, p99 {:.2} ms over {} sequential requests ({rate:.0} req/s one at a time)",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        latencies.len()
    );
}

/// A keyless-signed image (certificate chain and Rekor entry made by Python `cryptography`,
/// `tests/it/keyless_material.py`): one verification uncached, then cached requests at a
/// fixed rate and at maximum throughput, next to the echo's throughput for the same body.
async fn keyless(tls: &Tls, echo_client: &reqwest::Client, echo: std::net::SocketAddr) {
    let Some(python) = stellaops_testing::service("STELLAOPS_TEST_PYTHON") else {
        println!("keyless: skipped (no STELLAOPS_TEST_PYTHON to make the material)");
        return;
    };
    let digest = digest_of(b"keyless image");
    let image = format!("registry.example.com/shop/keyless@{digest}");
    let payload = cosign::payload("registry.example.com/shop/keyless", &digest);
    let dir = std::env::temp_dir().join(format!("keyless-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("payload.json"), &payload).unwrap();
    let status = std::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/keyless_material.py"
        ))
        .arg(dir.join("payload.json"))
        .arg(dir.join("material.json"))
        .status()
        .unwrap();
    assert!(status.success(), "keyless_material.py failed");
    let material: Value =
        serde_json::from_slice(&std::fs::read(dir.join("material.json")).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let good = &material["cases"]["good"];
    let policy: ZastavaPolicy = serde_json::from_value(json!({
        "apiVersion": "stella-ops.org/v1alpha1", "kind": "ZastavaPolicy",
        "metadata": {"name": "bench", "generation": 1},
        "spec": {"mode": "enforce", "requireDigest": true, "requireSignature": {"keyless": [{
            "subject": material["subject"], "issuer": material["issuer"],
            "trustedRoot": {"name": "sigstore-trusted-root"}}]}},
    }))
    .unwrap();
    let compiled = stellaops_admission_webhook::policy::compile_with_trusted_roots(
        &policy,
        &[],
        &[material["trusted_root"].as_str().unwrap().to_string()],
    )
    .unwrap();
    let found = FoundSignature {
        payload: payload.clone(),
        signature: good["signature"].as_str().unwrap().to_string(),
        certificate: good["certificate"].as_str().map(str::to_string),
        rekor_bundle: good["bundle"].as_str().map(str::to_string),
        ..Default::default()
    };
    // One verification: signature, SET and entry, chain of two, identity.
    let check = compiled.signature.clone().unwrap();
    let signature = stellaops_admission_webhook::keyless::KeylessSignature {
        payload: &found.payload,
        signature_b64: &found.signature,
        certificate_pem: found.certificate.as_deref(),
        rekor_bundle: found.rekor_bundle.as_deref(),
        rfc3161_timestamp: None,
    };
    let mut each = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        cosign::verify_with(&check, &signature, &digest, chrono::Utc::now()).unwrap();
        each.push(started.elapsed());
    }
    each.sort();
    let webhook = start_webhook(
        tls,
        Arc::new(InMemory {
            signatures: vec![(digest.clone(), found)],
        }),
        Settings::default(),
        compiled,
    )
    .await;
    let body = pod_review(std::slice::from_ref(&image));
    let webhook_client = client(tls, webhook);
    assert_admitted(&webhook_client, webhook, &body).await;
    max_throughput(&webhook_client, &url(webhook), &body, CONCURRENCY, 1).await;
    let (latencies, failed) =
        fixed_rate(&webhook_client, &url(webhook), &body, RATE, SECONDS).await;
    let rates = alternating_throughput(
        &[
            (&webhook_client, &url(webhook), &body),
            (echo_client, &url(echo), &body),
        ],
        ROUNDS,
    )
    .await;
    let (zastava, echo) = (&rates[0], &rates[1]);
    println!(
        "keyless: one verification (uncached) p50 {:.3} ms, p99 {:.3} ms; cached 1-container Pod at {RATE}/s for {SECONDS}s: p50 {:.3} ms, p99 {:.3} ms (aim < 2 ms), failed {failed}; max throughput {:.0} req/s, echo {:.0} req/s with the same body in alternating rounds, ratio {:.2} (per round {:.2}-{:.2}; aim >= 0.8); CPU per request (client and server) {:.1} us against the echo's {:.1} us",
        ms(percentile(&each, 0.5)),
        ms(percentile(&each, 0.99)),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        zastava.rate,
        echo.rate,
        zastava.rate / echo.rate,
        echo.ratios.0,
        echo.ratios.1,
        zastava.cpu_us,
        echo.cpu_us,
    );
}
