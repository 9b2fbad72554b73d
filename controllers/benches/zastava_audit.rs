//! The runtime audit's pass from cache: 5,000 running Pods (two containers each, 700
//! distinct images) in 200 namespaces, 1,000 Scans with verdicts, 10 ZastavaPolicies of
//! different shapes (digest, scan, signature, namespace selectors, image globs). One pass is
//! what [`Observer::tick`] computes before its side effects: the verdict map, then for each
//! policy the matching namespaces, the audit of every Pod and the plan (status, new
//! violations, Events, Scans). Aim (issue 22): ≤ 1 s per pass.
//!
//! `cargo bench -p stellaops-controllers --bench zastava_audit` (`STELLAOPS_AUDIT_PASSES=N`).

/// The operator binary's allocator (operator/src/main.rs), which runs the Observer.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use serde_json::json;
use stellaops_admission_webhook::policy::compile_for_audit;
use stellaops_controllers::Config;
use stellaops_controllers::cache::{Caches, Contents};
use stellaops_controllers::zastava_audit::{
    Facts, PolicyMemory, SignatureFacts, audit_policy, digests_with_scans, plan_pass, verdicts,
};
use stellaops_controllers::zastava_policy::matching_namespaces;
use stellaops_crds::{Scan, ZastavaPolicy};

const NAMESPACES: usize = 200;
const PODS: usize = 5_000;
const IMAGES: usize = 700;
const SCANS: usize = 1_000;

fn digest(i: usize) -> String {
    format!("sha256:{i:064x}")
}

/// Half the images verified, a tenth forged, the rest unknown.
struct Verified;

impl SignatureFacts for Verified {
    fn verified(
        &self,
        _policy: &str,
        _image: &str,
        digest: &str,
    ) -> Option<Result<String, String>> {
        let n = digest.as_bytes()[digest.len() - 1];
        match n % 10 {
            0..=4 => Some(Ok("fingerprint".into())),
            5 => Some(Err("not signed by any trusted key".into())),
            _ => None,
        }
    }
}

fn world() -> (Caches, Vec<ZastavaPolicy>) {
    let namespaces: Vec<Namespace> = (0..NAMESPACES)
        .map(|i| {
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": format!("team-{i:03}"),
                "labels": {"environment": if i.is_multiple_of(2) { "production" } else { "dev" }}}}))
            .unwrap()
        })
        .collect();
    let pods: Vec<Pod> = (0..PODS)
        .map(|i| {
            let (a, b) = (i % IMAGES, (i * 7 + 3) % IMAGES);
            let image = |n: usize| {
                if n.is_multiple_of(3) {
                    format!("registry.example.com/team/app-{n}@{}", digest(n))
                } else {
                    format!("registry.example.com/team/app-{n}:1.{n}")
                }
            };
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("web-{i:04}"), "namespace": format!("team-{:03}", i % NAMESPACES),
                    "uid": format!("uid-{i}"), "labels": {"pod-template-hash": "abc12"},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "name": format!("web-{}-abc12", i % 300), "uid": "rs", "controller": true}]},
                "status": {"phase": "Running", "containerStatuses": [
                    {"name": "app", "image": image(a), "imageID": format!("registry.example.com/team/app-{a}@{}", digest(a)),
                     "ready": true, "restartCount": 0},
                    {"name": "sidecar", "image": image(b), "imageID": format!("registry.example.com/team/app-{b}@{}", digest(b)),
                     "ready": true, "restartCount": 0}]}}))
            .unwrap()
        })
        .collect();
    let scans: Vec<Scan> = (0..SCANS)
        .map(|i| {
            let n = i % IMAGES;
            serde_json::from_value(json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": "Scan",
                "metadata": {"name": format!("scan-{i}"), "namespace": format!("team-{:03}", i % NAMESPACES), "generation": 1},
                "spec": {"image": format!("registry.example.com/team/app-{n}@{}", digest(n))},
                "status": {"observedGeneration": 1, "phase": "Succeeded", "imageDigest": digest(n),
                    "verdict": if n.is_multiple_of(5) { "Fail" } else { "Pass" },
                    "completedAt": "2026-12-01T00:00:00Z"}}))
            .unwrap()
        })
        .collect();
    let specs = [
        json!({"requireDigest": true}),
        json!({"requireScan": {"maxAge": "87600h"}}),
        json!({"requireScan": {"maxAge": "1h"}, "requireDigest": true}),
        json!({"requireSignature": {"keyless": [{"issuer": "https://issuer.example", "subject": "ci", "trustedRoot": {"name": "sigstore-root"}}]}}),
        json!({"namespaceSelector": {"matchLabels": {"environment": "production"}}, "requireDigest": true,
               "requireScan": {"maxAge": "87600h"}}),
        json!({"images": ["registry.example.com/team/app-1*"], "requireScan": {"maxAge": "87600h"}}),
        json!({"exemptions": {"images": ["**/app-2*"], "namespaces": ["team-1*"]}, "requireDigest": true}),
        json!({"requireSignature": {"publicKeys": {"name": "k"}}, "requireScan": {"maxAge": "87600h"},
               "audit": {"createScans": true, "scanBudget": 50}}),
        json!({"namespaceSelector": {"matchExpressions": [{"key": "environment", "operator": "In", "values": ["dev"]}]},
               "requireSignature": {"publicKeys": {"name": "k"}}}),
        json!({"requireDigest": true, "requireScan": {"maxAge": "87600h", "denyOnVerdict": ["Fail", "Warn"]}}),
    ];
    let policies = specs
        .into_iter()
        .enumerate()
        .map(|(i, spec)| {
            serde_json::from_value(
                json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": "ZastavaPolicy",
                "metadata": {"name": format!("policy-{i}"), "generation": 1}, "spec": spec}),
            )
            .unwrap()
        })
        .collect();
    (
        Caches::filled(Contents {
            pods,
            namespaces,
            scans,
            ..Default::default()
        }),
        policies,
    )
}

fn main() {
    let passes: usize = std::env::var("STELLAOPS_AUDIT_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let (caches, policies) = world();
    let config = Config::default();
    let mut memories: HashMap<String, PolicyMemory> = HashMap::new();
    let mut times = Vec::with_capacity(passes);
    let mut totals = (0usize, 0usize, 0usize, 0usize, 0usize);
    let (mut auditing, mut planning) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..passes {
        let started = Instant::now();
        let scans = caches.scans.state();
        let known = verdicts(scans.iter().map(|s| s.as_ref()));
        let covered = digests_with_scans(scans.iter().map(|s| s.as_ref()));
        let namespaces: Vec<Namespace> = caches
            .namespaces
            .state()
            .iter()
            .map(|n| n.as_ref().clone())
            .collect();
        let pods = caches.pods.state();
        let facts = Facts {
            verdicts: &known,
            signatures: Some(&Verified),
            own_namespace: "stellaops-system",
            now: Utc::now(),
        };
        totals = (0, 0, 0, 0, 0);
        for policy in &policies {
            let compiled = compile_for_audit(policy).unwrap();
            let matching: HashSet<String> = matching_namespaces(policy, &config, &namespaces)
                .unwrap()
                .into_iter()
                .collect();
            let audit_started = Instant::now();
            let audit = audit_policy(
                &compiled,
                &matching,
                pods.iter().map(|p| p.as_ref()),
                &facts,
            );
            auditing += audit_started.elapsed();
            let plan_started = Instant::now();
            let memory = memories.entry(compiled.name.clone()).or_default();
            let plan = plan_pass(
                policy,
                audit,
                memory,
                &covered,
                Instant::now(),
                jiff::Timestamp::now(),
            );
            planning += plan_started.elapsed();
            totals.0 += plan.status.pods as usize;
            totals.1 += plan.status.compliant as usize;
            totals.2 += plan.status.violations as usize;
            totals.3 += plan.status.unscanned as usize;
            totals.4 += plan.new_violations.len();
        }
        times.push(started.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "runtime audit from cache: {PODS} Pods (2 containers, {IMAGES} images) x {} policies, {SCANS} Scans, {passes} passes",
        policies.len()
    );
    println!(
        "per pass: min {:.1} ms, median {:.1} ms, max {:.1} ms (aim: <= 1000 ms)",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    );
    println!(
        "of which, averaged per pass: auditing Pods {:.1} ms, planning side effects {:.1} ms",
        ms(auditing) / passes as f64,
        ms(planning) / passes as f64
    );
    println!(
        "last pass over all policies: {} Pod evaluations: {} compliant, {} violating, {} unscanned; {} new violations",
        totals.0, totals.1, totals.2, totals.3, totals.4
    );
    assert!(
        totals.1 > 0 && totals.2 > 0 && totals.3 > 0,
        "every outcome occurs"
    );
}
