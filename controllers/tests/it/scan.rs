//! Scan: the Job, the operator-wide queue, status from the worker's result, reuse without
//! a Job, and the reconcile's calls against the mock API server.

use std::sync::Arc;

use http::Method;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector::ObjectRef;
use serde_json::{Value, json};
use stellaops_controllers::cache::{Caches, Contents};
use stellaops_controllers::metrics::Metrics;
use stellaops_controllers::scan::{
    Outcome, compute_status, job, pinned_digest, reconcile, result_from_summary,
};
use stellaops_controllers::tenancy::{
    FINALIZER, OWNER_KIND, OWNER_NAME, OWNER_NAMESPACE, OWNER_UID,
};
use stellaops_controllers::{Config, Context, FIELD_MANAGER};
use stellaops_crds::Scan;
use stellaops_crds::scan::{ScanPhase, Verdict};
use stellaops_testing::mock_client;

fn scan(name: &str, image: &str) -> Scan {
    serde_json::from_value(json!({
        "apiVersion": "stella-ops.org/v1alpha1", "kind": "Scan",
        "metadata": {"name": name, "namespace": "prod-eu", "generation": 1,
                     "uid": "44440000-0000-4000-8000-000000000001",
                     "creationTimestamp": "2026-11-22T08:00:00Z",
                     "finalizers": [FINALIZER]},
        "spec": {"image": image, "imagePullSecrets": [{"name": "regcred"}],
                 "policy": {"failOn": "high", "warnOn": "medium", "ignoreUnfixed": true},
                 "activeDeadlineSeconds": 900}
    }))
    .unwrap()
}

#[test]
fn the_job_runs_the_worker_restricted_with_the_pull_secret_and_a_deadline() {
    let j = job(
        &scan("app", "registry.example.com/app:1.0"),
        &Config::default(),
    );
    assert_eq!(j.metadata.name.as_deref(), Some("prod-eu-app-scan-1"));
    let spec = j.spec.unwrap();
    assert_eq!(spec.active_deadline_seconds, Some(900));
    assert_eq!(spec.ttl_seconds_after_finished, Some(3600));
    let pod = spec.template.spec.unwrap();
    let c = &pod.containers[0];
    assert_eq!(
        c.args.clone().unwrap().join(" "),
        "scan registry.example.com/app:1.0 --bucket stellaops --platform linux/amd64 --fail-on high --sbom-format cyclonedx-json --warn-on medium --ignore-unfixed --docker-config /etc/stellaops/pull-secrets/0/config.json"
    );
    let env: Vec<String> = c
        .env
        .clone()
        .unwrap()
        .iter()
        .map(|e| e.name.clone())
        .collect();
    for wanted in ["DATABASE_URL", "AWS_REGION", "STELLAOPS_SCAN_UID"] {
        assert!(env.contains(&wanted.to_string()), "{env:?}");
    }
    assert_eq!(
        c.env_from.clone().unwrap()[0]
            .secret_ref
            .as_ref()
            .unwrap()
            .name,
        "stellaops-s3"
    );
    assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
    assert_eq!(
        c.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0,
        "1Gi"
    );
    // In the platform namespace, owned by labels; the pull secret is the platform's copy.
    assert_eq!(j.metadata.namespace.as_deref(), Some("stellaops-system"));
    assert!(j.metadata.owner_references.is_none());
    let labels = j.metadata.labels.clone().unwrap();
    assert_eq!(labels[OWNER_UID], "44440000-0000-4000-8000-000000000001");
    assert_eq!(labels[OWNER_NAMESPACE], "prod-eu");
    assert_eq!(j.metadata.annotations.clone().unwrap()[OWNER_NAME], "app");
    let secret = pod.volumes.unwrap()[1].secret.clone().unwrap();
    assert_eq!(
        secret.secret_name.as_deref(),
        Some("prod-eu-app-scan-1-pull-0")
    );
    assert_eq!(
        pinned_digest(&format!("r/app@sha256:{}", "a".repeat(64))),
        Some(format!("sha256:{}", "a".repeat(64)).as_str())
    );
    assert_eq!(pinned_digest("r/app:1"), None);
}

#[test]
fn with_attach_the_job_gets_the_push_secret_and_the_status_lists_what_was_attached() {
    let mut s = scan("app", "registry.example.com/app:1.0");
    s.spec.attach = true;
    s.spec.push_secret = Some(stellaops_crds::common::LocalObjectReference {
        name: "pushcred".into(),
    });
    let j = job(&s, &Config::default());
    let pod = j.spec.unwrap().template.spec.unwrap();
    let args = pod.containers[0].args.clone().unwrap().join(" ");
    assert!(
        args.ends_with(
            "--attach --docker-config /etc/stellaops/pull-secrets/0/config.json \
             --push-docker-config /etc/stellaops/push-secret/config.json"
        ),
        "{args}"
    );
    let secrets: Vec<String> = pod
        .volumes
        .unwrap()
        .iter()
        .filter_map(|v| v.secret.as_ref()?.secret_name.clone())
        .collect();
    assert!(
        secrets.contains(&"prod-eu-app-scan-1-push".to_string()),
        "{secrets:?}"
    );
    // The copy is made (and cleaned up) with the pull secrets' copies.
    let copies: Vec<(String, String)> = stellaops_controllers::scan::pull_secret_copies(&s)
        .into_iter()
        .map(|c| (c.source, c.copy))
        .collect();
    assert_eq!(
        copies,
        [
            (
                "regcred".to_string(),
                "prod-eu-app-scan-1-pull-0".to_string()
            ),
            (
                "pushcred".to_string(),
                "prod-eu-app-scan-1-push".to_string()
            )
        ]
    );
    // Without attach, a push secret is never mounted (CEL refuses it at apply time too).
    s.spec.attach = false;
    let plain = job(&s, &Config::default());
    let args = plain.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap()
        .join(" ");
    assert!(
        !args.contains("push") && !args.contains("--attach"),
        "{args}"
    );
    s.spec.attach = true;

    let summary = json!({"success": true, "imageDigest": "sha256:abc", "sbomUri": "s3://stellaops/x",
        "sbomSha256": "sha256:def", "components": 3, "verdict": "Pass",
        "findings": {"critical": 0, "high": 0, "medium": 0, "low": 0},
        "attached": [{"artifactType": "application/vnd.cyclonedx+json", "digest": "sha256:111", "via": "tagSchema"},
                     {"artifactType": "application/vnd.dsse.envelope.v1+json", "digest": "sha256:222", "via": "tagSchema"}]});
    let done = compute_status(
        &s,
        Some("prod-eu-app-scan-1"),
        None,
        &Outcome::Succeeded(result_from_summary(&summary).unwrap()),
        false,
        t(),
    );
    assert_eq!(done.attached.len(), 2);
    assert_eq!(done.attached[1].digest, "sha256:222");
    let attached = done
        .conditions
        .iter()
        .find(|c| c.type_ == "Attached")
        .unwrap();
    assert_eq!(
        (attached.status.as_str(), attached.reason.as_str()),
        ("True", "Attached")
    );
    assert!(
        attached.message.contains("sha256:111"),
        "{}",
        attached.message
    );

    let refused = json!({"success": true, "imageDigest": "sha256:abc", "sbomUri": "s3://stellaops/x",
        "sbomSha256": "sha256:def", "components": 3, "verdict": "Pass", "findings": {},
        "attachError": "registry r refused a push to app (403); check that the push secret may write there"});
    let done = compute_status(
        &s,
        Some("prod-eu-app-scan-1"),
        None,
        &Outcome::Succeeded(result_from_summary(&refused).unwrap()),
        false,
        t(),
    );
    // The verdict stands; the condition says what went wrong.
    assert_eq!(done.phase, Some(ScanPhase::Succeeded));
    assert!(done.attached.is_empty());
    let attached = done
        .conditions
        .iter()
        .find(|c| c.type_ == "Attached")
        .unwrap();
    assert_eq!(
        (attached.status.as_str(), attached.reason.as_str()),
        ("False", "AttachFailed")
    );
    assert!(attached.message.contains("push secret"));
}

fn scan_created(ns: &str, name: &str, created: &str) -> Scan {
    let mut s = scan(name, "r/app:1");
    s.metadata.namespace = Some(ns.into());
    s.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
    s
}

fn job_of(name: &str, running: bool) -> Job {
    let mut j: Job = serde_json::from_value(running_job(name)).unwrap();
    if !running {
        j.status = Some(
            serde_json::from_value(json!({"conditions": [{"type": "Complete", "status": "True"}]}))
                .unwrap(),
        );
    }
    j
}

#[test]
fn the_queue_admits_in_creation_order_up_to_the_cap() {
    let late = scan_created("a", "late", "2026-11-22T08:03:00Z");
    let first = scan_created("a", "first", "2026-11-22T08:01:00Z");
    let second = scan_created("b", "second", "2026-11-22T08:02:00Z");
    let mut running_scan = scan_created("a", "running", "2026-11-22T07:00:00Z");
    running_scan.status = Some(compute_status(
        &running_scan,
        Some("running-scan-1"),
        None,
        &Outcome::Running,
        false,
        t(),
    ));
    let caches = Caches::filled(Contents {
        scans: vec![late.clone(), first.clone(), second.clone(), running_scan],
        scan_jobs: vec![
            job_of("running-scan-1", true),
            job_of("busy-scan-1", true),
            job_of("done-scan-1", false),
        ],
        ..Default::default()
    });
    // Two Jobs run (the finished one does not count), counted only up to the cap.
    assert_eq!(caches.running_scan_jobs(4), 2);
    assert_eq!(caches.running_scan_jobs(1), 1);
    // Cap 4, two slots free: the two oldest waiting Scans start, the third waits; the
    // Running Scan is not in the queue.
    let free = 4 - caches.running_scan_jobs(4);
    assert!(!caches.waiting_ahead_at_least(&first, free));
    assert!(!caches.waiting_ahead_at_least(&second, free));
    assert!(caches.waiting_ahead_at_least(&late, free));
    // No slot free: everyone waits.
    assert!(caches.waiting_ahead_at_least(&first, 0));
    assert_eq!(
        caches.queue_heads(2),
        vec![ObjectRef::from_obj(&first), ObjectRef::from_obj(&second)]
    );
    assert_eq!(caches.queue_heads(5).len(), 3);
    // A Job this replica just created counts before its watch event arrives.
    caches.scan_job_started(ObjectRef::new("new-scan-1").within("a"));
    assert_eq!(caches.running_scan_jobs(4), 3);
}

#[test]
fn scans_created_together_queue_by_namespace_then_name() {
    let at = "2026-11-22T08:00:00Z";
    let b_a = scan_created("b", "a", at);
    let a_z = scan_created("a", "z", at);
    let a_b = scan_created("a", "b", at);
    let older = scan_created("c", "older", "2026-11-22T07:59:59Z");
    let caches = Caches::filled(Contents {
        scans: vec![b_a.clone(), a_z.clone(), a_b.clone(), older.clone()],
        ..Default::default()
    });
    assert_eq!(
        caches.queue_heads(4),
        [&older, &a_b, &a_z, &b_a].map(ObjectRef::from_obj).to_vec()
    );
    assert_eq!(
        caches.queue_heads(2),
        [&older, &a_b].map(ObjectRef::from_obj).to_vec()
    );
    assert!(!caches.waiting_ahead_at_least(&a_z, 3));
    assert!(caches.waiting_ahead_at_least(&b_a, 3));
}

fn t() -> Time {
    Time(jiff::Timestamp::from_second(1_763_800_000).unwrap())
}

#[test]
fn status_follows_queue_job_and_result() {
    let s = scan("app", "registry.example.com/app:1.0");
    let queued = compute_status(&s, None, Some(2), &Outcome::Running, false, t());
    assert_eq!(queued.phase, Some(ScanPhase::Queued));
    let q = queued
        .conditions
        .iter()
        .find(|c| c.type_ == "Queued")
        .unwrap();
    assert_eq!(
        (q.status.as_str(), q.reason.as_str()),
        ("True", "ConcurrencyLimit")
    );
    // No position: it would change for every waiting Scan whenever one starts.
    assert!(
        q.message.contains("at most 2 scans run at once"),
        "{}",
        q.message
    );
    assert!(!q.message.contains("position"));
    let summary = json!({"success": true, "imageDigest": "sha256:abc", "sbomUri": "s3://stellaops/scanner/images/abc/inventory.cdx.json",
                         "sbomSha256": "sha256:def", "components": 42, "verdict": "Fail",
                         "findings": {"critical": 1, "high": 2, "medium": 0, "low": 5}});
    let result = result_from_summary(&summary).unwrap();
    let done = compute_status(
        &s,
        Some("prod-eu-app-scan-1"),
        None,
        &Outcome::Succeeded(result),
        false,
        t(),
    );
    assert_eq!(done.phase, Some(ScanPhase::Succeeded));
    assert_eq!(done.verdict, Some(Verdict::Fail));
    assert_eq!(done.sbom.as_ref().unwrap().components, 42);
    assert_eq!(done.findings.as_ref().unwrap().low, 5);
    assert_eq!(done.image_digest.as_deref(), Some("sha256:abc"));
    let ready = done.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Scanned")
    );
    let failed = compute_status(
        &s,
        Some("prod-eu-app-scan-1"),
        None,
        &Outcome::Failed(
            "registry registry.example.com refused access to app (401); check the pull secret"
                .into(),
        ),
        false,
        t(),
    );
    assert_eq!(failed.phase, Some(ScanPhase::Failed));
    let ready = failed
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "ScanFailed");
    assert!(ready.message.contains("check the pull secret"));
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {}, "items": items})
}

fn running_job(name: &str) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "other"},
           "spec": {"template": {"spec": {"containers": []}}}, "status": {"active": 1}})
}

#[tokio::test]
async fn at_the_cap_a_scan_waits_queued_and_below_it_the_job_is_created() {
    // Cap 1, one scan Job running elsewhere: queued. Everything the queue needs is read
    // from the shared stores: the first call is the status write, and nothing is LISTed.
    let (client, mut server) = mock_client("default");
    let verifier = tokio::spawn(async move {
        let status = server
            .expect(
                Method::PATCH,
                "/apis/stella-ops.org/v1alpha1/namespaces/prod-eu/scans/app/status",
            )
            .await;
        assert_eq!(status.body["status"]["phase"], "Queued");
        let mut stored = serde_json::to_value(scan("app", "r/app:1")).unwrap();
        stored["status"] = status.body["status"].clone();
        status.respond(200, stored);
        let event = server
            .expect(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/prod-eu/events",
            )
            .await;
        assert_eq!(event.body["reason"], "Queued");
        event.respond_with_request_body();
        server
            .expect_no_more_calls(std::time::Duration::from_millis(100))
            .await;
    });
    let config = Config {
        max_concurrent_scans: 1,
        ..Config::default()
    };
    let caches = || {
        Caches::filled(Contents {
            scans: vec![scan("app", "r/app:1")],
            scan_jobs: vec![job_of("busy-scan-1", true)],
            ..Default::default()
        })
    };
    let ctx =
        Arc::new(Context::new(client, Metrics::unregistered(), config, None).with_caches(caches()));
    reconcile(Arc::new(scan("app", "r/app:1")), ctx)
        .await
        .unwrap();
    verifier.await.unwrap();

    // Cap 4: the Job is created by server-side apply, after one point read (not a LIST)
    // that the Scan still exists.
    let (client, mut server) = mock_client("default");
    let verifier = tokio::spawn(async move {
        server
            .expect(
                Method::GET,
                "/apis/stella-ops.org/v1alpha1/namespaces/prod-eu/scans/app",
            )
            .await
            .respond(200, serde_json::to_value(scan("app", "r/app:1")).unwrap());
        // The pull secret is copied into the platform namespace, labelled with the Scan…
        let regcred = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "regcred", "namespace": "prod-eu"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": "e30="}});
        server
            .expect(Method::GET, "/api/v1/namespaces/prod-eu/secrets/regcred")
            .await
            .respond(200, regcred.clone());
        let copy = server
            .expect(
                Method::PATCH,
                "/api/v1/namespaces/stellaops-system/secrets/prod-eu-app-scan-1-pull-0",
            )
            .await;
        assert!(copy.is_forced_apply());
        assert_eq!(copy.body["data"][".dockerconfigjson"], "e30=");
        assert_eq!(copy.body["type"], "kubernetes.io/dockerconfigjson");
        assert_eq!(
            copy.body["metadata"]["labels"][OWNER_UID],
            "44440000-0000-4000-8000-000000000001"
        );
        assert!(copy.body["metadata"]["ownerReferences"].is_null());
        copy.respond_with_request_body();
        let apply = server
            .expect(
                Method::PATCH,
                "/apis/batch/v1/namespaces/stellaops-system/jobs/prod-eu-app-scan-1",
            )
            .await;
        assert!(apply.is_forced_apply());
        assert_eq!(apply.field_manager(), Some(FIELD_MANAGER));
        assert!(apply.body["metadata"]["ownerReferences"].is_null());
        assert_eq!(apply.body["metadata"]["labels"][OWNER_KIND], "Scan");
        let mut job = apply.body.clone();
        job["metadata"]["uid"] = json!("77770000-0000-4000-8000-000000000007");
        apply.respond(200, job);
        // …then owned by the Job, so it goes with it.
        server
            .expect(Method::GET, "/api/v1/namespaces/prod-eu/secrets/regcred")
            .await
            .respond(200, regcred);
        let owned = server
            .expect(
                Method::PATCH,
                "/api/v1/namespaces/stellaops-system/secrets/prod-eu-app-scan-1-pull-0",
            )
            .await;
        assert_eq!(owned.body["metadata"]["ownerReferences"][0]["kind"], "Job");
        assert_eq!(
            owned.body["metadata"]["ownerReferences"][0]["uid"],
            "77770000-0000-4000-8000-000000000007"
        );
        owned.respond_with_request_body();
        let event = server
            .expect(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/prod-eu/events",
            )
            .await;
        assert_eq!(event.body["reason"], "JobCreated");
        event.respond_with_request_body();
        let status = server
            .expect(
                Method::PATCH,
                "/apis/stella-ops.org/v1alpha1/namespaces/prod-eu/scans/app/status",
            )
            .await;
        assert_eq!(status.body["status"]["phase"], "Running");
        assert_eq!(status.body["status"]["jobName"], "prod-eu-app-scan-1");
        let mut stored = serde_json::to_value(scan("app", "r/app:1")).unwrap();
        stored["status"] = status.body["status"].clone();
        status.respond(200, stored);
        server
            .expect_no_more_calls(std::time::Duration::from_millis(100))
            .await;
    });
    let ctx = Arc::new(
        Context::new(client, Metrics::unregistered(), Config::default(), None)
            .with_caches(caches()),
    );
    reconcile(Arc::new(scan("app", "r/app:1")), ctx)
        .await
        .unwrap();
    verifier.await.unwrap();
}

#[tokio::test]
async fn a_failed_job_reports_the_workers_message() {
    // The Job and its Pod's termination message come from the shared stores.
    let failed_job: Job = serde_json::from_value(json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "prod-eu-app-scan-1", "namespace": "stellaops-system"},
        "spec": {"template": {"spec": {"containers": []}}},
        "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}}))
    .unwrap();
    let pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "prod-eu-app-scan-1-x", "namespace": "stellaops-system", "labels": {"job-name": "prod-eu-app-scan-1"},
                     "creationTimestamp": "2026-11-22T08:00:00Z"},
        "spec": {"containers": [{"name": "scan", "image": "w"}]},
        "status": {"containerStatuses": [{"name": "scan", "image": "w", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 1, "message":
                "{\"success\":false,\"error\":\"registry r refused access to app (401); check the pull secret\"}"}}}]}}))
    .unwrap();
    let caches = Caches::filled(Contents {
        scan_jobs: vec![failed_job],
        pods: vec![pod],
        ..Default::default()
    });
    let (client, mut server) = mock_client("default");
    let verifier = tokio::spawn(async move {
        let status = server
            .expect(
                Method::PATCH,
                "/apis/stella-ops.org/v1alpha1/namespaces/prod-eu/scans/app/status",
            )
            .await;
        assert_eq!(status.body["status"]["phase"], "Failed");
        let ready = status.body["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap()
            .clone();
        assert!(
            ready["message"]
                .as_str()
                .unwrap()
                .contains("(401); check the pull secret")
        );
        let mut stored = serde_json::to_value(scan("app", "r/app:1")).unwrap();
        stored["status"] = status.body["status"].clone();
        status.respond(200, stored);
        let event = server
            .expect(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/prod-eu/events",
            )
            .await;
        assert_eq!(event.body["reason"], "ScanFailed");
        event.respond_with_request_body();
        server
            .expect_no_more_calls(std::time::Duration::from_millis(100))
            .await;
    });
    let ctx = Arc::new(
        Context::new(client, Metrics::unregistered(), Config::default(), None).with_caches(caches),
    );
    reconcile(Arc::new(scan("app", "r/app:1")), ctx)
        .await
        .unwrap();
    verifier.await.unwrap();
}

/// The verdict envelope the worker would sign for `r/app` at `digest` (`high` findings).
fn signed_verdict(
    signer: &stellaops_store::attestation::VerdictSigner,
    digest: &str,
    verdict: &str,
    high: i32,
) -> Vec<u8> {
    signer.sign(
        digest,
        &stellaops_store::attestation::VerdictPredicate {
            image: "r/app".into(),
            verdict: verdict.into(),
            findings: stellaops_store::attestation::FindingCounts {
                critical: 0,
                high: high.into(),
                medium: 0,
                low: 0,
            },
            sbom: stellaops_store::attestation::SbomRef {
                uri: "s3://stellaops/x".into(),
                sha256: "sha256:s".into(),
            },
            advisory_snapshot: 0,
            policy_digest: "sha256:p".into(),
            scanned_at: chrono::Utc::now(),
        },
    )
}

#[tokio::test]
async fn a_digest_scanned_at_the_current_snapshot_is_reused_without_a_job() {
    let Some(pool) =
        stellaops_testing::migrated_database("scan_reuse", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    let digest = format!("sha256:{}", "b".repeat(64));
    // Signed as the worker signs it: only a verified result is reused. The same row
    // without its envelope (written straight into PostgreSQL) is not.
    let (private, public) = stellaops_store::attestation::generate_key_pair();
    let signer = stellaops_store::attestation::VerdictSigner::from_pem(&private).unwrap();
    let envelope = signed_verdict(&signer, &digest, "Fail", 1);
    let forged = format!("sha256:{}", "c".repeat(64));
    for (d, key, envelope) in [
        (
            &digest,
            Some(stellaops_store::attestation::object_key(&envelope)),
            Some(envelope),
        ),
        (&forged, None, None),
    ] {
        sqlx::query(
            "INSERT INTO scan_results (image_digest, image_ref, advisory_snapshot, sbom_uri, sbom_sha256, components,
                critical, high, medium, low, verdict, started_at, attestation_key, attestation, analyzer)
             VALUES ($1, 'r/app', 0, 's3://stellaops/x', 'sha256:s', 12, 0, 1, 0, 0, 'Fail', now(), $2, $3, $4)",
        )
        .bind(d)
        .bind(key)
        .bind(envelope)
        .bind(stellaops_store::scans::ANALYZER)
        .execute(&pool)
        .await
        .unwrap();
    }
    let config = Config {
        verdict_keys: stellaops_store::attestation::VerdictKeys::from_pem_bundle(&public)
            .unwrap()
            .into(),
        ..Config::default()
    };
    let image = format!("r/app@{digest}");
    let (client, mut server) = mock_client("default");
    let verifier = tokio::spawn(async move {
        // No Job: straight to the status.
        let status = server
            .expect(
                Method::PATCH,
                "/apis/stella-ops.org/v1alpha1/namespaces/prod-eu/scans/app/status",
            )
            .await;
        assert_eq!(status.body["status"]["phase"], "Succeeded");
        assert_eq!(status.body["status"]["reused"], true);
        assert_eq!(status.body["status"]["findings"]["high"], 1);
        let mut stored = status.body.clone();
        stored["apiVersion"] = json!("stella-ops.org/v1alpha1");
        stored["kind"] = json!("Scan");
        stored["metadata"] = json!({"name": "app", "namespace": "prod-eu"});
        stored["spec"] = json!({"image": "x"});
        status.respond(200, stored);
        let event = server
            .expect(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/prod-eu/events",
            )
            .await;
        assert_eq!(event.body["reason"], "Reused");
        event.respond_with_request_body();
        server
            .expect_no_more_calls(std::time::Duration::from_millis(100))
            .await;
    });
    let ctx = Arc::new(
        Context::new(client, Metrics::unregistered(), config.clone(), None)
            .with_outbox(pool.clone()),
    );
    reconcile(Arc::new(scan("app", &image)), ctx).await.unwrap();
    verifier.await.unwrap();

    // The forged row is not reused: with no slot free the Scan waits Queued for its own Job.
    let (client, mut server) = mock_client("default");
    let verifier = tokio::spawn(async move {
        let status = server
            .expect(
                Method::PATCH,
                "/apis/stella-ops.org/v1alpha1/namespaces/prod-eu/scans/app/status",
            )
            .await;
        assert_eq!(status.body["status"]["phase"], "Queued", "{}", status.body);
        let mut stored = serde_json::to_value(scan("app", "r/app:1")).unwrap();
        stored["status"] = status.body["status"].clone();
        status.respond(200, stored);
        server
            .expect(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/prod-eu/events",
            )
            .await
            .respond_with_request_body();
        server
            .expect_no_more_calls(std::time::Duration::from_millis(100))
            .await;
    });
    let busy = Config {
        max_concurrent_scans: 1,
        ..config
    };
    let caches = Caches::filled(Contents {
        scans: vec![scan("app", &format!("r/app@{forged}"))],
        scan_jobs: vec![job_of("busy-scan-1", true)],
        ..Default::default()
    });
    let ctx = Arc::new(
        Context::new(client, Metrics::unregistered(), busy, None)
            .with_outbox(pool)
            .with_caches(caches),
    );
    reconcile(Arc::new(scan("app", &format!("r/app@{forged}"))), ctx)
        .await
        .unwrap();
    verifier.await.unwrap();
}

#[tokio::test]
async fn a_new_scan_that_waits_gets_its_status_and_no_finalizer() {
    // Nothing is made for a queued Scan, so nothing needs cleaning up: one write (its
    // status), not a finalizer patch and a second reconcile first. Over the Queued Event
    // budget, the status alone says it waits.
    let mut fresh = scan("app", "r/app:1");
    fresh.metadata.finalizers = None;
    let stored = fresh.clone();
    let (client, mut server) = mock_client("default");
    let verifier = tokio::spawn(async move {
        let status = server
            .expect(
                Method::PATCH,
                "/apis/stella-ops.org/v1alpha1/namespaces/prod-eu/scans/app/status",
            )
            .await;
        assert_eq!(status.body["status"]["phase"], "Queued");
        let mut body = serde_json::to_value(&stored).unwrap();
        body["status"] = status.body["status"].clone();
        status.respond(200, body);
        server
            .expect_no_more_calls(std::time::Duration::from_millis(100))
            .await;
    });
    let config = Config {
        max_concurrent_scans: 1,
        ..Config::default()
    };
    let caches = Caches::filled(Contents {
        scans: vec![fresh.clone()],
        scan_jobs: vec![job_of("busy-scan-1", true)],
        ..Default::default()
    });
    let mut ctx = Context::new(client, Metrics::unregistered(), config, None).with_caches(caches);
    ctx.queued_events = Arc::new(stellaops_controllers::context::EventBudget::new(
        0,
        std::time::Duration::from_secs(3600),
    ));
    reconcile(Arc::new(fresh), Arc::new(ctx)).await.unwrap();
    verifier.await.unwrap();
}

#[tokio::test]
async fn a_new_scan_gets_the_finalizer_before_anything_is_made() {
    let mut fresh = scan("app", "r/app:1");
    fresh.metadata.finalizers = None;
    let (client, mut server) = mock_client("default");
    let verifier = tokio::spawn(async move {
        let patch = server
            .expect(
                Method::PATCH,
                "/apis/stella-ops.org/v1alpha1/namespaces/prod-eu/scans/app",
            )
            .await;
        assert!(patch.body.to_string().contains(FINALIZER), "{}", patch.body);
        let mut stored = serde_json::to_value(scan("app", "r/app:1")).unwrap();
        stored["metadata"]["finalizers"] = json!([FINALIZER]);
        patch.respond(200, stored);
        server
            .expect_no_more_calls(std::time::Duration::from_millis(100))
            .await;
    });
    let ctx = Arc::new(Context::new(
        client,
        Metrics::unregistered(),
        Config::default(),
        None,
    ));
    reconcile(Arc::new(fresh), ctx).await.unwrap();
    verifier.await.unwrap();
}

#[tokio::test]
async fn deleting_a_scan_deletes_its_job_and_copies_then_releases_the_finalizer() {
    let mut deleted = scan("app", "r/app:1");
    deleted.metadata.deletion_timestamp = Some(t());
    let (client, mut server) = mock_client("default");
    let verifier = tokio::spawn(async move {
        let selector = format!("{OWNER_UID}=44440000-0000-4000-8000-000000000001");
        for (path, kind, item) in [
            (
                "/apis/batch/v1/namespaces/stellaops-system/cronjobs",
                "CronJobList",
                None,
            ),
            (
                "/apis/batch/v1/namespaces/stellaops-system/jobs",
                "JobList",
                Some(running_job("prod-eu-app-scan-1")),
            ),
            (
                "/apis/apps/v1/namespaces/stellaops-system/deployments",
                "DeploymentList",
                None,
            ),
            (
                "/api/v1/namespaces/stellaops-system/services",
                "ServiceList",
                None,
            ),
            (
                "/api/v1/namespaces/stellaops-system/persistentvolumeclaims",
                "PersistentVolumeClaimList",
                None,
            ),
            (
                "/api/v1/namespaces/stellaops-system/configmaps",
                "ConfigMapList",
                None,
            ),
            (
                "/api/v1/namespaces/stellaops-system/secrets",
                "SecretList",
                Some(json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "prod-eu-app-scan-1-pull-0", "namespace": "stellaops-system"}})),
            ),
        ] {
            // One deletecollection per kind, by owner label: no LIST, no DELETE per object.
            let deleted = server.expect(Method::DELETE, path).await;
            assert_eq!(
                deleted.query.get("labelSelector").map(String::as_str),
                Some(selector.as_str()),
                "{path}"
            );
            deleted.respond(200, list(kind, item.into_iter().collect()));
        }
        // Then the finalizer goes, and the Scan with it.
        let release = server
            .expect(
                Method::PATCH,
                "/apis/stella-ops.org/v1alpha1/namespaces/prod-eu/scans/app",
            )
            .await;
        assert!(
            release.body.to_string().contains("remove"),
            "{}",
            release.body
        );
        let mut stored = serde_json::to_value(scan("app", "r/app:1")).unwrap();
        stored["metadata"]["finalizers"] = json!([]);
        release.respond(200, stored);
        server
            .expect_no_more_calls(std::time::Duration::from_millis(100))
            .await;
    });
    let ctx = Arc::new(Context::new(
        client,
        Metrics::unregistered(),
        Config::default(),
        None,
    ));
    reconcile(Arc::new(deleted), ctx).await.unwrap();
    verifier.await.unwrap();
}

#[test]
fn a_rescan_delta_wakes_the_scan_its_result_was_recorded_for() {
    use stellaops_controllers::scan::reevaluated;
    // As `vex ingest` and `evaluate --policy-ref` write it: the result is the Scan's.
    let payload = json!({"imageDigest": "sha256:ab", "verdict": "Pass", "previousVerdict": "Fail",
        "scan": {"namespace": "prod-eu", "name": "app", "uid": "44440000-0000-4000-8000-000000000001"}});
    assert_eq!(
        reevaluated(&payload),
        Some(ObjectRef::<Scan>::new("app").within("prod-eu"))
    );
    // A Schedule's run records results for the Schedule: no Scan to wake.
    let schedule = json!({"imageDigest": "sha256:ab", "scan": null,
        "schedule": {"namespace": "prod-eu", "name": "nightly", "run": "r1"}});
    assert_eq!(reevaluated(&schedule), None);
    assert_eq!(reevaluated(&json!({"imageDigest": "sha256:ab"})), None);
}

#[tokio::test]
async fn a_finished_scan_reads_its_result_again_only_when_a_reevaluation_woke_it() {
    // At a start of the operator every finished Scan is reconciled: those whose status
    // shows their latest result (as read once, for every Scan, at the first such reconcile)
    // cost no API call and no query of their own; one a re-evaluation woke reads its own
    // latest result even though the read at start (older) matched its status.
    let Some(pool) =
        stellaops_testing::migrated_database("scan_finished", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    let (private, public) = stellaops_store::attestation::generate_key_pair();
    let signer = stellaops_store::attestation::VerdictSigner::from_pem(&private).unwrap();
    let digest = format!("sha256:{}", "d".repeat(64));
    let record = |uid: &'static str, verdict: &'static str, high: i32| {
        let envelope = signed_verdict(&signer, &digest, verdict, high);
        let key = stellaops_store::attestation::object_key(&envelope);
        let (pool, digest) = (pool.clone(), digest.clone());
        async move {
            sqlx::query(
                "INSERT INTO scan_results (image_digest, image_ref, advisory_snapshot, scan_uid,
                    sbom_uri, sbom_sha256, components, critical, high, medium, low, verdict,
                    started_at, policy_digest, attestation_key, attestation)
                 VALUES ($1, 'r/app', 0, $2, 's3://stellaops/x', 'sha256:s', 12, 0, $3, 0, 0,
                    $4, now(), 'sha256:p', $5, $6)",
            )
            .bind(digest)
            .bind(uid)
            .bind(high)
            .bind(verdict)
            .bind(key)
            .bind(envelope)
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    const OTHER: &str = "44440000-0000-4000-8000-000000000002";
    let mine = scan("app", "r/app:1").metadata.uid.unwrap();
    let mine: &'static str = Box::leak(mine.into_boxed_str());
    record(mine, "Pass", 0).await;
    record(OTHER, "Pass", 0).await;
    let finished = |name: &str, uid: &str| {
        let mut s = serde_json::to_value(scan(name, "r/app:1")).unwrap();
        s["metadata"]["uid"] = json!(uid);
        s["status"] = json!({"observedGeneration": 1, "phase": "Succeeded",
            "imageDigest": digest, "verdict": "Pass", "policyDigest": "sha256:p",
            "findings": {"critical": 0, "high": 0, "medium": 0, "low": 0},
            "sbom": {"uri": "s3://stellaops/x", "sha256": "sha256:s", "components": 12}});
        serde_json::from_value::<Scan>(s).unwrap()
    };
    let config = Config {
        verdict_keys: stellaops_store::attestation::VerdictKeys::from_pem_bundle(&public)
            .unwrap()
            .into(),
        ..Config::default()
    };
    let (client, mut server) = mock_client("default");
    let verifier = tokio::spawn(async move {
        // Nothing for the other Scan: the first call is this one's new status.
        let status = server
            .expect(
                Method::PATCH,
                "/apis/stella-ops.org/v1alpha1/namespaces/prod-eu/scans/app/status",
            )
            .await;
        assert_eq!(status.body["status"]["verdict"], "Fail", "{}", status.body);
        assert_eq!(status.body["status"]["findings"]["high"], 2);
        let mut stored = serde_json::to_value(scan("app", "r/app:1")).unwrap();
        stored["status"] = status.body["status"].clone();
        status.respond(200, stored);
        let event = server
            .expect(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/prod-eu/events",
            )
            .await;
        assert_eq!(event.body["reason"], "Reevaluated");
        event.respond_with_request_body();
        server
            .expect_no_more_calls(std::time::Duration::from_millis(100))
            .await;
    });
    let ctx = Arc::new(
        Context::new(client, Metrics::unregistered(), config, None).with_outbox(pool.clone()),
    );
    // The other Scan's reconcile reads every Scan's latest result (this one's: Pass).
    reconcile(Arc::new(finished("other", OTHER)), ctx.clone())
        .await
        .unwrap();
    // A re-evaluation records Fail for this Scan and its rescan.delta wakes it.
    record(mine, "Fail", 2).await;
    ctx.reevaluations
        .woke(&ObjectRef::from_obj(&finished("app", mine)));
    reconcile(Arc::new(finished("app", mine)), ctx)
        .await
        .unwrap();
    verifier.await.unwrap();
}
