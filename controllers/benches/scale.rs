//! Scale: the real controller wiring (`stellaops_controllers::run`) against the in-process
//! API server emulator holding N Scans (1k, 10k), 5,000 Pods, 200 Namespaces and 100
//! NotifyRules. Measures (a) the time from start until every Scan was reconciled once and
//! until every Scan has its status, (b) API requests and response bytes per reconcile,
//! (c) peak RSS and peak heap in use, (d) one Scan's spec change → its reconcile at the largest N, and the same
//! after a restart, when every status is already written; the floor in the same run is
//! deserializing the N-Scan list once (the median of five decodes). Aims (issue 18): full
//! pass ≤ 3× the floor, no LIST from reconcilers, peak RSS ≤ 300 MB at 10k, log-log slope
//! ≈ 1.
//!
//! The emulator runs on a runtime of its own (threads `emulator`), the operator on another
//! (threads `operator`): the CPU time of each is read from the threads' schedstat, so the
//! operator's share is reported apart from the emulator's (a test tool standing in for
//! the API server, whose work a real cluster does elsewhere).
//!
//! `cargo bench -p stellaops-controllers --bench scale` (`STELLAOPS_SCALE_N=1000,10000`;
//! `STELLAOPS_SCALE_DEBOUNCE_MS` sets the controllers' debounce, the operator's
//! `--reconcile-debounce-ms`, 200 by default; `STELLAOPS_SCALE_TIMELINE=1` prints each
//! pass's progress as it changes: Scans reconciled, LIST and PATCH requests so far).

/// The operator binary's allocator (operator/src/main.rs), so the pass costs what it costs
/// there, counting the bytes in use: RSS cannot tell the operator's memory from the rest,
/// as mimalloc hands the operator the pages the benchmark's set-up freed.
#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

mod heap {
    use std::alloc::{GlobalAlloc, Layout};
    use std::cell::Cell;
    use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering::Relaxed};

    /// Bytes allocated minus bytes freed, one counter per thread slot (a cache line each):
    /// a single counter bounced between the cores would slow every allocation.
    #[repr(align(128))]
    struct Shard(AtomicIsize);
    const SHARDS: usize = 64;
    static IN_USE: [Shard; SHARDS] = [const { Shard(AtomicIsize::new(0)) }; SHARDS];
    static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
    }

    fn count(delta: isize) {
        let slot = SLOT
            .try_with(|slot| {
                if slot.get() == usize::MAX {
                    slot.set(NEXT_SLOT.fetch_add(1, Relaxed) % SHARDS);
                }
                slot.get()
            })
            .unwrap_or(0);
        IN_USE[slot].0.fetch_add(delta, Relaxed);
    }

    /// Bytes in use in the whole process now.
    pub fn in_use() -> usize {
        IN_USE
            .iter()
            .map(|s| s.0.load(Relaxed))
            .sum::<isize>()
            .max(0) as usize
    }

    pub struct Counting;

    // SAFETY: every call is passed on to mimalloc unchanged; the counters only observe.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let ptr = unsafe { mimalloc::MiMalloc.alloc(layout) };
            if !ptr.is_null() {
                count(layout.size() as isize);
            }
            ptr
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let ptr = unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) };
            if !ptr.is_null() {
                count(layout.size() as isize);
            }
            ptr
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) };
            count(-(layout.size() as isize));
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let moved = unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) };
            if !moved.is_null() {
                count(new_size as isize - layout.size() as isize);
            }
            moved
        }
    }

    /// The most bytes in use seen while it runs, sampled every 2 ms on a thread of its own.
    pub struct PeakSampler {
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
        thread: std::thread::JoinHandle<usize>,
    }

    impl PeakSampler {
        pub fn start() -> Self {
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let stopped = stop.clone();
            let thread = std::thread::spawn(move || {
                let mut peak = in_use();
                while !stopped.load(Relaxed) {
                    peak = peak.max(in_use());
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                peak.max(in_use())
            });
            PeakSampler { stop, thread }
        }

        /// The peak, in bytes.
        pub fn finish(self) -> usize {
            self.stop.store(true, Relaxed);
            self.thread.join().expect("the sampler does not panic")
        }
    }
}

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use stellaops_controllers::metrics::Metrics;
use stellaops_controllers::{Config, Context};
use stellaops_crds::Scan;
use stellaops_testing::apiserver::{AuditEntry, Emulator, EmulatorOptions, Traffic};

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

/// CPU time (on a core, from each thread's schedstat) of this process's threads named
/// `operator` and `emulator`: the two runtimes.
#[derive(Clone, Copy, Default)]
struct Cpu {
    operator: Duration,
    emulator: Duration,
}

fn cpu() -> Cpu {
    let mut out = Cpu::default();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let ns: u64 = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
            .unwrap_or(0);
        match comm.trim() {
            "operator" => out.operator += Duration::from_nanos(ns),
            "emulator" => out.emulator += Duration::from_nanos(ns),
            _ => {}
        }
    }
    out
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, earlier: Cpu) -> Cpu {
        Cpu {
            operator: self.operator.saturating_sub(earlier.operator),
            emulator: self.emulator.saturating_sub(earlier.emulator),
        }
    }
}

/// `verb resource[/subresource]` of an audited request (`patch scans/status`).
fn request_kind(entry: &AuditEntry) -> String {
    let path = entry.path.split('?').next().unwrap_or_default();
    let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let skip = match parts.first() {
        Some(&"api") => 2,
        Some(&"apis") => 3,
        _ => 0,
    };
    parts.drain(..skip.min(parts.len()));
    if parts.first() == Some(&"namespaces") && parts.len() > 2 {
        parts.drain(..2);
    }
    let resource = match parts.as_slice() {
        [plural] | [plural, _] => plural.to_string(),
        [plural, _, sub, ..] => format!("{plural}/{sub}"),
        [] => path.to_string(),
    };
    format!("{} {resource}", entry.verb)
}

/// The writes among `entries`, counted by verb and resource, most first.
fn writes_by_kind(entries: &[AuditEntry]) -> Vec<(String, usize)> {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for entry in entries
        .iter()
        .filter(|e| matches!(e.verb.as_str(), "create" | "patch" | "update" | "delete"))
    {
        *counts.entry(request_kind(entry)).or_default() += 1;
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    counts
}

/// Scans whose status is at their generation.
fn with_status(emulator: &Emulator) -> usize {
    emulator.count("stella-ops.org/v1alpha1", "Scan", |s| {
        s["status"]["phase"].is_string()
            && s["status"]["observedGeneration"] == s["metadata"]["generation"]
    })
}

/// The time to deserialize the N-Scan list once, from the bytes the server would send
/// (the Scans as they are stored now): the median of five decodes, as one decode alone
/// moved by more than half between runs (36–60 ms at 10,000 Scans on the idle machine),
/// and every ratio of the benchmark is taken against it.
fn list_floor(emulator: &Emulator, n: usize) -> Duration {
    let list = serde_json::to_vec(
        &json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": "ScanList",
        "metadata": {}, "items": emulator.objects("stella-ops.org/v1alpha1", "Scan")}),
    )
    .expect("list serializes");
    let decodes = (0..5)
        .map(|_| {
            let started = Instant::now();
            let parsed: kube::core::ObjectList<Scan> =
                serde_json::from_slice(&list).expect("the list parses");
            let decode = started.elapsed();
            assert_eq!(parsed.items.len(), n);
            decode
        })
        .collect();
    stellaops_testing::median(decodes)
}

struct Figures {
    n: usize,
    floor: Duration,
    full_pass: Duration,
    statuses: Duration,
    restart: Duration,
    reconciles: u64,
}

/// Start the real `run` wiring as replica `instance`; return it and the time until every
/// one of the `n` Scans was reconciled once.
async fn start_and_pass(
    emulator: &Emulator,
    client: &kube::Client,
    metrics: &Metrics,
    instance: &str,
    n: usize,
) -> (tokio::task::JoinHandle<()>, Duration) {
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        bench_config(),
        Some(instance.into()),
    ));
    let started = Instant::now();
    let operator = tokio::spawn(stellaops_controllers::run(ctx));
    let reconciled = reconciles_reached(metrics, n, started, emulator).await;
    assert!(
        reconciled >= n as u64,
        "{instance}: only {reconciled} of {n} Scans reconciled in 10 minutes"
    );
    (operator, started.elapsed())
}

/// The operator's defaults, but for the debounce when `STELLAOPS_SCALE_DEBOUNCE_MS` sets it.
fn bench_config() -> Config {
    let mut config = Config::default();
    if let Some(ms) = std::env::var("STELLAOPS_SCALE_DEBOUNCE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.reconcile_debounce = Duration::from_millis(ms);
    }
    config
}

/// Wait until `n` Scan reconciles succeeded, at most 10 minutes from `started`; how many did.
/// With `STELLAOPS_SCALE_TIMELINE` set, prints the progress of the pass (what showed the
/// emulator's Nagle stalls: LIST pages 30 ms apart while both runtimes sat idle).
async fn reconciles_reached(
    metrics: &Metrics,
    n: usize,
    started: Instant,
    emulator: &Emulator,
) -> u64 {
    let reconciled = || {
        metrics
            .reconciliations
            .with_label_values(&["Scan", "ok"])
            .get()
    };
    let timeline = std::env::var_os("STELLAOPS_SCALE_TIMELINE")
        .is_some()
        .then_some(emulator);
    let mut printed = None;
    loop {
        let done = reconciled();
        if let Some(emulator) = timeline {
            let requests = emulator.traffic().requests;
            let count = |verb: &str| requests.get(verb).copied().unwrap_or(0);
            let shown = (done / 500, count("list"), count("patch") / 500);
            if printed != Some(shown) {
                println!(
                    "  +{:4} ms: {done} Scans reconciled, {} LISTs, {} PATCHes",
                    started.elapsed().as_millis(),
                    count("list"),
                    count("patch")
                );
                printed = Some(shown);
            }
        }
        if done >= n as u64 || started.elapsed() >= Duration::from_secs(600) {
            return done;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / 1048576.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn measure(emulator: &Emulator, n: usize, change: bool) -> Figures {
    let client = emulator.client(&emulator.admin_token()).await;
    let floor = list_floor(emulator, n);

    let (rss_before, _) = rss_mib();
    reset_peak_rss();
    let heap_before = heap::in_use();
    let heap_peak = heap::PeakSampler::start();
    let before = emulator.traffic();
    let audited = emulator.audit_log().len();
    let cpu_before = cpu();
    let metrics = Metrics::unregistered();
    let started = Instant::now();
    let (operator, full_pass) = start_and_pass(emulator, &client, &metrics, "bench", n).await;
    // Every Scan's first reconcile writes its status (a Scan given a Job also gets the
    // finalizer first): the pass is over when every one shows it.
    while with_status(emulator) < n && started.elapsed() < Duration::from_secs(600) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let statuses = started.elapsed();
    let cpu_pass = cpu() - cpu_before;
    // Let the tail (events, the NotifyRules) settle before reading the counters.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = emulator.traffic();
    let (_, peak) = rss_mib();
    let heap_peak = heap_peak.finish();
    let reconciles: u64 = ["Scan", "NotifyRule"]
        .iter()
        .map(|k| metrics.reconciliations.with_label_values(&[k, "ok"]).get())
        .sum();
    let scan_reconciles = metrics
        .reconciliations
        .with_label_values(&["Scan", "ok"])
        .get();
    let requests: u64 =
        after.requests.values().sum::<u64>() - before.requests.values().sum::<u64>();
    let bytes = after.response_bytes - before.response_bytes;
    let lists = diff(&after, &before, "list");
    let log = emulator.audit_log();
    println!(
        "scale N={n}: every Scan reconciled once in {:.2} s ({:.1}× the floor: deserializing the {n}-Scan list once, {:.1} ms); every Scan had its status after {:.2} s ({:.1}×); {scan_reconciles} Scan reconciles",
        full_pass.as_secs_f64(),
        full_pass.as_secs_f64() / floor.as_secs_f64(),
        ms(floor),
        statuses.as_secs_f64(),
        statuses.as_secs_f64() / floor.as_secs_f64(),
    );
    println!(
        "scale N={n}: CPU until every Scan had its status: operator {:.2} s ({:.1}× the floor), emulator {:.2} s",
        cpu_pass.operator.as_secs_f64(),
        cpu_pass.operator.as_secs_f64() / floor.as_secs_f64(),
        cpu_pass.emulator.as_secs_f64(),
    );
    println!(
        "scale N={n}: {reconciles} reconciles (Scan + NotifyRule), {requests} API requests ({:.2}/reconcile, {:.2}/Scan), {:.1} KiB of responses ({:.2} KiB/reconcile, watch streams not counted); by verb {:?}",
        requests as f64 / reconciles as f64,
        requests as f64 / n as f64,
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
        "scale N={n}: writes by resource {:?}",
        writes_by_kind(&log[audited..])
    );
    println!(
        "scale N={n}: {lists} LIST requests in all (the watches' initial lists: one per watched kind and page of 500; any more would be reconcilers')"
    );
    println!(
        "scale N={n}: RSS before the operator {rss_before:.0} MiB (the emulator and its {n} Scans, {PODS} Pods, and pages freed by the set-up), peak while it ran {peak:.0} MiB; heap in use before the operator {:.0} MiB, peak while it ran {:.0} MiB: the operator's share ≤ {:.0} MiB (the emulator's growth, statuses and audit log, included)",
        mib(heap_before),
        mib(heap_peak),
        mib(heap_peak.saturating_sub(heap_before)),
    );

    if change {
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
        let latency = loop {
            let scan = scans.get(&name).await.expect("the Scan is read");
            if scan.status.and_then(|s| s.observed_generation) == generation {
                break Some(changed.elapsed());
            }
            if changed.elapsed() > Duration::from_secs(60) {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        match latency {
            Some(latency) => println!(
                "scale N={n}: one Scan's spec change → its status at the new generation in {:.0} ms (the controller debounces 200 ms)",
                ms(latency)
            ),
            None => println!("scale N={n}: one Scan's spec change was not reconciled in 60 s"),
        }
    }
    operator.abort();
    let _ = operator.await;

    // A restart (a new leader, or a full resync): every Scan already has its status, so
    // a reconcile should read the stores and write nothing.
    let floor_restart = list_floor(emulator, n);
    let before = emulator.traffic();
    let audited = emulator.audit_log().len();
    let cpu_before = cpu();
    let metrics = Metrics::unregistered();
    let (operator, restart) = start_and_pass(emulator, &client, &metrics, "bench-restart", n).await;
    let cpu_restart = cpu() - cpu_before;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = emulator.traffic();
    let log = emulator.audit_log();
    let writes = writes_by_kind(&log[audited..]);
    let scan_writes: usize = writes
        .iter()
        .filter(|(kind, _)| kind.contains(" scans") || kind.contains(" events"))
        .map(|(_, count)| count)
        .sum();
    println!(
        "scale N={n}: after a restart every Scan reconciled again in {:.2} s ({:.1}× the floor; {:.1}× the floor of the Scans with their statuses, {:.1} ms), {} writes ({scan_writes} of Scans or their Events), {} LIST requests (the watches' initial lists); writes by resource {writes:?}",
        restart.as_secs_f64(),
        restart.as_secs_f64() / floor.as_secs_f64(),
        restart.as_secs_f64() / floor_restart.as_secs_f64(),
        ms(floor_restart),
        writes.iter().map(|(_, c)| c).sum::<usize>(),
        diff(&after, &before, "list")
    );
    println!(
        "scale N={n}: CPU of the restart pass: operator {:.2} s ({:.1}× the floor, {:.1}× the floor with statuses), emulator {:.2} s",
        cpu_restart.operator.as_secs_f64(),
        cpu_restart.operator.as_secs_f64() / floor.as_secs_f64(),
        cpu_restart.operator.as_secs_f64() / floor_restart.as_secs_f64(),
        cpu_restart.emulator.as_secs_f64(),
    );
    operator.abort();
    let _ = operator.await;
    Figures {
        n,
        floor,
        full_pass,
        statuses,
        restart,
        reconciles,
    }
}

/// Index and sequential scans of `scan_results` so far (the statistics collector's view,
/// flushed about once a second).
async fn result_lookups(pool: &sqlx::PgPool) -> i64 {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(pool)
        .await;
    sqlx::query_scalar(
        "SELECT coalesce(idx_scan, 0) + coalesce(seq_scan, 0) FROM pg_stat_user_tables
         WHERE relname = 'scan_results'",
    )
    .fetch_one(pool)
    .await
    .unwrap_or(-1)
}

/// A restart with every Scan finished (PostgreSQL holding each one's result, its status
/// showing it): what a start of the operator costs on a cluster whose Scans are all done.
async fn measure_finished(emulator: &Emulator, n: usize, pool: sqlx::PgPool) {
    const API: &str = "stella-ops.org/v1alpha1";
    let digest = |i: u64| format!("sha256:{i:064x}");
    let mut index = 0u64;
    emulator.rewrite(API, "Scan", |scan| {
        index += 1;
        scan["metadata"]["finalizers"] = json!([stellaops_controllers::tenancy::FINALIZER]);
        scan["status"] = json!({
            "observedGeneration": 1, "phase": "Succeeded", "imageDigest": digest(index),
            "verdict": "Pass", "findings": {"critical": 0, "high": 1, "medium": 2, "low": 3},
            "sbom": {"uri": format!("s3://stellaops/sboms/{index}.json"), "sha256": digest(index), "components": 40},
            "conditions": [{"type": "Ready", "status": "True", "reason": "Scanned",
                "message": "Pass", "observedGeneration": 1,
                "lastTransitionTime": "2026-12-01T00:00:00Z"}]});
    });
    let scans = emulator.objects(API, "Scan");
    let (mut uids, mut names, mut digests) = (Vec::new(), Vec::new(), Vec::new());
    for scan in &scans {
        uids.push(
            scan["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        names.push(
            scan["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        digests.push(
            scan["status"]["imageDigest"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    sqlx::query(
        "INSERT INTO scan_results (image_digest, image_ref, advisory_snapshot, scan_namespace,
             scan_name, scan_uid, sbom_uri, sbom_sha256, components, critical, high, medium, low,
             verdict, started_at)
         SELECT d, 'registry.example.com/team/app', 1, 'team', name, uid, 's3://x', d, 40,
                0, 1, 2, 3, 'Pass', now()
         FROM unnest($1::text[], $2::text[], $3::text[]) AS t(uid, name, d)",
    )
    .bind(&uids)
    .bind(&names)
    .bind(&digests)
    .execute(&pool)
    .await
    .expect("the results are recorded");
    let client = emulator.client(&emulator.admin_token()).await;
    let lookups_before = result_lookups(&pool).await;
    let before = emulator.traffic();
    let audited = emulator.audit_log().len();
    let cpu_before = cpu();
    let metrics = Metrics::unregistered();
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            metrics.clone(),
            bench_config(),
            Some("bench-finished".into()),
        )
        .with_outbox(pool.clone()),
    );
    let started = Instant::now();
    let operator = tokio::spawn(stellaops_controllers::run(ctx));
    reconciles_reached(&metrics, n, started, emulator).await;
    let pass = started.elapsed();
    let cpu_pass = cpu() - cpu_before;
    let lookups = result_lookups(&pool).await - lookups_before;
    let after = emulator.traffic();
    let log = emulator.audit_log();
    let scan_writes = writes_by_kind(&log[audited..])
        .into_iter()
        .filter(|(kind, _)| kind.contains(" scans") || kind.contains(" events"))
        .collect::<Vec<_>>();
    println!(
        "scale N={n}: a restart with every Scan finished (PostgreSQL holding each result): every Scan reconciled in {:.2} s, operator CPU {:.2} s, emulator {:.2} s; {lookups} scans of the scan_results table; writes of Scans, and Events of any kind (the NotifyRules' first included: this emulator is fresh) {scan_writes:?}; {} requests in all",
        pass.as_secs_f64(),
        cpu_pass.operator.as_secs_f64(),
        cpu_pass.emulator.as_secs_f64(),
        after.requests.values().sum::<u64>() - before.requests.values().sum::<u64>(),
    );
    operator.abort();
    let _ = operator.await;
}

fn runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name(name)
        .enable_all()
        .build()
        .expect("a runtime")
}

fn main() {
    let sizes: Vec<usize> = std::env::var("STELLAOPS_SCALE_N")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    // The emulator serves from its own runtime; the operator and the bench run on another.
    let emulator_runtime = runtime("emulator");
    let operator_runtime = runtime("operator");
    let mut figures = Vec::new();
    for (i, n) in sizes.iter().enumerate() {
        let emulator = emulator_runtime
            .block_on(Emulator::start(EmulatorOptions {
                authorize: false,
                preload: objects(*n),
                ..Default::default()
            }))
            .expect("emulator starts");
        figures.push(operator_runtime.block_on(measure(&emulator, *n, i + 1 == sizes.len())));
        emulator_runtime.block_on(emulator.shutdown());
    }
    // With PostgreSQL (the services' `STELLAOPS_TEST_DATABASE_URL`): a restart over
    // finished Scans at the largest N.
    let largest = sizes.iter().copied().max();
    let pool = largest.and_then(|_| {
        operator_runtime.block_on(stellaops_testing::migrated_database(
            "stellaops_scale_bench",
            &stellaops_store::MIGRATOR,
        ))
    });
    match (largest, pool) {
        (Some(n), Some(pool)) => {
            let emulator = emulator_runtime
                .block_on(Emulator::start(EmulatorOptions {
                    authorize: false,
                    preload: objects(n),
                    ..Default::default()
                }))
                .expect("emulator starts");
            operator_runtime.block_on(measure_finished(&emulator, n, pool));
            emulator_runtime.block_on(emulator.shutdown());
        }
        _ => println!(
            "scale: no PostgreSQL (STELLAOPS_TEST_DATABASE_URL): the restart over finished Scans is not measured"
        ),
    }
    if let [first, .., last] = figures.as_slice() {
        let slope = |a: Duration, b: Duration| {
            (b.as_secs_f64() / a.as_secs_f64()).ln() / (last.n as f64 / first.n as f64).ln()
        };
        println!(
            "scale: log-log slope {}→{}: every Scan reconciled once {:.2}, every Scan with its status {:.2}, the restart pass {:.2} (the floor's: {:.2}); reconciles {} → {}; aim ≈ 1",
            first.n,
            last.n,
            slope(first.full_pass, last.full_pass),
            slope(first.statuses, last.statuses),
            slope(first.restart, last.restart),
            slope(first.floor, last.floor),
            first.reconciles,
            last.reconciles
        );
    }
}
