use std::sync::Arc;

use http::Method;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};
use stellaops_controllers::cache::{Caches, Contents};
use stellaops_controllers::federation_site::SyncResult;
use stellaops_controllers::metrics::Metrics;
use stellaops_controllers::mirror_domain::{
    compute_status, cron_job, deployment, desired, pvc, reconcile, service,
};
use stellaops_controllers::tenancy::{FINALIZER, OWNER_KIND, OWNER_NAMESPACE, OWNER_UID};
use stellaops_controllers::{Config, Context, FIELD_MANAGER};
use stellaops_crds::MirrorDomain;
use stellaops_testing::mock_client;

fn domain(replicas: i32) -> MirrorDomain {
    serde_json::from_value(json!({
        "apiVersion": "stella-ops.org/v1alpha1", "kind": "MirrorDomain",
        "metadata": {"name": "primary", "namespace": "stellaops", "uid": "11110000-0000-4000-8000-000000000001", "generation": 1,
                     "finalizers": [FINALIZER]},
        "spec": {"domainId": "primary", "replicas": replicas, "syncSchedule": "*/5 * * * *",
                 "source": {"bucket": "mirror-stellaops", "prefix": "concelier/latest", "endpoint": "http://minio:9000", "secretRef": {"name": "mirror-sync-aws"}},
                 "storage": {"size": "20Gi", "storageClassName": "fast"},
                 "auth": {"requireAuthentication": true, "htpasswdSecretRef": {"name": "mirror-gateway-htpasswd", "key": "mirror-primary.htpasswd"}},
                 "rateLimits": {"maxIndexRequestsPerHour": 600, "maxDownloadRequestsPerHour": 1200}}}))
    .unwrap()
}

#[test]
fn a_domain_becomes_claim_sync_cron_job_server_and_service() {
    let config = Config::default();
    let objects = desired(&domain(2), &config);
    let kinds: Vec<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec!["PersistentVolumeClaim", "CronJob", "Deployment", "Service"]
    );
    // All in the platform namespace, owned by labels (no cross-namespace ownerReferences).
    assert!(objects.iter().all(|o| {
        o["metadata"]["namespace"] == "stellaops-system"
            && o["metadata"]["ownerReferences"].is_null()
            && o["metadata"]["labels"][OWNER_UID] == "11110000-0000-4000-8000-000000000001"
    }));
    // The server's selector holds the owner too: a same-named domain of another namespace
    // is never behind this Service.
    assert_eq!(objects[3]["spec"]["selector"][OWNER_NAMESPACE], "stellaops");

    let claim = pvc(&domain(2), &Config::default()).spec.unwrap();
    assert_eq!(
        claim.access_modes.unwrap(),
        vec!["ReadWriteMany"],
        "two servers share the volume"
    );
    assert_eq!(
        pvc(&domain(1), &Config::default())
            .spec
            .unwrap()
            .access_modes
            .unwrap(),
        vec!["ReadWriteOnce"]
    );
    assert_eq!(claim.storage_class_name.as_deref(), Some("fast"));

    let cron = cron_job(&domain(1), &config);
    assert_eq!(cron.spec.schedule, "*/5 * * * *");
    let pod = cron.spec.job_template.spec.unwrap().template.spec.unwrap();
    let args = pod.containers[0].args.clone().unwrap().join(" ");
    assert_eq!(
        args,
        "mirror sync --bucket mirror-stellaops --prefix concelier/latest --directory /var/lib/stellaops/mirror --delete"
    );
    let env = serde_json::to_value(pod.containers[0].env.clone().unwrap()).unwrap();
    assert!(
        !env.to_string().contains("DATABASE_URL"),
        "the mirror needs no database"
    );

    let server = deployment(&domain(2), &config).spec;
    assert_eq!(server.replicas, Some(2));
    let pod = server.template.spec.unwrap();
    let container = &pod.containers[0];
    let args = container.args.clone().unwrap().join(" ");
    for part in [
        "mirror serve --root /var/lib/stellaops/mirror --domain-id primary",
        "--require-authentication true",
        "--max-index-requests-per-hour 600",
        "--htpasswd /etc/stellaops/htpasswd/htpasswd",
    ] {
        assert!(args.contains(part), "{args} lacks {part}");
    }
    assert_eq!(
        container
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/readyz")
    );
    assert_eq!(
        container
            .security_context
            .as_ref()
            .unwrap()
            .read_only_root_filesystem,
        Some(true)
    );
    let exports = container
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == "exports")
        .unwrap();
    assert_eq!(
        exports.read_only,
        Some(true),
        "servers only read the volume"
    );
    let svc = service(&domain(1), &Config::default()).spec.unwrap();
    assert_eq!(svc.ports.unwrap()[0].port, 80);
}

fn t(s: i64) -> Time {
    Time(jiff::Timestamp::from_second(1_736_937_000 + s).unwrap())
}

#[test]
fn status_reports_sync_counts_and_keeps_serving_after_a_failed_sync() {
    let mut ready = deployment(&domain(1), &Config::default());
    ready.status = Some(serde_json::from_value(json!({"readyReplicas": 1})).unwrap());
    let none = compute_status(&domain(1), Some(&ready), None, t(0));
    let r = none.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(
        (r.status.as_str(), r.reason.as_str()),
        ("False", "AwaitingFirstSync")
    );
    assert_eq!(
        none.url.as_deref(),
        Some("http://stellaops-primary-mirror.stellaops-system.svc/concelier/exports/index.json")
    );

    let ok = SyncResult {
        job: "s-1".into(),
        succeeded: true,
        finished_at: Some(t(60)),
        summary: Some(json!({"copied": 3, "deleted": 1, "bytes": 300027, "success": true})),
        error: None,
    };
    let synced = compute_status(&domain(1), Some(&ready), Some(&ok), t(70));
    let counts = synced.last_sync.clone().unwrap();
    assert_eq!(
        (counts.copied, counts.deleted, counts.bytes),
        (3, 1, 300027)
    );
    assert_eq!(synced.ready_replicas, 1);
    assert_eq!(
        synced
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap()
            .status,
        "True"
    );

    let mut seen = domain(1);
    seen.status = Some(synced);
    let failed = SyncResult {
        job: "s-2".into(),
        succeeded: false,
        finished_at: None,
        summary: None,
        error: Some("reading s3://mirror-stellaops/x: AccessDenied".into()),
    };
    let after = compute_status(&seen, Some(&ready), Some(&failed), t(400));
    let synced_condition = after
        .conditions
        .iter()
        .find(|c| c.type_ == "Synced")
        .unwrap();
    assert_eq!(
        (
            synced_condition.status.as_str(),
            synced_condition.reason.as_str()
        ),
        ("False", "SyncFailed")
    );
    assert!(
        synced_condition
            .message
            .contains("previous export keeps serving")
    );
    let ready_condition = after
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        ready_condition.status, "True",
        "a failed sync does not take the mirror down"
    );
}

/// One reconcile of `domain(1)` against the mock, the store of Secret copies holding
/// `copies`: the copies not current in the store are written (their bodies are returned),
/// then the four objects, then the status.
async fn reconcile_with_copies(copies: Vec<Value>) -> Vec<Value> {
    // Copies holding what the sources hold (`k: v`) are current.
    let current: Vec<String> = copies
        .iter()
        .filter(|c| c["data"]["k"] == "dg==")
        .map(|c| c["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let (client, mut server) = mock_client("default");
    let verifier = tokio::spawn(async move {
        let mut written = Vec::new();
        // The S3 and htpasswd Secrets are read, then copied into the platform namespace
        // first.
        let pairs = [
            ("mirror-sync-aws", "stellaops-primary-mirror-s3"),
            (
                "mirror-gateway-htpasswd",
                "stellaops-primary-mirror-htpasswd",
            ),
        ];
        for (source, _) in pairs {
            server
                .expect(
                    Method::GET,
                    &format!("/api/v1/namespaces/stellaops/secrets/{source}"),
                )
                .await
                .respond(
                    200,
                    json!({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": source, "namespace": "stellaops"}, "data": {"k": "dg=="}}),
                );
        }
        for (_, copy) in pairs {
            if current.iter().any(|c| c == copy) {
                continue;
            }
            let applied = server
                .expect(
                    Method::PATCH,
                    &format!("/api/v1/namespaces/stellaops-system/secrets/{copy}"),
                )
                .await;
            written.push(applied.body.clone());
            assert_eq!(
                applied.body["metadata"]["labels"][OWNER_KIND],
                "MirrorDomain"
            );
            applied.respond_with_request_body();
        }
        for (path, kind) in [
            (
                "/api/v1/namespaces/stellaops-system/persistentvolumeclaims/stellaops-primary-mirror",
                "PersistentVolumeClaim",
            ),
            (
                "/apis/batch/v1/namespaces/stellaops-system/cronjobs/stellaops-primary-mirror-sync",
                "CronJob",
            ),
            (
                "/apis/apps/v1/namespaces/stellaops-system/deployments/stellaops-primary-mirror",
                "Deployment",
            ),
            (
                "/api/v1/namespaces/stellaops-system/services/stellaops-primary-mirror",
                "Service",
            ),
        ] {
            let call = server.expect(Method::PATCH, path).await;
            assert!(call.is_forced_apply(), "{kind}");
            assert_eq!(call.field_manager(), Some(FIELD_MANAGER));
            assert_eq!(call.body["kind"], kind);
            call.respond_with_request_body();
        }
        let status = server
            .expect(
                Method::PATCH,
                "/apis/stella-ops.org/v1alpha1/namespaces/stellaops/mirrordomains/primary/status",
            )
            .await;
        assert_eq!(
            status.body["status"]["url"],
            "http://stellaops-primary-mirror.stellaops-system.svc/concelier/exports/index.json"
        );
        let mut stored: Value = serde_json::to_value(domain(1)).unwrap();
        stored["status"] = status.body["status"].clone();
        status.respond(200, stored);
        server
            .expect_no_more_calls(std::time::Duration::from_millis(100))
            .await;
        written
    });
    let caches = Caches::filled(Contents {
        secret_copies: copies
            .into_iter()
            .map(|c| serde_json::from_value(c).unwrap())
            .collect(),
        ..Default::default()
    });
    let ctx = Arc::new(
        Context::new(client, Metrics::unregistered(), Config::default(), None).with_caches(caches),
    );
    reconcile(Arc::new(domain(1)), ctx).await.unwrap();
    verifier.await.unwrap()
}

#[tokio::test]
async fn reconcile_applies_four_objects_then_status() {
    let written = reconcile_with_copies(Vec::new()).await;
    assert_eq!(written.len(), 2, "both copies are written the first time");
    // The next reconcile finds both copies current in the store: the sources are read
    // again (a change must reach the copy), nothing is written.
    assert!(reconcile_with_copies(written.clone()).await.is_empty());
    // A changed source is written again.
    let mut stale = written;
    stale[0]["data"]["k"] = json!("b2xk");
    assert_eq!(reconcile_with_copies(stale).await.len(), 1);
}

#[test]
fn the_served_export_and_its_signature_come_from_the_latest_sync() {
    let mut signed = domain(1);
    signed.spec.active_export_id = Some("2025-01-15".into());
    signed.spec.signature = Some(
        serde_json::from_value(json!({"publicKeySecretRef": {"name": "mirror-signing"}})).unwrap(),
    );
    let config = Config::default();
    let cron = cron_job(&signed, &config);
    let pod = cron.spec.job_template.spec.unwrap().template.spec.unwrap();
    let args = pod.containers[0].args.clone().unwrap().join(" ");
    assert!(
        args.ends_with(
            "--active-export-id 2025-01-15 --signature-key /etc/stellaops/signature/key.pub"
        ),
        "{args}"
    );
    let key_volume = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "signature-key")
        .unwrap();
    let secret = key_volume.secret.unwrap();
    assert_eq!(
        secret.secret_name.as_deref(),
        Some("stellaops-primary-mirror-signature-key")
    );
    assert_eq!(secret.items.unwrap()[0].key, "cosign.pub");
    let server = deployment(&signed, &config).spec.template.spec.unwrap();
    let args = server.containers[0].args.clone().unwrap().join(" ");
    assert!(args.contains("--signature-key /etc/stellaops/signature/key.pub"));
    assert!(
        server.containers[0]
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.mount_path == "/etc/stellaops/signature")
    );

    let mut ready = deployment(&signed, &config);
    ready.status = Some(serde_json::from_value(json!({"readyReplicas": 1})).unwrap());
    // Before a sync: the export asked for.
    let before = compute_status(&signed, Some(&ready), None, t(0));
    assert_eq!(before.active_export_id.as_deref(), Some("2025-01-15"));
    // A sync that finds the requested export missing says nothing is served.
    let mut unsigned = domain(1);
    unsigned.spec.active_export_id = Some("2025-01-15".into());
    let missing = SyncResult {
        job: "s-1".into(),
        succeeded: true,
        finished_at: Some(t(60)),
        summary: Some(json!({"success": true, "copied": 0, "activeExportId": null})),
        error: None,
    };
    let after = compute_status(&unsigned, Some(&ready), Some(&missing), t(70));
    assert_eq!(after.active_export_id, None);
    assert!(
        after
            .conditions
            .iter()
            .all(|c| c.type_ != "SignatureVerified")
    );

    let verified = SyncResult {
        summary: Some(
            json!({"success": true, "copied": 3, "activeExportId": "2025-01-15",
                             "signaturesVerified": ["primary"]}),
        ),
        ..missing.clone()
    };
    let good = compute_status(&signed, Some(&ready), Some(&verified), t(70));
    assert_eq!(good.active_export_id.as_deref(), Some("2025-01-15"));
    let condition = |s: &stellaops_crds::mirror_domain::MirrorDomainStatus, t: &str| {
        let c = s.conditions.iter().find(|c| c.type_ == t).unwrap().clone();
        (c.status, c.reason, c.message)
    };
    assert_eq!(condition(&good, "SignatureVerified").0, "True");
    assert_eq!(condition(&good, "Ready").0, "True");

    let tampered = SyncResult {
        summary: Some(
            json!({"success": true, "copied": 1, "activeExportId": "2025-01-15",
                             "signatureError": "domain primary: the signature does not match bundle.json and the given key"}),
        ),
        ..missing
    };
    let bad = compute_status(&signed, Some(&ready), Some(&tampered), t(400));
    let (status, reason, message) = condition(&bad, "SignatureVerified");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "SignatureInvalid")
    );
    assert!(message.contains("withholds"), "{message}");
    let (status, reason, _) = condition(&bad, "Ready");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "SignatureInvalid")
    );
}
