//! The Observer (runtime audit of ZastavaPolicies): counts over cached Pods, what is new,
//! rate-limited Events, the Scan budget, signature facts from the webhook, and one whole
//! tick against the mock API server (status, Scan, Event) with the outbox in the real
//! PostgreSQL.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use http::Method;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use serde_json::{Value, json};
use stellaops_admission_webhook::policy::{ScanRecord, compile_for_audit};
use stellaops_controllers::cache::{Caches, Contents};
use stellaops_controllers::metrics::Metrics;
use stellaops_controllers::zastava_audit::{
    EVENT_INTERVAL, Facts, Observer, PolicyMemory, SignatureFacts, audit_policy, due, plan_pass,
    running_digest, verdicts, workload_of,
};
use stellaops_controllers::{Config, Context, FIELD_MANAGER};
use stellaops_crds::scan::Verdict;
use stellaops_crds::zastava_policy::Mode;
use stellaops_crds::{Scan, ZastavaPolicy};
use stellaops_testing::mock_client;

fn digest(n: u32) -> String {
    format!("sha256:{n:064x}")
}

fn policy(spec: Value) -> ZastavaPolicy {
    serde_json::from_value(json!({
        "apiVersion": "stella-ops.org/v1alpha1", "kind": "ZastavaPolicy",
        "metadata": {"name": "prod", "uid": "0b5c8f1e-0000-4000-8000-000000000002", "generation": 2},
        "spec": spec,
    }))
    .unwrap()
}

/// A running Pod in `namespace` whose one container runs `image` as digest `running`.
fn pod(namespace: &str, name: &str, image: &str, running: Option<&str>, phase: &str) -> Pod {
    let image_id = running
        .map(|d| format!("{}@{d}", image.split([':', '@']).next().unwrap()))
        .unwrap_or_default();
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}"),
            "labels": {"pod-template-hash": "5d8f7c9b8"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}-5d8f7c9b8"),
                "uid": "rs-uid", "controller": true}]},
        "status": {"phase": phase, "containerStatuses": [{"name": "app", "image": image, "imageID": image_id,
            "ready": true, "restartCount": 0}]},
    }))
    .unwrap()
}

fn namespaces(names: &[&str]) -> HashSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn passing(hours_ago: i64) -> ScanRecord {
    ScanRecord {
        verdict: Verdict::Pass,
        finished_at: Utc::now() - chrono::Duration::hours(hours_ago),
        unverified: None,
    }
}

#[test]
fn running_digests_come_from_the_image_id_only_when_it_names_a_manifest() {
    let d = digest(7);
    assert_eq!(
        running_digest(&format!("docker.io/library/nginx@{d}")),
        Some(d.as_str())
    );
    assert_eq!(
        running_digest(&format!("docker-pullable://nginx@{d}")),
        Some(d.as_str())
    );
    assert_eq!(running_digest(&d), None, "a bare config id is not a digest");
    assert_eq!(running_digest("nginx@sha256:12"), None);
}

#[test]
fn each_running_pod_counts_once_as_compliant_violating_or_unscanned() {
    let policy = compile_for_audit(&policy(json!({
        "mode": "enforce", "requireDigest": true,
        "requireScan": {"maxAge": "24h", "denyOnVerdict": ["Fail"]},
        "exemptions": {"images": ["registry.example.com/tools/**"]},
    })))
    .unwrap();
    let (good, failing, unscanned, stale) = (digest(1), digest(2), digest(3), digest(4));
    let verdicts = HashMap::from([
        (good.clone(), passing(1)),
        (
            failing.clone(),
            ScanRecord {
                verdict: Verdict::Fail,
                ..passing(1)
            },
        ),
        (stale.clone(), passing(48)),
    ]);
    let pinned = |d: &str| format!("registry.example.com/shop/web@{d}");
    let pods = vec![
        pod("shop", "good-1", &pinned(&good), Some(&good), "Running"),
        pod("shop", "good-2", &pinned(&good), Some(&good), "Running"),
        pod("shop", "fail", &pinned(&failing), Some(&failing), "Running"),
        pod("shop", "stale", &pinned(&stale), Some(&stale), "Running"),
        pod(
            "shop",
            "new",
            &pinned(&unscanned),
            Some(&unscanned),
            "Running",
        ),
        // By tag: a violation (not pinned) however good its digest.
        pod(
            "shop",
            "tagged",
            "registry.example.com/shop/web:2",
            Some(&good),
            "Running",
        ),
        // Not counted: finished, exempt image, namespace not covered, kube-system.
        pod(
            "shop",
            "done",
            &pinned(&failing),
            Some(&failing),
            "Succeeded",
        ),
        pod(
            "shop",
            "tool",
            "registry.example.com/tools/debug:1",
            Some(&failing),
            "Running",
        ),
        pod(
            "other",
            "fail",
            &pinned(&failing),
            Some(&failing),
            "Running",
        ),
        pod(
            "kube-system",
            "fail",
            &pinned(&failing),
            Some(&failing),
            "Running",
        ),
    ];
    let facts = Facts {
        verdicts: &verdicts,
        signatures: None,
        own_namespace: "stellaops-system",
        now: Utc::now(),
    };
    let audit = audit_policy(
        &policy,
        &namespaces(&["shop", "kube-system"]),
        pods.iter(),
        &facts,
    );
    assert_eq!(
        (
            audit.pods,
            audit.compliant,
            audit.violations,
            audit.unscanned
        ),
        (6, 2, 3, 1),
        "{audit:#?}"
    );
    let reasons: Vec<(&str, &str)> = audit
        .found
        .iter()
        .map(|v| (v.pod.as_str(), v.reason.as_str()))
        .collect();
    assert!(reasons[0].0 == "fail" && reasons[0].1.contains("has verdict Fail"));
    assert!(reasons[1].0 == "stale" && reasons[1].1.contains("older than 24h"));
    assert!(reasons[2].0 == "tagged" && reasons[2].1.contains("not pinned by digest"));
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    // The unscanned digest is the one a Scan would be requested for, by digest.
    assert_eq!(
        audit.without_verdict.keys().collect::<Vec<_>>(),
        [&unscanned]
    );
    assert_eq!(
        audit.without_verdict[&unscanned].image,
        format!("registry.example.com/shop/web@{unscanned}")
    );
    // Events go to the Deployment behind the ReplicaSet.
    assert_eq!(audit.found[0].workload.kind.as_deref(), Some("Deployment"));
    assert_eq!(audit.found[0].workload.name.as_deref(), Some("fail"));
}

#[test]
fn a_pod_without_an_owner_is_its_own_workload() {
    let mut lone = pod("shop", "lone", "nginx:1", None, "Running");
    lone.metadata.owner_references = None;
    let workload = workload_of(&lone);
    assert_eq!(workload.kind.as_deref(), Some("Pod"));
    assert_eq!(workload.uid.as_deref(), Some("uid-shop-lone"));
}

struct KnownSignatures {
    known: HashMap<String, Result<String, String>>,
    requested: Mutex<Vec<String>>,
}

impl SignatureFacts for KnownSignatures {
    fn verified(&self, policy: &str, _image: &str, digest: &str) -> Option<Result<String, String>> {
        assert_eq!(policy, "prod");
        self.known.get(digest).cloned()
    }
    fn request(&self, _policy: &str, _image: &str, digest: &str) {
        self.requested.lock().unwrap().push(digest.to_string());
    }
}

struct KnownAttestations {
    known: HashMap<String, Vec<Result<String, String>>>,
}

impl SignatureFacts for KnownAttestations {
    fn verified(&self, _: &str, _: &str, _: &str) -> Option<Result<String, String>> {
        panic!("imageSignature: false asks for no image signature")
    }
    fn verified_attestations(
        &self,
        policy: &str,
        _image: &str,
        digest: &str,
    ) -> Option<Vec<Result<String, String>>> {
        assert_eq!(policy, "prod");
        self.known.get(digest).cloned()
    }
}

#[test]
fn attestations_count_as_the_webhook_verified_them_and_unknown_ones_are_unscanned() {
    let policy = compile_for_audit(&policy(json!({
        "requireSignature": {"publicKeys": {"name": "keys"}, "imageSignature": false},
        "requireAttestations": [{"predicateType": "slsaprovenance1",
            "conditions": [{"expression": "predicate.runDetails.builder.id.startsWith('https://github.com/')"}]}],
    })))
    .unwrap();
    assert!(policy.signature.is_none());
    let (attested, unmet, unknown) = (digest(21), digest(22), digest(23));
    let facts_source = KnownAttestations {
        known: HashMap::from([
            (attested.clone(), vec![Ok("abcd".to_string())]),
            (
                unmet.clone(),
                vec![Err(
                    "AttestationMissing: no attestation slsaprovenance1".to_string()
                )],
            ),
        ]),
    };
    let verdicts = HashMap::new();
    let facts = Facts {
        verdicts: &verdicts,
        signatures: Some(&facts_source),
        own_namespace: "stellaops-system",
        now: Utc::now(),
    };
    let pods = [
        pod(
            "shop",
            "attested",
            "r.example/a:1",
            Some(&attested),
            "Running",
        ),
        pod("shop", "unmet", "r.example/a:2", Some(&unmet), "Running"),
        pod(
            "shop",
            "unknown",
            "r.example/a:3",
            Some(&unknown),
            "Running",
        ),
    ];
    let audit = audit_policy(&policy, &namespaces(&["shop"]), pods.iter(), &facts);
    assert_eq!(
        (audit.compliant, audit.violations, audit.unscanned),
        (1, 1, 1)
    );
    assert!(audit.found[0].reason.contains("AttestationMissing"));
    // Not verified yet: asked for in the background.
    assert_eq!(
        audit.unverified,
        [("r.example/a:3".to_string(), unknown.clone())]
    );
}

#[test]
fn signatures_count_as_the_webhook_verified_them_and_unknown_ones_are_unscanned() {
    let policy = compile_for_audit(&policy(json!({
        "requireSignature": {"keyless": [{"issuer": "https://token.actions.githubusercontent.com", "subject": "x", "trustedRoot": {"name": "sigstore-root"}}]},
    })))
    .unwrap();
    let (signed, forged, unknown) = (digest(11), digest(12), digest(13));
    let facts_source = KnownSignatures {
        known: HashMap::from([
            (signed.clone(), Ok("abcd".to_string())),
            (
                forged.clone(),
                Err("not signed by any trusted key".to_string()),
            ),
        ]),
        requested: Mutex::default(),
    };
    let verdicts = HashMap::new();
    let facts = Facts {
        verdicts: &verdicts,
        signatures: Some(&facts_source),
        own_namespace: "stellaops-system",
        now: Utc::now(),
    };
    let pods = [
        pod("shop", "signed", "r.example/a:1", Some(&signed), "Running"),
        pod("shop", "forged", "r.example/a:2", Some(&forged), "Running"),
        pod(
            "shop",
            "unknown",
            "r.example/a:3",
            Some(&unknown),
            "Running",
        ),
        pod(
            "shop",
            "unknown-2",
            "r.example/a:3",
            Some(&unknown),
            "Running",
        ),
    ];
    let audit = audit_policy(&policy, &namespaces(&["shop"]), pods.iter(), &facts);
    assert_eq!(
        (audit.compliant, audit.violations, audit.unscanned),
        (1, 1, 2)
    );
    assert!(
        audit.found[0]
            .reason
            .contains("not signed by any trusted key")
    );
    // The unknown image is asked for once, however many Pods run it.
    assert_eq!(
        audit.unverified,
        [("r.example/a:3".to_string(), unknown.clone())]
    );
}

#[test]
fn only_new_violations_are_announced_and_events_are_rate_limited() {
    let spec = json!({"requireDigest": true, "audit": {"createScans": true, "scanBudget": 1},
                      "requireScan": {"maxAge": "24h"}});
    let zp = policy(spec);
    let compiled = compile_for_audit(&zp).unwrap();
    let verdicts = HashMap::new();
    let facts = Facts {
        verdicts: &verdicts,
        signatures: None,
        own_namespace: "stellaops-system",
        now: Utc::now(),
    };
    let (a, b, c) = (digest(21), digest(22), digest(23));
    let mut pods = [
        pod("shop", "web", "r.example/web:1", Some(&a), "Running"),
        pod("shop", "api", "r.example/api:1", Some(&b), "Running"),
        pod(
            "shop",
            "db",
            &format!("r.example/db@{c}"),
            Some(&c),
            "Running",
        ),
    ];
    let ns = namespaces(&["shop"]);
    let mut memory = PolicyMemory::default();
    let start = Instant::now();
    let covered = HashSet::from([b.clone()]);
    let first = plan_pass(
        &zp,
        audit_policy(&compiled, &ns, pods.iter(), &facts),
        &mut memory,
        &covered,
        start,
        jiff::Timestamp::now(),
    );
    assert_eq!(first.new_violations.len(), 2, "web and api are not pinned");
    assert_eq!(first.events.len(), 2);
    assert!(
        first.events[0]
            .1
            .contains("ZastavaPolicy prod (runtime audit)")
    );
    // Budget 1, and b already has a Scan: only a is requested.
    assert_eq!(first.scans.len(), 1);
    assert_eq!(
        first.scans[0],
        (
            "shop".to_string(),
            format!("zastava-audit-{}", &a[7..23]),
            format!("r.example/web@{a}")
        )
    );
    assert_eq!(first.status.violations, 2);
    assert_eq!(first.status.unscanned, 1);
    assert_eq!(first.status.scans_requested, 1);
    assert_eq!(first.status.observed_generation, Some(2));
    assert_eq!(first.status.examples.len(), 2);

    // The same world a minute later: nothing new, no Events.
    let second = plan_pass(
        &zp,
        audit_policy(&compiled, &ns, pods.iter(), &facts),
        &mut memory,
        &covered,
        start + Duration::from_secs(60),
        jiff::Timestamp::now(),
    );
    assert!(second.new_violations.is_empty());
    assert!(second.events.is_empty());
    // The Pod is recreated (new uid): a new violation, but its Deployment was told recently.
    pods[0].metadata.uid = Some("uid-new".into());
    let third = plan_pass(
        &zp,
        audit_policy(&compiled, &ns, pods.iter(), &facts),
        &mut memory,
        &covered,
        start + Duration::from_secs(120),
        jiff::Timestamp::now(),
    );
    assert_eq!(third.new_violations.len(), 1);
    assert_eq!(third.new_violations[0].pod_uid, "uid-new");
    assert!(third.events.is_empty());
    // After the interval, Events again.
    let later = plan_pass(
        &zp,
        audit_policy(&compiled, &ns, pods.iter(), &facts),
        &mut memory,
        &covered,
        start + EVENT_INTERVAL + Duration::from_secs(1),
        jiff::Timestamp::now(),
    );
    assert_eq!(later.events.len(), 2);
}

#[test]
fn a_policy_is_due_when_new_changed_or_its_interval_passed() {
    let now = Instant::now();
    let last = stellaops_controllers::zastava_audit::LastPass {
        generation: 3,
        at: now,
    };
    let five = Duration::from_secs(300);
    assert!(due(None, 3, five, now));
    assert!(!due(Some(&last), 3, five, now + Duration::from_secs(299)));
    assert!(due(Some(&last), 3, five, now + five));
    assert!(due(Some(&last), 4, five, now + Duration::from_secs(1)));
}

#[test]
fn verdicts_are_the_latest_succeeded_scan_of_each_digest() {
    let d = digest(31);
    let scan = |name: &str, verdict: &str, at: &str, phase: &str| -> Scan {
        serde_json::from_value(json!({
            "apiVersion": "stella-ops.org/v1alpha1", "kind": "Scan",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"image": format!("r.example/web@{d}")},
            "status": {"phase": phase, "imageDigest": d, "verdict": verdict, "completedAt": at},
        }))
        .unwrap()
    };
    let scans = [
        scan("old", "Fail", "2026-11-01T00:00:00Z", "Succeeded"),
        scan("new", "Pass", "2026-12-01T00:00:00Z", "Succeeded"),
        scan("broken", "Fail", "2026-12-02T00:00:00Z", "Failed"),
    ];
    let known = verdicts(scans.iter());
    assert_eq!(known[&d].verdict, Verdict::Pass);
}

fn namespace(name: &str, labels: Value) -> Namespace {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": labels}}))
    .unwrap()
}

#[tokio::test]
async fn a_tick_writes_the_outbox_a_scan_an_event_and_the_status() {
    let pool =
        stellaops_testing::migrated_database("zastava_audit", &stellaops_store::MIGRATOR).await;
    let zp = policy(json!({
        "mode": "warn", "requireDigest": true,
        "namespaceSelector": {"matchLabels": {"environment": "production"}},
        "requireScan": {"maxAge": "24h"},
        "audit": {"createScans": true, "scanBudget": 5, "interval": "10m"},
        "policyRef": {"name": "prod-policy"},
    }));
    let d = digest(41);
    let caches = Caches::filled(Contents {
        pods: vec![
            pod("shop", "web", "r.example/web:1", Some(&d), "Running"),
            pod("dev", "web", "r.example/web:1", Some(&d), "Running"),
        ],
        namespaces: vec![
            namespace("shop", json!({"environment": "production"})),
            namespace("dev", json!({"environment": "dev"})),
        ],
        ..Default::default()
    });
    let (client, mut server) = mock_client("default");
    let mut ctx =
        Context::new(client, Metrics::unregistered(), Config::default(), None).with_caches(caches);
    if let Some(pool) = &pool {
        ctx = ctx.with_outbox(pool.clone());
    }
    let (policies, mut writer) = kube::runtime::reflector::store::<ZastavaPolicy>();
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Init);
    writer.apply_watcher_event(&kube::runtime::watcher::Event::InitApply(zp.clone()));
    writer.apply_watcher_event(&kube::runtime::watcher::Event::InitDone);
    let answer = json!(zp);
    let api = tokio::spawn(async move {
        let scan = server
            .expect(
                Method::PATCH,
                &format!(
                    "/apis/stella-ops.org/v1alpha1/namespaces/shop/scans/zastava-audit-{}",
                    &d[7..23]
                ),
            )
            .await;
        assert!(scan.is_forced_apply());
        assert_eq!(scan.field_manager(), Some(FIELD_MANAGER));
        assert_eq!(scan.body["spec"]["image"], format!("r.example/web@{d}"));
        // The policy's ScanPolicy decides the Scan's verdict.
        assert_eq!(
            scan.body["spec"]["policy"]["policyRef"],
            json!({"name": "prod-policy"})
        );
        assert_eq!(
            scan.body["metadata"]["labels"]["stella-ops.org/requested-by"],
            "zastava-audit"
        );
        scan.respond_with_request_body();
        let event = server
            .expect(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/shop/events",
            )
            .await;
        assert_eq!(event.body["reason"], "RuntimePolicyViolation");
        assert_eq!(event.body["regarding"]["kind"], "Deployment");
        assert_eq!(event.body["regarding"]["name"], "web");
        assert_eq!(event.body["related"]["kind"], "ZastavaPolicy");
        assert!(
            event.body["note"]
                .as_str()
                .unwrap()
                .contains("not pinned by digest"),
            "{}",
            event.body
        );
        event.respond_with_request_body();
        let status = server
            .expect(
                Method::PATCH,
                "/apis/stella-ops.org/v1alpha1/zastavapolicies/prod/status",
            )
            .await;
        let audit = &status.body["status"]["audit"];
        assert_eq!(audit["pods"], 1, "only the production namespace: {audit}");
        assert_eq!(audit["violations"], 1);
        assert_eq!(audit["scansRequested"], 1);
        assert_eq!(audit["examples"][0]["pod"], "web");
        assert!(status.body["status"].get("conditions").is_none());
        status.respond(200, answer);
        server
    });
    let mut observer = Observer::default();
    observer.tick(&ctx, &policies).await.unwrap();
    let server = api.await.unwrap();
    // Not due again until the interval passes: no calls.
    observer.tick(&ctx, &policies).await.unwrap();
    server
        .expect_no_more_calls(Duration::from_millis(200))
        .await;
    if let Some(pool) = pool {
        let rows: Vec<(String, String, Value, String)> = sqlx::query_as(
            "SELECT kind, subject, payload, idempotency_key FROM events_outbox ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].0, "zastava.runtime");
        assert_eq!(rows[0].1, "Deployment/web");
        assert_eq!(rows[0].2["policy"], "prod");
        assert!(rows[0].3.starts_with("zastava-runtime:prod:"));
        // A restarted operator (new Observer, same world) adds no second event.
        let (client, mut server) = mock_client("default");
        let again = Context::new(client, Metrics::unregistered(), Config::default(), None)
            .with_caches(ctx.caches.clone())
            .with_outbox(pool.clone());
        let policy_body = json!(zp);
        let answers = tokio::spawn(async move {
            for _ in 0..3 {
                let call = server.next_call().await;
                if call.path.ends_with("/status") {
                    call.respond(200, policy_body.clone());
                } else {
                    call.respond_with_request_body();
                }
            }
        });
        Observer::default().tick(&again, &policies).await.unwrap();
        answers.await.unwrap();
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events_outbox")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(count, 1);
    }
}

fn staged(mode: &str, clean_period: &str, until: &str) -> ZastavaPolicy {
    policy(json!({"mode": mode, "requireDigest": true,
        "stage": {"cleanPeriod": clean_period, "until": until}}))
}

fn at(hours: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000 + hours * 3600).unwrap()
}

/// One audit pass of `policy` at `now` with `not_clean` violating or unscanned Pods; the
/// status written back as the controller writes it.
fn pass(
    policy: &mut ZastavaPolicy,
    not_clean: usize,
    now: jiff::Timestamp,
) -> Option<(Mode, Mode)> {
    let (rollout, promoted) =
        stellaops_controllers::zastava_audit::advance_rollout(policy, not_clean, "test", now)
            .expect("a staged policy");
    policy.status.get_or_insert_with(Default::default).rollout = Some(rollout);
    promoted
}

#[test]
fn a_staged_rollout_moves_on_only_after_a_clean_period_and_records_its_evidence() {
    let mut p = staged("dryRun", "24h", "enforce");
    assert_eq!(p.effective_mode(), Mode::DryRun);
    // Hourly passes: a violation at hour 10 starts the clean run over.
    for hour in 0..=10 {
        let dirty = usize::from(hour == 10);
        assert_eq!(pass(&mut p, dirty, at(hour)), None, "hour {hour}");
    }
    let rollout = p.status.as_ref().unwrap().rollout.clone().unwrap();
    assert_eq!(rollout.last_violation.unwrap().0, at(10));
    assert!(rollout.clean_since.is_none());
    for hour in 11..34 {
        assert_eq!(
            pass(&mut p, 0, at(hour)),
            None,
            "hour {hour}: clean for less than 24h"
        );
    }
    assert_eq!(p.effective_mode(), Mode::DryRun);
    // Clean since hour 11: at hour 35 the run is 24h long.
    assert_eq!(pass(&mut p, 0, at(35)), Some((Mode::DryRun, Mode::Warn)));
    assert_eq!(p.effective_mode(), Mode::Warn);
    let rollout = p.status.as_ref().unwrap().rollout.clone().unwrap();
    assert_eq!(rollout.promotions.len(), 1);
    assert!(
        rollout.promotions[0]
            .evidence
            .starts_with("24 audit passes without"),
        "{}",
        rollout.promotions[0].evidence
    );
    assert!(
        rollout.message.contains("enforce after another clean 24h"),
        "{}",
        rollout.message
    );
    // A violation in warn does not demote; it only restarts the clock.
    assert_eq!(pass(&mut p, 3, at(40)), None);
    assert_eq!(p.effective_mode(), Mode::Warn);
    for hour in 41..64 {
        assert_eq!(pass(&mut p, 0, at(hour)), None, "hour {hour}");
    }
    assert_eq!(pass(&mut p, 0, at(65)), Some((Mode::Warn, Mode::Enforce)));
    assert_eq!(p.effective_mode(), Mode::Enforce);
    assert_eq!(pass(&mut p, 0, at(200)), None, "enforce is the end");
    let rollout = p.status.as_ref().unwrap().rollout.clone().unwrap();
    assert!(rollout.message.contains("complete"), "{}", rollout.message);
    assert_eq!(rollout.promotions.len(), 2);
}

#[test]
fn a_staged_rollout_stops_at_until_and_starts_over_when_the_mode_is_edited() {
    let mut p = staged("dryRun", "1h", "warn");
    pass(&mut p, 0, at(0));
    assert_eq!(pass(&mut p, 0, at(1)), Some((Mode::DryRun, Mode::Warn)));
    assert_eq!(pass(&mut p, 0, at(5)), None, "until: warn");
    assert_eq!(p.effective_mode(), Mode::Warn);
    // Someone sets mode: enforce by hand; the rollout follows the new starting point.
    p.spec.mode = Mode::Enforce;
    assert_eq!(p.effective_mode(), Mode::Enforce);
    pass(&mut p, 0, at(6));
    let rollout = p.status.as_ref().unwrap().rollout.clone().unwrap();
    assert_eq!(
        (rollout.started_from, rollout.mode),
        (Mode::Enforce, Mode::Enforce)
    );
    assert!(rollout.promotions.is_empty());
    // Without a stage there is no rollout, whatever the status says.
    p.spec.stage = None;
    p.spec.mode = Mode::DryRun;
    assert_eq!(p.effective_mode(), Mode::DryRun);
    assert!(stellaops_controllers::zastava_audit::advance_rollout(&p, 0, "", at(7)).is_none());
}

#[test]
fn presets_expand_to_their_documented_requirements_and_the_webhook_uses_them() {
    let scanned = policy(json!({"preset": "scanned"}));
    let compiled = compile_for_audit(&scanned).unwrap();
    assert!(compiled.require_digest);
    let scan = compiled.scan.as_ref().unwrap();
    assert_eq!(scan.max_age, Duration::from_secs(168 * 3600));
    assert_eq!(scan.deny_on, vec![Verdict::Fail]);
    // strict: 24h, Warn denied too; an explicit requirement is kept and tightened.
    let strict = policy(json!({"preset": "strict", "onTimeout": "allow",
        "requireScan": {"maxAge": "12h", "denyOnVerdict": ["Fail"]},
        "requireSignature": {"publicKeys": {"name": "keys", "namespace": "stellaops-system"}}}));
    let effective = strict.spec.with_preset();
    let scan = effective.require_scan.unwrap();
    assert_eq!(scan.max_age, "12h");
    assert_eq!(scan.deny_on_verdict, vec![Verdict::Fail, Verdict::Warn]);
    assert_eq!(
        effective.on_timeout,
        stellaops_crds::zastava_policy::OnTimeout::Deny
    );
    assert!(effective.require_digest && effective.require_signature.is_some());
    // baseline: digest only; nothing else appears.
    let baseline = policy(json!({"preset": "baseline"})).spec.with_preset();
    assert!(baseline.require_digest && baseline.require_scan.is_none());
    // The mode the webhook applies is the rollout's while it follows spec.mode.
    let mut p = staged("dryRun", "1h", "enforce");
    p.status = Some(
        serde_json::from_value(
            json!({"rollout": {"mode": "enforce", "startedFrom": "dryRun",
            "since": "2026-12-01T00:00:00Z"}}),
        )
        .unwrap(),
    );
    assert_eq!(compile_for_audit(&p).unwrap().mode, Mode::Enforce);
    p.status
        .as_mut()
        .unwrap()
        .rollout
        .as_mut()
        .unwrap()
        .started_from = Mode::Warn;
    assert_eq!(compile_for_audit(&p).unwrap().mode, Mode::DryRun);
}
