use std::sync::Arc;
use std::time::Duration;

use http::Method;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};
use stellaops_controllers::cache::{Caches, Contents};
use stellaops_controllers::federation_site::{
    SyncResult, compute_status, cron_job, reconcile, sync_args,
};
use stellaops_controllers::metrics::Metrics;
use stellaops_controllers::tenancy::{
    FINALIZER, OWNER_KIND, OWNER_NAME, OWNER_NAMESPACE, OWNER_UID,
};
use stellaops_controllers::{Config, Context, FIELD_MANAGER};
use stellaops_crds::FederationSite;
use stellaops_testing::mock_client;

fn site(spec: Value) -> FederationSite {
    serde_json::from_value(json!({
        "apiVersion": "stella-ops.org/v1alpha1", "kind": "FederationSite",
        "metadata": {"name": "hub", "namespace": "stellaops", "uid": "6f3b0000-0000-4000-8000-000000000001", "generation": 2,
                     "finalizers": [FINALIZER]},
        "spec": spec}))
    .unwrap()
}

fn import_site() -> FederationSite {
    site(
        json!({"siteId": "site-us-east-1", "direction": "import", "schedule": "15 * * * *",
                "transport": {"s3": {"bucket": "fed", "prefix": "hub/", "endpoint": "http://minio:9000", "secretRef": {"name": "fed-s3"}}},
                "policy": {"trustedKeys": {"name": "fed-keys"}, "allowedSources": ["nvd", "ghsa"], "onConflict": "prefer_local",
                           "maxBundleSizeBytes": 1048576, "requireSignature": true, "maxItems": 10000, "compressionLevel": 3}}),
    )
}

fn t(s: i64) -> Time {
    Time(jiff::Timestamp::from_second(1_700_000_000 + s).unwrap())
}

#[test]
fn an_import_site_becomes_a_restricted_owned_cron_job() {
    let cron = cron_job(&import_site(), &Config::default());
    // In the platform namespace, named after the site's namespace, owned by labels.
    assert_eq!(
        cron.metadata.name.as_deref(),
        Some("stellaops-hub-federation-sync")
    );
    assert_eq!(cron.metadata.namespace.as_deref(), Some("stellaops-system"));
    assert!(cron.metadata.owner_references.is_none());
    let labels = cron.metadata.labels.clone().unwrap();
    assert_eq!(labels[OWNER_KIND], "FederationSite");
    assert_eq!(labels[OWNER_UID], "6f3b0000-0000-4000-8000-000000000001");
    // Its Jobs carry the same owner labels and name, so they map back to the site.
    let template = cron.spec.job_template.metadata.clone().unwrap();
    assert_eq!(template.labels.unwrap()[OWNER_NAMESPACE], "stellaops");
    assert_eq!(template.annotations.unwrap()[OWNER_NAME], "hub");
    let spec = &cron.spec;
    assert_eq!(spec.schedule, "15 * * * *");
    assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
    assert_eq!(spec.suspend, Some(false));
    let pod = spec
        .job_template
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    assert_eq!(
        pod.security_context.as_ref().unwrap().run_as_non_root,
        Some(true)
    );
    let container = &pod.containers[0];
    let security = container.security_context.as_ref().unwrap();
    assert_eq!(
        (
            security.read_only_root_filesystem,
            security.allow_privilege_escalation
        ),
        (Some(true), Some(false))
    );
    let args = container.args.as_ref().unwrap().join(" ");
    assert!(args.starts_with("federation sync --site-id site-us-east-1 --direction import --s3-bucket fed --s3-prefix hub/"), "{args}");
    for part in [
        "--max-bundle-size 1048576",
        "--on-conflict prefer_local",
        "--allowed-sources nvd,ghsa",
        "--trusted-key /etc/stellaops/trusted-keys",
    ] {
        assert!(args.contains(part), "{args} lacks {part}");
    }
    let env = serde_json::to_value(container.env.as_ref().unwrap()).unwrap();
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "DATABASE_URL"
                && e["valueFrom"]["secretKeyRef"]["name"] == "stellaops-database")
    );
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "AWS_ENDPOINT_URL" && e["value"] == "http://minio:9000")
    );
    assert_eq!(
        container.env_from.as_ref().unwrap()[0]
            .secret_ref
            .as_ref()
            .unwrap()
            .name,
        "stellaops-hub-federation-sync-s3",
        "the platform namespace's copy of fed-s3"
    );
    let volumes: Vec<&str> = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(volumes, vec!["tmp", "trusted-keys"]);
}

#[test]
fn an_air_gapped_export_site_mounts_its_claim_and_signing_key() {
    let exporter = site(
        json!({"siteId": "site-a", "direction": "export", "enabled": false,
                               "transport": {"volume": {"claim": {"name": "usb-drop"}, "path": "/outbox"}},
                               "policy": {"signingKey": {"name": "fed-signer", "key": "key.pem"}, "maxItems": 500, "compressionLevel": 9}}),
    );
    let args = sync_args(&exporter).join(" ");
    assert!(
        args.contains("--directory /var/lib/stellaops/federation/outbox"),
        "{args}"
    );
    assert!(
        args.contains("--signing-key /etc/stellaops/signing/key.pem --")
            || args.ends_with("--signing-key /etc/stellaops/signing/key.pem"),
        "{args}"
    );
    assert!(
        args.contains("--max-items 500") && args.contains("--compression-level 9"),
        "{args}"
    );
    let cron = cron_job(&exporter, &Config::default());
    assert_eq!(
        cron.spec.suspend,
        Some(true),
        "a disabled site suspends its CronJob"
    );
    let pod = cron.spec.job_template.spec.unwrap().template.spec.unwrap();
    let claim = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "bundles")
        .unwrap()
        .persistent_volume_claim
        .unwrap();
    assert_eq!(
        (claim.claim_name.as_str(), claim.read_only),
        ("usb-drop", Some(false))
    );
}

fn cron_applied() -> CronJob {
    let mut cron = cron_job(&import_site(), &Config::default());
    cron.status = Some(Default::default());
    cron
}

#[test]
fn status_counts_each_successful_job_once_and_reports_failures() {
    let site = import_site();
    let ok = SyncResult {
        job: "stellaops-hub-federation-sync-1".into(),
        succeeded: true,
        finished_at: Some(t(10)),
        summary: Some(
            json!({"cursor": "2025-01-15T10:30:00.000Z#0042", "bundles": 2, "items": 40, "success": true}),
        ),
        error: None,
    };
    let first = compute_status(&site, Some(&cron_applied()), Some(&ok), t(20));
    assert_eq!(
        (first.bundles_imported, first.total_items_imported),
        (2, 40)
    );
    assert_eq!(
        first.last_cursor.as_deref(),
        Some("2025-01-15T10:30:00.000Z#0042")
    );
    let ready = first
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Scheduled")
    );

    let mut seen = site.clone();
    seen.status = Some(first.clone());
    let again = compute_status(&seen, Some(&cron_applied()), Some(&ok), t(80));
    assert_eq!(
        again, first,
        "the same Job is not counted twice and nothing else moves"
    );

    let failed = SyncResult {
        job: "stellaops-hub-federation-sync-2".into(),
        succeeded: false,
        finished_at: None,
        summary: None,
        error: Some(
            "bundle-000000000043.tar.zst: Signature verification failed: key mismatch".into(),
        ),
    };
    let after_failure = compute_status(&seen, Some(&cron_applied()), Some(&failed), t(90));
    let ready = after_failure
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "SyncFailed")
    );
    assert!(ready.message.contains("Signature verification failed"));
    assert_eq!(
        after_failure.bundles_imported, 2,
        "counters keep what succeeded"
    );
}

/// The site's S3 and trusted-keys Secrets are copied into the platform namespace, and copies
/// no longer referenced are pruned (here: one left from an earlier spec).
async fn expect_secret_copies(server: &mut stellaops_testing::ApiServer) {
    let pairs = [
        ("fed-s3", "stellaops-hub-federation-sync-s3"),
        ("fed-keys", "stellaops-hub-federation-sync-trusted-keys"),
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
                    "metadata": {"name": source, "namespace": "stellaops"},
                    "data": {"key": "dmFsdWU="}}),
            );
    }
    for (_, copy) in pairs {
        let applied = server
            .expect(
                Method::PATCH,
                &format!("/api/v1/namespaces/stellaops-system/secrets/{copy}"),
            )
            .await;
        assert_eq!(applied.body["data"]["key"], "dmFsdWU=");
        assert_eq!(
            applied.body["metadata"]["labels"][OWNER_KIND],
            "FederationSite"
        );
        applied.respond_with_request_body();
    }
    // The stale copy is found in the store of copies (no LIST) and deleted by name.
    server
        .expect(
            Method::DELETE,
            "/api/v1/namespaces/stellaops-system/secrets/stellaops-hub-federation-sync-signing-key",
        )
        .await
        .respond(
            200,
            json!({"apiVersion": "v1", "kind": "Status", "status": "Success"}),
        );
}

/// The shared stores a reconcile of `import_site` reads: a copy left from an earlier spec,
/// a copy of another site (kept), and `jobs` (the site's sync Jobs).
fn caches(jobs: Vec<Value>) -> Caches {
    let copy = |name: &str, uid: &str| -> k8s_openapi::api::core::v1::Secret {
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": "stellaops-system",
                "labels": {OWNER_KIND: "FederationSite", OWNER_UID: uid,
                           "app.kubernetes.io/component": "federation-sync"}}}))
        .unwrap()
    };
    Caches::filled(Contents {
        secret_copies: vec![
            copy(
                "stellaops-hub-federation-sync-signing-key",
                "6f3b0000-0000-4000-8000-000000000001",
            ),
            copy(
                "stellaops-other-federation-sync-s3",
                "6f3b0000-0000-4000-8000-000000000002",
            ),
        ],
        sync_jobs: jobs
            .into_iter()
            .map(|j| serde_json::from_value(j).unwrap())
            .collect(),
        ..Default::default()
    })
}

#[tokio::test]
async fn reconcile_applies_the_cron_job_and_writes_status() {
    let (client, mut server) = mock_client("default");
    let verifier = tokio::spawn(async move {
        expect_secret_copies(&mut server).await;
        let apply = server
            .expect(
                Method::PATCH,
                "/apis/batch/v1/namespaces/stellaops-system/cronjobs/stellaops-hub-federation-sync",
            )
            .await;
        assert!(apply.is_forced_apply(), "server-side apply with force");
        assert_eq!(apply.field_manager(), Some(FIELD_MANAGER));
        assert_eq!(apply.body["kind"], "CronJob");
        assert_eq!(
            apply.body["metadata"]["labels"][OWNER_UID],
            "6f3b0000-0000-4000-8000-000000000001"
        );
        apply.respond_with_request_body();
        // No sync has finished (the Job store holds none): no Job LIST either.
        let status = server
            .expect(
                Method::PATCH,
                "/apis/stella-ops.org/v1alpha1/namespaces/stellaops/federationsites/hub/status",
            )
            .await;
        assert_eq!(
            status.body["status"]["cronJobName"],
            "stellaops-hub-federation-sync"
        );
        assert_eq!(status.body["status"]["observedGeneration"], 2);
        let conditions = status.body["status"]["conditions"].as_array().unwrap();
        assert!(
            conditions
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        );
        let mut stored = serde_json::to_value(import_site()).unwrap();
        stored["status"] = status.body["status"].clone();
        status.respond(200, stored);
        server
            .expect_no_more_calls(Duration::from_millis(100))
            .await;
    });
    let ctx = Arc::new(
        Context::new(client, Metrics::unregistered(), Config::default(), None)
            .with_caches(caches(vec![])),
    );
    let action = reconcile(Arc::new(import_site()), ctx).await.unwrap();
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(Duration::from_secs(60))
    );
    verifier.await.unwrap();
}

#[test]
fn a_job_is_finished_only_when_its_conditions_say_so() {
    use k8s_openapi::api::batch::v1::Job;
    use stellaops_controllers::federation_site::job_finished;
    let job = |conditions: Value, failed: i32, active: i32| -> Job {
        serde_json::from_value(json!({"metadata": {"name": "j"}, "status": {"conditions": conditions, "failed": failed, "active": active}})).unwrap()
    };
    // A Pod failed but the Job retries: not finished.
    assert_eq!(job_finished(&job(json!([]), 1, 0)), None);
    assert_eq!(
        job_finished(&job(json!([{"type": "Complete", "status": "True"}]), 1, 0)),
        Some(true)
    );
    assert_eq!(
        job_finished(&job(
            json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]),
            3,
            0
        )),
        Some(false)
    );
    assert_eq!(
        job_finished(&job(json!([{"type": "Failed", "status": "False"}]), 0, 1)),
        None
    );
}

#[tokio::test]
async fn a_finished_sync_is_read_from_its_pod_into_the_status() {
    let (client, mut server) = mock_client("default");
    let verifier = tokio::spawn(async move {
        expect_secret_copies(&mut server).await;
        server
            .expect(
                Method::PATCH,
                "/apis/batch/v1/namespaces/stellaops-system/cronjobs/stellaops-hub-federation-sync",
            )
            .await
            .respond_with_request_body();
        let pods = server
            .expect(Method::GET, "/api/v1/namespaces/stellaops-system/pods")
            .await;
        assert_eq!(
            pods.query.get("labelSelector").map(String::as_str),
            Some("job-name=stellaops-hub-federation-sync-200"),
            "the newest finished Job"
        );
        let message =
            json!({"site_id": "site-us-east-1", "direction": "import", "bundles": 3, "items": 120,
                             "cursor": "2025-01-15T10:59:00.000Z#0420", "success": true})
            .to_string();
        pods.respond(
            200,
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
            {"metadata": {"name": "stellaops-hub-federation-sync-200-x"}, "status": {"containerStatuses": [{
                "name": "sync", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "message": message}}}]}}]}),
        );
        let status = server
            .expect(
                Method::PATCH,
                "/apis/stella-ops.org/v1alpha1/namespaces/stellaops/federationsites/hub/status",
            )
            .await;
        let s = &status.body["status"];
        assert_eq!(
            (
                s["lastCursor"].as_str(),
                s["bundlesImported"].as_i64(),
                s["totalItemsImported"].as_i64()
            ),
            (Some("2025-01-15T10:59:00.000Z#0420"), Some(3), Some(120))
        );
        assert_eq!(s["lastJob"], "stellaops-hub-federation-sync-200");
        assert_eq!(s["lastSyncAt"], "2025-01-15T11:01:00Z");
        assert_eq!(s["cursorLagSeconds"], 120);
        let mut stored = serde_json::to_value(import_site()).unwrap();
        stored["status"] = s.clone();
        status.respond(200, stored);
    });
    // Two finished syncs of this site in the Job store (and one of another site, newer):
    // the newest of this site's is reported.
    let job = |name: &str, uid: &str, created: &str| {
        json!({"metadata": {"name": name, "namespace": "stellaops-system", "creationTimestamp": created,
                "labels": {OWNER_UID: uid, "app.kubernetes.io/component": "federation-sync"}},
               "status": {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1,
                          "completionTime": "2025-01-15T11:01:00Z"}})
    };
    let mut older = job(
        "stellaops-hub-federation-sync-100",
        "6f3b0000-0000-4000-8000-000000000001",
        "2025-01-15T10:00:00Z",
    );
    older["status"]["completionTime"] = json!("2025-01-15T10:01:00Z");
    let jobs = vec![
        older,
        job(
            "stellaops-hub-federation-sync-200",
            "6f3b0000-0000-4000-8000-000000000001",
            "2025-01-15T11:00:00Z",
        ),
        job(
            "stellaops-other-federation-sync-300",
            "6f3b0000-0000-4000-8000-000000000002",
            "2025-01-15T12:00:00Z",
        ),
    ];
    let ctx = Arc::new(
        Context::new(client, Metrics::unregistered(), Config::default(), None)
            .with_caches(caches(jobs)),
    );
    reconcile(Arc::new(import_site()), ctx).await.unwrap();
    verifier.await.unwrap();
}

fn serving_site(serve: Value) -> FederationSite {
    let mut s = import_site();
    s.spec.serve = Some(serde_json::from_value(serve).unwrap());
    s
}

#[test]
fn an_import_site_with_serve_gets_an_authenticated_federation_api() {
    use stellaops_controllers::federation_site::{
        api_deployment, api_name, api_service, desired, secret_copies, serving_condition,
    };
    let s = serving_site(json!({
        "tokensSecret": {"name": "fed-tokens"},
        "tlsSecret": {"name": "fed-tls"},
        "clientCASecret": {"name": "fed-ca", "key": "bundle.pem"},
        "replicas": 2}));
    let config = Config::default();
    let deployment = api_deployment(&s, &config).unwrap();
    assert_eq!(
        deployment.metadata.name.as_deref(),
        Some(api_name(&s).as_str())
    );
    assert_eq!(
        deployment.metadata.namespace.as_deref(),
        Some("stellaops-system")
    );
    assert_eq!(deployment.spec.replicas, Some(2));
    let pod = deployment.spec.template.spec.clone().unwrap();
    let c = &pod.containers[0];
    assert_eq!(
        c.args.clone().unwrap().join(" "),
        "federation serve --listen 0.0.0.0:8080 --max-bundle-size 1048576 \
         --trusted-key /etc/stellaops/trusted-keys \
         --tokens-file /etc/stellaops/federation-api/api-tokens/tokens \
         --tls-cert /etc/stellaops/federation-api/api-tls/tls.crt \
         --tls-key /etc/stellaops/federation-api/api-tls/tls.key \
         --client-ca /etc/stellaops/federation-api/api-client-ca/ca.crt"
    );
    let probe = c.readiness_probe.clone().unwrap().http_get.unwrap();
    assert_eq!(
        (probe.path.as_deref(), probe.scheme.as_deref()),
        (Some("/readyz"), Some("HTTPS"))
    );
    assert!(
        c.env
            .clone()
            .unwrap()
            .iter()
            .any(|e| e.name == "DATABASE_URL"),
        "the server records imports in the database"
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(
        pod.security_context.unwrap().run_as_non_root,
        Some(true),
        "restricted like every worker"
    );
    // Every Secret it mounts is the platform namespace's copy, with the key renamed.
    let mounted: Vec<(String, Vec<String>)> = pod
        .volumes
        .unwrap()
        .iter()
        .filter_map(|v| {
            let secret = v.secret.as_ref()?;
            Some((
                secret.secret_name.clone().unwrap(),
                secret
                    .items
                    .iter()
                    .flatten()
                    .map(|i| format!("{}→{}", i.key, i.path))
                    .collect(),
            ))
        })
        .collect();
    let cron = "stellaops-hub-federation-sync";
    assert!(
        mounted.contains(&(
            format!("{cron}-api-client-ca"),
            vec!["bundle.pem→ca.crt".into()]
        )),
        "{mounted:?}"
    );
    assert!(
        mounted.contains(&(format!("{cron}-api-tokens"), vec!["tokens→tokens".into()])),
        "{mounted:?}"
    );
    let copies: Vec<(String, String)> = secret_copies(&s)
        .into_iter()
        .map(|c| (c.source, c.copy))
        .collect();
    for (source, purpose) in [
        ("fed-tokens", "api-tokens"),
        ("fed-tls", "api-tls"),
        ("fed-ca", "api-client-ca"),
    ] {
        assert!(
            copies.contains(&(source.to_string(), format!("{cron}-{purpose}"))),
            "{copies:?}"
        );
    }
    let service = api_service(&s, &config).unwrap();
    let port = &service.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
    assert_eq!((port.port, port.name.as_deref()), (443, Some("https")));
    assert_eq!(
        service.spec.unwrap().selector.unwrap(),
        deployment.spec.selector.match_labels.clone().unwrap(),
        "the Service selects exactly the Deployment's Pods"
    );
    // preview shows both; the status says whether it serves.
    let kinds: Vec<String> = desired(&s, &config)
        .iter()
        .map(|v| v["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["CronJob", "Deployment", "Service"]);
    let waiting = serving_condition(&s, Some(&deployment), t(0)).unwrap();
    assert_eq!(
        (waiting.status.as_str(), waiting.reason.as_str()),
        ("False", "Unavailable")
    );
    let mut up = deployment.clone();
    up.metadata.namespace = Some("stellaops-system".into());
    up.status = Some(serde_json::from_value(json!({"availableReplicas": 2})).unwrap());
    let serving = serving_condition(&s, Some(&up), t(0)).unwrap();
    assert_eq!(serving.status, "True");
    assert!(
        serving.message.contains(&format!(
            "https://{}.stellaops-system.svc/api/v1/federation/import",
            api_name(&s)
        )),
        "{}",
        serving.message
    );
    // Tokens only, over plain HTTP (behind a TLS-terminating ingress): port 80, HTTP probes.
    let plain = serving_site(json!({"tokensSecret": {"name": "fed-tokens", "key": "list"}}));
    let d = api_deployment(&plain, &config).unwrap();
    let args = d.spec.template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap()
        .join(" ");
    assert!(
        args.ends_with("--tokens-file /etc/stellaops/federation-api/api-tokens/tokens"),
        "{args}"
    );
    assert!(!args.contains("--tls"), "{args}");
    assert_eq!(
        api_service(&plain, &config)
            .unwrap()
            .spec
            .unwrap()
            .ports
            .unwrap()[0]
            .port,
        80
    );
    // No serve, or an export site: nothing more than the CronJob.
    assert!(api_deployment(&import_site(), &config).is_none());
    assert!(serving_condition(&import_site(), None, t(0)).is_none());
    assert_eq!(desired(&import_site(), &config).len(), 1);
}
