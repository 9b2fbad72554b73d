//! Scale: the real controller wiring (`stellaops_controllers::run`) against the in-process
//! API server emulator holding N Scans (1k, 10k), 5,000 Pods, 200 Namespaces and 100
//! NotifyRules. Measures (a) the time from start until every Scan was reconciled once,
//! (b) API requests and response bytes per reconcile, (c) peak RSS, (d) one Scan's spec
//! change → its reconcile at the largest N; the floor in the same run is deserializing the
//! N-Scan list once. Aims (issue 18): full pass ≤ 3× the floor, no LIST from reconcilers,
//! peak RSS ≤ 300 MB at 10k, log-log slope ≈ 1.
//!
//! `cargo bench -p stellaops-controllers --bench scale` (`STELLAOPS_SCALE_N=1000,10000`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use stellaops_controllers::metrics::Metrics;
use stellaops_controllers::{Config, Context};
use stellaops_crds::Scan;
use stellaops_testing::apiserver::{Emulator, EmulatorOptions, Traffic};

const NAMESPACES: usize = 200;
const PODS: usize = 5_000;
const NOTIFY_RULES: usize = 100;

fn namespace(i: usize) -> String {
    format!("team-{i:03}")
}

fn objects(scans: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(NAMESPACES + scans + PODS + NOTIFY_RULES);
    for i in 0..NAMESPACES {
        out.push(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace(i), "labels": {"environment": if i % 2 == 0 { "production" } else { "dev" }}}}));
    }
    for i in 0..scans {
        out.push(
            json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": "Scan",
            "metadata": {"name": format!("scan-{i:05}"), "namespace": namespace(i % NAMESPACES),
                         "labels": {"app": format!("app-{}", i % 50)}},
            "spec": {"image": format!("registry.example.com/team/app-{i}:1.0"),
                     "policy": {"failOn": "high"}}}),
        );
    }
    for i in 0..PODS {
        let digest = format!("sha256:{:064x}", i % 700);
        out.push(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("web-{i:04}"), "namespace": namespace(i % NAMESPACES),
                         "labels": {"app": format!("web-{}", i % 20)},
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x".repeat(400)}},
            "spec": {"containers": [{"name": "web", "image": format!("registry.example.com/web-{}:2", i % 700),
                                     "env": [{"name": "MODE", "value": "production"}],
                                     "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1",
                       "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0,
                           "image": format!("registry.example.com/web-{}:2", i % 700),
                           "imageID": format!("registry.example.com/web-{}@{digest}", i % 700),
                           "state": {"running": {"startedAt": "2026-12-01T00:00:00Z"}}}]}}));
    }
    for i in 0..NOTIFY_RULES {
        out.push(json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": "NotifyRule",
            "metadata": {"name": format!("alerts-{i:03}"), "namespace": namespace(i)},
            "spec": {"enabled": true,
                     "match": {"eventKinds": ["report.ready"], "minSeverity": "high"},
                     "actions": [{"name": "slack", "channel": "slack", "secretRef": {"name": "slack-hook"},
                                  "target": "#sec", "template": "concise"}]}}));
    }
    out
}

/// (current, peak) resident set size of this process, in MiB.
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Start counting the peak anew (Linux: writing 5 to clear_refs resets VmHWM).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn diff(after: &Traffic, before: &Traffic, verb: &str) -> u64 {
    after.requests.get(verb).copied().unwrap_or(0) - before.requests.get(verb).copied().unwrap_or(0)
}

struct Figures {
    n: usize,
    floor: Duration,
    full_pass: Duration,
    reconciles: u64,
    change_latency: Option<Duration>,
}

/// Start the real `run` wiring as replica `instance`; return it and the time until every
/// one of the `n` Scans was reconciled once.
async fn start_and_pass(
    client: &kube::Client,
    metrics: &Metrics,
    instance: &str,
    n: usize,
) -> (tokio::task::JoinHandle<()>, Duration) {
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        Config::default(),
        Some(instance.into()),
    ));
    let started = Instant::now();
    let operator = tokio::spawn(stellaops_controllers::run(ctx));
    let reconciled = || {
        metrics
            .reconciliations
            .with_label_values(&["Scan", "ok"])
            .get()
    };
    while reconciled() < n as u64 {
        if started.elapsed() > Duration::from_secs(600) {
            panic!(
                "{instance}: only {} of {n} Scans reconciled in 10 minutes",
                reconciled()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (operator, started.elapsed())
}

async fn measure(n: usize, change: bool) -> Figures {
    let emulator = Emulator::start(EmulatorOptions {
        authorize: false,
        preload: objects(n),
        ..Default::default()
    })
    .await
    .expect("emulator starts");
    let client = emulator.client(&emulator.admin_token()).await;

    // The floor: the N-Scan list deserialized once, from the bytes the server would send.
    let list = serde_json::to_vec(
        &json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": "ScanList",
        "metadata": {}, "items": emulator.objects("stella-ops.org/v1alpha1", "Scan")}),
    )
    .expect("list serializes");
    let floor_started = Instant::now();
    let parsed: kube::core::ObjectList<Scan> =
        serde_json::from_slice(&list).expect("the list parses");
    let floor = floor_started.elapsed();
    assert_eq!(parsed.items.len(), n);
    drop((parsed, list));

    let (rss_before, _) = rss_mib();
    reset_peak_rss();
    let before = emulator.traffic();
    let metrics = Metrics::unregistered();
    let (operator, full_pass) = start_and_pass(&client, &metrics, "bench", n).await;
    // Let the tail (events, the NotifyRules) settle before reading the counters.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = emulator.traffic();
    let (_, peak) = rss_mib();
    let reconciles: u64 = ["Scan", "NotifyRule"]
        .iter()
        .map(|k| metrics.reconciliations.with_label_values(&[k, "ok"]).get())
        .sum();
    let with_phase = emulator
        .objects("stella-ops.org/v1alpha1", "Scan")
        .iter()
        .filter(|s| s["status"]["phase"].is_string())
        .count();
    let requests: u64 =
        after.requests.values().sum::<u64>() - before.requests.values().sum::<u64>();
    let bytes = after.response_bytes - before.response_bytes;
    let lists = diff(&after, &before, "list");
    println!(
        "scale N={n}: full pass {:.2} s (floor: deserializing the {n}-Scan list once {:.1} ms; {:.1}× the floor); {with_phase}/{n} Scans have a status",
        full_pass.as_secs_f64(),
        floor.as_secs_f64() * 1e3,
        full_pass.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "scale N={n}: {reconciles} reconciles (Scan + NotifyRule), {requests} API requests ({:.2}/reconcile), {:.1} KiB of responses ({:.2} KiB/reconcile, watch streams not counted); by verb {:?}",
        requests as f64 / reconciles as f64,
        bytes as f64 / 1024.0,
        bytes as f64 / 1024.0 / reconciles as f64,
        after
            .requests
            .keys()
            .map(|verb| (verb.clone(), diff(&after, &before, verb)))
            .filter(|(_, count)| *count > 0)
            .collect::<Vec<_>>()
    );
    println!(
        "scale N={n}: {lists} LIST requests in all (the watches' initial lists: one per watched kind and page of 500; any more would be reconcilers')"
    );
    println!(
        "scale N={n}: RSS before the operator {rss_before:.0} MiB (the emulator and its {n} Scans, {PODS} Pods), peak while it ran {peak:.0} MiB (the operator's share ≈ {:.0} MiB)",
        peak - rss_before
    );

    let change_latency = if change {
        // One Scan's spec changes: the time until its status shows the new generation.
        let scans: Api<Scan> = Api::namespaced(client.clone(), &namespace(n / 2 % NAMESPACES));
        let name = format!("scan-{:05}", n / 2);
        let changed = Instant::now();
        let patched = scans
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"policy": {"failOn": "critical"}}})),
            )
            .await
            .expect("the Scan is patched");
        let generation = patched.metadata.generation;
        loop {
            let scan = scans.get(&name).await.expect("the Scan is read");
            if scan.status.and_then(|s| s.observed_generation) == generation {
                break Some(changed.elapsed());
            }
            if changed.elapsed() > Duration::from_secs(60) {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    } else {
        None
    };
    if let Some(latency) = change_latency {
        println!(
            "scale N={n}: one Scan's spec change → its status at the new generation in {:.0} ms (the controller debounces 200 ms)",
            latency.as_secs_f64() * 1e3
        );
    }
    // Let every Scan get its status (a Scan's first reconcile adds the finalizer, the next
    // writes the status) before the restart below.
    let settling = Instant::now();
    while emulator
        .objects("stella-ops.org/v1alpha1", "Scan")
        .iter()
        .any(|s| !s["status"]["phase"].is_string())
        && settling.elapsed() < Duration::from_secs(300)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "scale N={n}: every Scan had a status {:.1} s after the full pass",
        (full_pass + settling.elapsed()).as_secs_f64() - full_pass.as_secs_f64()
    );
    operator.abort();
    let _ = operator.await;

    // A restart (a new leader, or a full resync): every Scan already has its status, so
    // a reconcile should read the stores and write nothing.
    let before = emulator.traffic();
    let metrics = Metrics::unregistered();
    let (operator, resync) = start_and_pass(&client, &metrics, "bench-restart", n).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = emulator.traffic();
    let writes: u64 = ["create", "patch", "update", "delete"]
        .iter()
        .map(|verb| diff(&after, &before, verb))
        .sum();
    println!(
        "scale N={n}: after a restart every Scan reconciled again in {:.2} s ({:.1}× the floor), {writes} writes, {} LIST requests (the watches' initial lists)",
        resync.as_secs_f64(),
        resync.as_secs_f64() / floor.as_secs_f64(),
        diff(&after, &before, "list")
    );
    operator.abort();
    let _ = operator.await;
    emulator.shutdown().await;
    Figures {
        n,
        floor,
        full_pass,
        reconciles,
        change_latency,
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::var("STELLAOPS_SCALE_N")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut figures = Vec::new();
    for (i, n) in sizes.iter().enumerate() {
        figures.push(runtime.block_on(measure(*n, i + 1 == sizes.len())));
    }
    if let [first, .., last] = figures.as_slice() {
        let slope = (last.full_pass.as_secs_f64() / first.full_pass.as_secs_f64()).ln()
            / (last.n as f64 / first.n as f64).ln();
        let floor_slope = (last.floor.as_secs_f64() / first.floor.as_secs_f64()).ln()
            / (last.n as f64 / first.n as f64).ln();
        println!(
            "scale: log-log slope of the full pass {}→{}: {slope:.2} (the floor's: {floor_slope:.2}); reconciles {} → {}; aim ≈ 1",
            first.n, last.n, first.reconciles, last.reconciles
        );
    }
    let _ = figures.last().and_then(|f| f.change_latency);
}
