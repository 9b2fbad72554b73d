//! The operator as a cluster runs it: samples applied with kubectl, a Scan from Queued to
//! Succeeded through a worker Job, leader election between two processes, an API server
//! restart, deletion, the webhook, and SIGTERM under load.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stellaops_testing::oci;

use super::{Cluster, OPERATOR_NAMESPACE, YEARLY, create, ready};

const SETTLE: Duration = Duration::from_secs(120);

/// The Ready state each sample settles in on a cluster that has the platform's secrets
/// but none of the samples' own (their Slack, S3, htpasswd and key Secrets), so the
/// documented waiting states are what the operator must report.
fn expected_sample_states() -> Vec<(
    &'static str,
    Option<&'static str>,
    &'static str,
    &'static [&'static str],
)> {
    vec![
        // Its pull Secret is not there: the worker Pod cannot start (as a kubelet would keep
        // it in ContainerCreating), so the Scan stays Scanning until its deadline.
        (
            "Scan",
            Some("default"),
            "nginx-1-27",
            &["Scanning", "ScanFailed"],
        ),
        // Valid: its digest recorded, the next waiver expiry awaited.
        ("ScanPolicy", None, "production", &["Valid"]),
        (
            "Schedule",
            Some("stellaops-system"),
            "nightly-eu",
            &["Scheduled"],
        ),
        // Its Slack and SMTP Secrets are not there.
        (
            "NotifyRule",
            Some("stellaops-system"),
            "high-critical-alerts",
            &["SecretNotFound"],
        ),
        // Scheduled, waiting for its first sync.
        (
            "FederationSite",
            Some("stellaops"),
            "site-us-east-1",
            &["Scheduled", "Idle"],
        ),
        // The sync CronJob has not run yet.
        (
            "MirrorDomain",
            Some("stellaops"),
            "primary",
            &["AwaitingFirstSync"],
        ),
        // The public-key Secret is not there.
        (
            "ZastavaPolicy",
            None,
            "production-images",
            &["KeySecretMissing"],
        ),
        // The release verifies; the upgrade waits for a backup within `requireBackupWithin`.
        (
            "Platform",
            Some("stellaops-system"),
            "stellaops",
            &["BackupMissing"],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_the_samples_and_each_settles_where_its_docs_say() {
    let Some(mut cluster) = Cluster::start("e2e_samples").await else {
        return;
    };
    cluster.start_operator("solo", &[]);
    let applied = cluster.kubectl(&["apply", "--server-side", "-k", "config/samples"]);
    assert!(
        applied.contains("scan.stella-ops.org/nginx-1-27 serverside-applied"),
        "{applied}"
    );

    let mut states = Vec::new();
    for (kind, ns, name, allowed) in expected_sample_states() {
        let (status, reason) = cluster
            .wait_for(
                &format!("{kind} {name} reports Ready for its generation"),
                SETTLE,
                || async {
                    let object = cluster.get(kind, ns, name).await?;
                    let observed = object["status"]["observedGeneration"].as_i64()?;
                    (Some(observed) == object["metadata"]["generation"].as_i64())
                        .then(|| ready(&object))
                        .flatten()
                },
            )
            .await;
        let documented = status == "True" || allowed.contains(&reason.as_str());
        states.push((
            format!("{kind}/{name}: Ready={status} ({reason})"),
            documented,
        ));
    }
    let table: Vec<String> = states
        .iter()
        .map(|(s, ok)| format!("{s}{}", if *ok { "" } else { "  <- not documented" }))
        .collect();
    eprintln!("sample states:\n  {}", table.join("\n  "));
    assert!(
        states.iter().all(|(_, ok)| *ok),
        "{}\n{}",
        table.join("\n"),
        cluster.logs()
    );

    // `kubectl get` shows every kind with its printer columns.
    let table = cluster.kubectl(&["get", "stellaops", "-A"]);
    for kind in stellaops_crds::KINDS {
        assert!(
            table
                .to_lowercase()
                .contains(&format!("{}.stella-ops.org/", kind.to_lowercase())),
            "{kind} missing from `kubectl get stellaops -A`:\n{table}"
        );
    }
    let scans = cluster.kubectl(&["get", "scans", "-A"]);
    let header = scans.lines().next().unwrap_or_default();
    for column in ["IMAGE", "PHASE", "VERDICT"] {
        assert!(header.contains(column), "column {column} missing:\n{scans}");
    }
    // `kubectl wait` returns for a kind that is Ready.
    let out = cluster.kubectl_output(
        &[
            "wait",
            "--for=condition=Ready",
            "-n",
            "stellaops-system",
            "schedule/nightly-eu",
            "--timeout=20s",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "kubectl wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let forbidden = cluster.forbidden_operator_requests();
    assert!(
        forbidden.is_empty(),
        "the operator made requests config/rbac does not allow:\n{}",
        forbidden.join("\n")
    );
    cluster.stop().await;
}

fn dpkg_image_layer() -> Vec<u8> {
    oci::tar_of(&[
        ("etc/os-release", b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n"),
        ("var/lib/dpkg/status", b"Package: openssl\nStatus: install ok installed\nVersion: 3.0.11-1~deb12u1\n\nPackage: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u4\n"),
    ])
}

pub(super) async fn ingest_openssl_advisory(database_url: &str) {
    let pool = sqlx::PgPool::connect(database_url).await.unwrap();
    let doc = serde_json::to_vec(&json!({
        "id": "DSA-E2E-1", "modified": "2024-06-01T00:00:00Z", "published": "2024-05-01T00:00:00Z",
        "aliases": ["CVE-2024-0001"], "summary": "openssl issue",
        "affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl"},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}]}]}],
        "database_specific": {"severity": "high"}
    }))
    .unwrap();
    let parsed = stellaops_federation::osv::parse("e2e", &doc, None, chrono::Utc::now()).unwrap();
    stellaops_federation::ingest::ingest(&pool, vec![parsed])
        .await
        .unwrap();
    pool.close().await;
}

pub(super) async fn push_image(cluster: &Cluster, repository: &str) -> (String, String) {
    let dir = cluster.dir.join(format!("image-{repository}"));
    let built = oci::write_layout(&dir, &[dpkg_image_layer()], "v1");
    oci::push(&dir, "v1", &cluster.services.registry, repository);
    (
        format!("{}/{repository}:v1", cluster.services.registry),
        built.manifest_digest,
    )
}

pub(super) fn scan(ns: &str, name: &str, image: &str) -> Value {
    json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": "Scan",
           "metadata": {"name": name, "namespace": ns},
           "spec": {"image": image, "policy": {"failOn": "critical", "warnOn": "high"}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_goes_from_queued_through_a_worker_job_to_its_verdict() {
    let Some(mut cluster) = Cluster::start("e2e_scan").await else {
        return;
    };
    ingest_openssl_advisory(&cluster.database_url).await;
    let (image, digest) = push_image(&cluster, "e2e/app").await;
    cluster.start_operator("solo", &[]);
    let manifest = serde_yaml::to_string(&scan("tenant-a", "app", &image)).unwrap();
    let out = cluster.kubectl_output(&["apply", "--server-side", "-f", "-"], Some(&manifest));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let phases = std::sync::Mutex::new(Vec::<String>::new());
    let done = cluster
        .wait_for("the Scan finishes", Duration::from_secs(120), || async {
            let object = cluster.get("Scan", Some("tenant-a"), "app").await?;
            let phase = object["status"]["phase"].as_str()?.to_string();
            let mut seen = phases.lock().unwrap();
            if seen.last() != Some(&phase) {
                seen.push(phase.clone());
            }
            matches!(phase.as_str(), "Succeeded" | "Failed").then_some(object)
        })
        .await;
    let phases = phases.into_inner().unwrap();
    eprintln!("Scan phases seen: {phases:?}");
    assert_eq!(
        done["status"]["phase"],
        "Succeeded",
        "{done:#}\n{}",
        cluster.logs()
    );
    assert!(
        phases.len() >= 2,
        "seen phases {phases:?}: a Scan passes through Queued/Running"
    );
    assert_eq!(done["status"]["imageDigest"], digest.as_str());
    assert_eq!(
        done["status"]["verdict"], "Warn",
        "one high finding, failOn critical"
    );
    assert_eq!(done["status"]["findings"]["high"], 1);
    assert_eq!(ready(&done).unwrap().0, "True");

    // The worker ran once, as a Job the operator made, and left its results in S3 and
    // PostgreSQL.
    let jobs = cluster.emulator.objects("batch/v1", "Job");
    assert_eq!(jobs.len(), 1, "one Job: {jobs:#?}");
    let runs = cluster.runner.as_ref().unwrap().started();
    assert_eq!(runs.len(), 1, "one worker process: {runs:?}");
    let uri = done["status"]["sbom"]["uri"].as_str().expect("an SBOM URI");
    let key = uri
        .split_once(&format!("{}/", cluster.bucket))
        .expect("the SBOM is in the platform bucket")
        .1;
    let s3 = stellaops_store::s3::client(&stellaops_store::s3::S3Settings {
        endpoint: Some(cluster.services.s3_endpoint.clone()),
        region: None,
        force_path_style: true,
    })
    .await;
    let sbom = s3
        .get_object()
        .bucket(&cluster.bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let sbom = sbom.body.collect().await.unwrap().into_bytes();
    let sbom: Value = serde_json::from_slice(&sbom).unwrap();
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    let pool = sqlx::PgPool::connect(&cluster.database_url).await.unwrap();
    let findings: i64 = sqlx::query_scalar("SELECT count(*) FROM scan_findings")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(findings, 1);
    pool.close().await;

    // kubectl reads it as a person would.
    let out = cluster.kubectl_output(
        &[
            "wait",
            "--for=condition=Ready",
            "-n",
            "tenant-a",
            "scan/app",
            "--timeout=10s",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = cluster.kubectl(&["get", "scans", "-n", "tenant-a"]);
    assert!(row.contains("Succeeded") && row.contains("Warn"), "{row}");
    assert!(
        cluster.forbidden_operator_requests().is_empty(),
        "{:?}",
        cluster.forbidden_operator_requests()
    );
    cluster.stop().await;
}

/// How many distinct Jobs the runner started worker processes for (a failed scan is
/// retried once, in a second Pod of the same Job: `backoffLimit: 1`).
fn jobs_run(cluster: &Cluster) -> usize {
    let jobs: std::collections::BTreeSet<String> = cluster
        .runner
        .as_ref()
        .unwrap()
        .started()
        .into_iter()
        .map(|p| {
            p.pod
                .rsplit_once('-')
                .map(|(job, _)| job.to_string())
                .unwrap_or(p.pod)
        })
        .collect();
    jobs.len()
}

fn leader(cluster: &Cluster) -> Option<String> {
    let lease = cluster
        .emulator
        .objects("coordination.k8s.io/v1", "Lease")
        .into_iter()
        .find(|l| l["metadata"]["name"] == "stellaops-operator-leader")?;
    lease["spec"]["holderIdentity"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_elect_one_leader_and_hand_over_when_it_dies() {
    let Some(mut cluster) = Cluster::start("e2e_leader").await else {
        return;
    };
    cluster.start_operator("replica-a", &[]);
    cluster.start_operator("replica-b", &[]);
    let first = cluster
        .wait_for("a leader", Duration::from_secs(30), || async {
            leader(&cluster)
        })
        .await;
    // Exactly one replica says it leads.
    let mut leading = Vec::new();
    for operator in &cluster.operators {
        let gauge = cluster
            .wait_for("metrics", Duration::from_secs(20), || {
                operator.metric("stellaops_leader")
            })
            .await;
        if gauge == 1.0 {
            leading.push(operator.name.clone());
        }
    }
    assert_eq!(leading, vec![first.clone()], "one leader, the Lease holder");

    let api = cluster.api_for(&scan("tenant-a", "before", "127.0.0.1:1/none:v1"));
    create(&api, scan("tenant-a", "before", "127.0.0.1:1/none:v1")).await;
    cluster
        .wait_for("the leader reconciles", SETTLE, || async {
            cluster.get("Scan", Some("tenant-a"), "before").await?["status"]["phase"]
                .as_str()
                .map(|_| ())
        })
        .await;

    // Kill the leader without a chance to release the Lease.
    let index = cluster
        .operators
        .iter()
        .position(|o| o.name == first)
        .unwrap();
    let killed_at = Instant::now();
    cluster.operators[index].child.kill().unwrap();
    cluster.operators[index].child.wait().unwrap();
    let second = cluster
        .wait_for("a new leader", Duration::from_secs(20), || async {
            leader(&cluster).filter(|h| *h != first)
        })
        .await;
    let handover = killed_at.elapsed();
    eprintln!("leadership passed from {first} to {second} in {handover:?}");
    assert!(
        handover < Duration::from_secs(4 + 1 + 3),
        "within the lease duration plus a retry: {handover:?}"
    );

    create(&api, scan("tenant-a", "after", "127.0.0.1:1/none:v2")).await;
    cluster
        .wait_for("the new leader reconciles", SETTLE, || async {
            cluster.get("Scan", Some("tenant-a"), "after").await?["status"]["phase"]
                .as_str()
                .map(|_| ())
        })
        .await;
    // Settle, then count: each Scan has made exactly one Job, once.
    cluster
        .wait_for("both scans finish", SETTLE, || async {
            let mut done = 0;
            for name in ["before", "after"] {
                let phase =
                    cluster.get("Scan", Some("tenant-a"), name).await?["status"]["phase"].clone();
                if phase == "Failed" || phase == "Succeeded" {
                    done += 1;
                }
            }
            (done == 2).then_some(())
        })
        .await;
    let creates: Vec<_> = cluster
        .emulator
        .audit_log()
        .into_iter()
        .filter(|e| e.path.contains("/jobs") && e.status == 201)
        .collect();
    assert_eq!(
        creates.len(),
        2,
        "one Job per Scan, never twice: {creates:#?}"
    );
    assert_eq!(jobs_run(&cluster), 2, "worker processes ran for two Jobs");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_restart_breaks_watches_and_the_operator_carries_on() {
    let Some(mut cluster) = Cluster::start("e2e_restart").await else {
        return;
    };
    cluster.start_operator("solo", &[]);
    let api = cluster.api_for(&scan("tenant-a", "x", "i"));
    create(&api, scan("tenant-a", "one", "127.0.0.1:1/none:v1")).await;
    cluster
        .wait_for("the first Scan finishes", SETTLE, || async {
            let phase =
                cluster.get("Scan", Some("tenant-a"), "one").await?["status"]["phase"].clone();
            (phase == "Failed" || phase == "Succeeded").then_some(())
        })
        .await;
    let before_restart = cluster.emulator.audit_log().len();
    cluster.emulator.restart().await.unwrap();
    // The test's own client lost its pooled connection too: a new one.
    cluster.admin = cluster
        .emulator
        .client(&cluster.emulator.admin_token())
        .await;
    let api = cluster.api_for(&scan("tenant-a", "x", "i"));
    create(&api, scan("tenant-a", "two", "127.0.0.1:1/none:v2")).await;
    cluster
        .wait_for(
            "the Scan created after the restart finishes",
            SETTLE,
            || async {
                let phase =
                    cluster.get("Scan", Some("tenant-a"), "two").await?["status"]["phase"].clone();
                (phase == "Failed" || phase == "Succeeded").then_some(())
            },
        )
        .await;
    // The watches broke; resuming from their old resourceVersions got 410 Gone (an ERROR
    // event), so the operator listed Scans again.
    let user = format!("system:serviceaccount:{OPERATOR_NAMESPACE}:stellaops-operator");
    let relists = cluster.emulator.audit_log()[before_restart..]
        .iter()
        .filter(|e| e.user == user && e.verb == "list" && e.path.contains("/scans"))
        .count();
    assert!(
        relists >= 1,
        "the operator relisted Scans after the restart"
    );
    assert_eq!(
        cluster.emulator.objects("batch/v1", "Job").len(),
        2,
        "no Job made twice"
    );
    assert_eq!(jobs_run(&cluster), 2, "worker processes ran for two Jobs");
    cluster.stop().await;
}

/// What the operator made for custom resources (of `owner_namespace`, if given): owned by
/// reference in the same namespace (webhook configurations, a Job's Secret copies, a
/// CronJob's Jobs) or by owner labels in the platform namespace.
fn made_for_resources(cluster: &Cluster, owner_namespace: Option<&str>) -> Vec<String> {
    let mut names = Vec::new();
    for (api_version, kind) in [
        ("batch/v1", "Job"),
        ("batch/v1", "CronJob"),
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("v1", "PersistentVolumeClaim"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "Pod"),
        (
            "admissionregistration.k8s.io/v1",
            "ValidatingWebhookConfiguration",
        ),
    ] {
        for object in cluster.emulator.objects(api_version, kind) {
            let metadata = &object["metadata"];
            let by_reference = owner_namespace.is_none()
                && metadata["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|o| {
                        o["apiVersion"]
                            .as_str()
                            .is_some_and(|v| v.starts_with("stella-ops.org/") || v == "batch/v1")
                    });
            let labels = &metadata["labels"];
            let by_label = labels["stella-ops.org/owner-kind"].is_string()
                && owner_namespace.is_none_or(|ns| labels["stella-ops.org/owner-namespace"] == ns);
            if by_reference || by_label {
                names.push(format!(
                    "{kind}/{}/{}",
                    metadata["namespace"].as_str().unwrap_or(""),
                    metadata["name"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_each_kind_removes_what_the_operator_made_for_it() {
    let Some(mut cluster) = Cluster::start("e2e_delete").await else {
        return;
    };
    cluster.start_operator("solo", &[]);
    cluster.kubectl(&["apply", "--server-side", "-k", "config/samples"]);
    // Wait until each has been reconciled (its children exist where it makes any).
    for (kind, ns, name, _) in expected_sample_states() {
        cluster
            .wait_for(&format!("{kind} {name} reconciled"), SETTLE, || async {
                cluster.get(kind, ns, name).await?["status"]["observedGeneration"].as_i64()
            })
            .await;
    }
    let owned = |cluster: &Cluster| made_for_resources(cluster, None);
    let before = owned(&cluster);
    assert!(!before.is_empty(), "the samples made objects");
    eprintln!("made for the samples: {before:?}");
    // Every worker object is in the platform namespace, none in a tenant's.
    let misplaced: Vec<&String> = before
        .iter()
        .filter(|n| {
            !n.starts_with("ValidatingWebhookConfiguration/")
                && !n.contains(&format!("/{OPERATOR_NAMESPACE}/"))
        })
        .collect();
    assert!(
        misplaced.is_empty(),
        "outside the platform namespace: {misplaced:?}"
    );
    cluster.kubectl(&["delete", "-k", "config/samples", "--wait=false"]);
    let started = Instant::now();
    loop {
        let left = owned(&cluster);
        if left.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < SETTLE,
            "still there {SETTLE:?} after the delete: {left:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (kind, ns, name, _) in expected_sample_states() {
        cluster
            .wait_for(&format!("{kind} {name} deleted"), SETTLE, || async {
                cluster.get(kind, ns, name).await.is_none().then_some(())
            })
            .await;
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_stops_the_operator_well_within_the_grace_period() {
    let Some(mut cluster) = Cluster::start("e2e_sigterm").await else {
        return;
    };
    // Scans of an unreachable registry: the operator is busy queueing and starting Jobs.
    let api = cluster.api_for(&scan("tenant-a", "x", "i"));
    for i in 0..1000 {
        create(
            &api,
            scan(
                "tenant-a",
                &format!("load-{i}"),
                &format!("127.0.0.1:1/none:v{i}"),
            ),
        )
        .await;
    }
    cluster.start_operator("solo", &[]);
    cluster
        .wait_for("the operator is reconciling", SETTLE, || async {
            let operator = &cluster.operators[0];
            let text = operator.metrics().await?;
            // A Scan reconciled (the counter is there at zero from the start).
            text.lines()
                .any(|l| {
                    l.starts_with("stellaops_reconciliations_total")
                        && l.contains("kind=\"Scan\"")
                        && l.rsplit(' ').next().is_some_and(|n| n != "0")
                })
                .then_some(())
        })
        .await;
    let signalled = Instant::now();
    cluster.operators[0].terminate();
    let status = loop {
        if let Some(status) = cluster.operators[0].child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(20),
            "still running 20 s after SIGTERM\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "stopped {:?} after SIGTERM with {status}",
        signalled.elapsed()
    );
    assert!(status.success(), "a clean stop exits 0\n{}", cluster.logs());
    // It handed the Lease over rather than letting it expire.
    let holder = leader(&cluster);
    assert!(
        holder.as_deref().is_none_or(str::is_empty),
        "Lease released, holder {holder:?}"
    );
    cluster.stop().await;
}

pub(super) fn pod_review(uid: &str, image: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "web", "namespace": "tenant-a", "operation": "CREATE",
            "userInfo": {"username": "alice@example.com"},
            "object": {"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": "web", "namespace": "tenant-a"},
                       "spec": {"containers": [{"name": "web", "image": image}]}},
            "oldObject": null, "dryRun": false
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_operator_answers_admission_reviews_with_the_certificate_it_issued() {
    let Some(mut cluster) = Cluster::start("e2e_webhook").await else {
        return;
    };
    cluster.start_operator("solo", &[]);
    cluster
        .apply(json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": "ZastavaPolicy",
            "metadata": {"name": "pinned"},
            "spec": {"mode": "enforce", "images": ["**"], "requireDigest": true, "failurePolicy": "Fail"}}))
        .await;
    // The controller registers the webhook with the CA it made; reached as the API server
    // reaches it (the Service's DNS name verified against the CA bundle).
    let webhook = cluster.webhook("pinned", SETTLE).await;
    let post = |review: Value| {
        let webhook = &webhook;
        async move { webhook.review(&review).await }
    };
    // Until the webhook has loaded the certificate and compiled the policy it may refuse.
    let by_tag = cluster
        .wait_for("the webhook answers", SETTLE, || {
            post(pod_review("by-tag", "registry.test/app:1.0"))
        })
        .await;
    assert_eq!(by_tag["response"]["uid"], "by-tag");
    assert_eq!(by_tag["response"]["allowed"], false, "{by_tag:#}");
    let message = by_tag["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("digest"),
        "the reason names what to do: {message}"
    );
    let digest = format!("registry.test/app@sha256:{}", "a".repeat(64));
    let by_digest = post(pod_review("by-digest", &digest))
        .await
        .expect("an answer");
    assert_eq!(by_digest["response"]["allowed"], true, "{by_digest:#}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_sync_run_reports_what_it_copied_on_the_mirror_domain() {
    let Some(mut cluster) = Cluster::start("e2e_mirror").await else {
        return;
    };
    let s3 = stellaops_store::s3::client(&stellaops_store::s3::S3Settings {
        endpoint: Some(cluster.services.s3_endpoint.clone()),
        region: None,
        force_path_style: true,
    })
    .await;
    for (key, body) in [
        ("exports/index.json", r#"{"domains":["e2e"]}"#),
        ("exports/mirror/e2e/manifest.json", r#"{"domainId":"e2e"}"#),
    ] {
        s3.put_object()
            .bucket(&cluster.bucket)
            .key(key)
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }
    cluster.start_operator("solo", &[]);
    let endpoint = cluster.services.s3_endpoint.clone();
    let bucket = cluster.bucket.clone();
    // The tenant's own credentials for its source bucket; the sync runs in the platform
    // namespace with a copy of them.
    cluster
        .apply(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "source-s3", "namespace": "tenant-a"},
            "stringData": {"AWS_ACCESS_KEY_ID": std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_default(),
                           "AWS_SECRET_ACCESS_KEY": std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_default()}}))
        .await;
    cluster
        .apply(json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": "MirrorDomain",
            "metadata": {"name": "e2e", "namespace": "tenant-a"},
            "spec": {"domainId": "e2e", "source": {"bucket": bucket, "prefix": "exports",
                     "endpoint": endpoint, "forcePathStyle": true, "secretRef": {"name": "source-s3"}},
                     "storage": {"size": "1Gi"}, "auth": {"requireAuthentication": false},
                     // Once a year, so that only the trigger below runs it: a scheduled run
                     // beside it would leave the second run with nothing to copy.
                     "syncSchedule": YEARLY}}))
        .await;
    let cron_job = cluster
        .wait_for("the sync CronJob", SETTLE, || async {
            cluster
                .emulator
                .objects("batch/v1", "CronJob")
                .into_iter()
                .find(|c| {
                    c["metadata"]["namespace"] == OPERATOR_NAMESPACE
                        && c["metadata"]["labels"]["stella-ops.org/owner-namespace"] == "tenant-a"
                })
                .map(|c| c["metadata"]["name"].as_str().unwrap().to_string())
        })
        .await;
    // Run it now rather than at the next five-minute mark.
    cluster
        .runner
        .as_ref()
        .unwrap()
        .trigger_cron_job(OPERATOR_NAMESPACE, &cron_job)
        .await
        .unwrap();
    let domain = cluster
        .wait_for("the MirrorDomain reports the sync", SETTLE, || async {
            let domain = cluster.get("MirrorDomain", Some("tenant-a"), "e2e").await?;
            domain["status"]["lastSync"]["copied"]
                .as_i64()
                .map(|_| domain)
        })
        .await;
    // Both objects copied, counted from the worker's termination message.
    assert_eq!(domain["status"]["lastSync"]["copied"], 2, "{domain:#}");
    assert!(domain["status"]["lastSyncAt"].is_string());
    let claim = cluster
        .dir
        .join(format!("pods/claims/{OPERATOR_NAMESPACE}"));
    let copied: Vec<_> = walk(&claim);
    assert!(
        copied
            .iter()
            .any(|p| p.ends_with("mirror/e2e/manifest.json")),
        "the volume holds the export: {copied:?}"
    );
    cluster.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path.to_string_lossy().into_owned());
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_loses_the_api_server_exits_so_its_pod_restarts() {
    let Some(mut cluster) = Cluster::start("e2e_lost").await else {
        return;
    };
    cluster.start_operator("solo", &[]);
    cluster
        .wait_for("leadership", Duration::from_secs(30), || async {
            leader(&cluster)
        })
        .await;
    let Cluster {
        emulator,
        runner,
        mut operators,
        dir,
        ..
    } = cluster;
    if let Some(runner) = runner {
        runner.stop().await;
    }
    emulator.shutdown().await;
    // The Lease cannot be renewed: the replica gives up leadership and exits (non-zero,
    // so the kubelet restarts it as a standby), within the lease duration and a margin;
    // its watches back off rather than spin.
    let gone = Instant::now();
    let operator = &mut operators[0];
    let status = loop {
        if let Some(status) = operator.child.try_wait().unwrap() {
            break status;
        }
        let log = std::fs::read_to_string(&operator.log).unwrap_or_default();
        assert!(
            gone.elapsed() < Duration::from_secs(15),
            "still running 15 s after the API server went away:\n{}",
            log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "exited {:?} after the API server went away: {status}",
        gone.elapsed()
    );
    assert!(!status.success());
    let log = std::fs::read_to_string(&operator.log).unwrap();
    assert!(log.contains("lost leadership"), "says why:\n{log}");
    let lines = log.lines().count();
    assert!(
        lines < 2_000,
        "{lines} log lines: a watch retried without backoff"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_waits_queued_for_a_free_slot_then_runs_to_its_verdict() {
    let Some(mut cluster) = Cluster::start("e2e_queue").await else {
        return;
    };
    ingest_openssl_advisory(&cluster.database_url).await;
    let (image, _) = push_image(&cluster, "e2e/queued").await;
    // A registry that accepts connections and never answers: the first Scan holds the only
    // slot until it is deleted.
    let stall = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stall_addr = stall.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = stall.accept().await {
            sockets.push(socket);
        }
    });
    cluster.start_operator("solo", &["--max-concurrent-scans", "1"]);
    let api = cluster.api_for(&scan("tenant-a", "x", "i"));
    create(
        &api,
        scan("tenant-a", "blocker", &format!("{stall_addr}/stalled:v1")),
    )
    .await;
    cluster
        .wait_for("the blocker runs", SETTLE, || async {
            (cluster.get("Scan", Some("tenant-a"), "blocker").await?["status"]["phase"]
                == "Running")
                .then_some(())
        })
        .await;
    create(&api, scan("tenant-a", "app", &image)).await;
    let queued = cluster
        .wait_for("the second Scan is queued", SETTLE, || async {
            let object = cluster.get("Scan", Some("tenant-a"), "app").await?;
            (object["status"]["phase"] == "Queued").then_some(object)
        })
        .await;
    assert_eq!(
        ready(&queued).unwrap(),
        ("False".to_string(), "Queued".to_string())
    );
    assert_eq!(
        cluster.emulator.objects("batch/v1", "Job").len(),
        1,
        "no Job for a queued Scan"
    );
    // Deleting the blocker frees the slot (its Job goes with it).
    cluster.kubectl(&["delete", "scan", "blocker", "-n", "tenant-a"]);
    let done = cluster
        .wait_for("the queued Scan finishes", SETTLE, || async {
            let object = cluster.get("Scan", Some("tenant-a"), "app").await?;
            matches!(
                object["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            )
            .then_some(object)
        })
        .await;
    assert_eq!(
        done["status"]["phase"],
        "Succeeded",
        "{done:#}\n{}",
        cluster.logs()
    );
    assert_eq!(done["status"]["verdict"], "Warn");
    held.abort();
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_tenant_deleted_while_the_operator_was_down_is_removed_at_its_next_start() {
    let Some(mut cluster) = Cluster::start("e2e_down_delete").await else {
        return;
    };
    cluster.start_operator("first", &[]);
    // A tenant's Scan with a pull secret and a MirrorDomain with S3 credentials: what they
    // make (Job, CronJob, Deployment, Service, claim, Secret copies) is in the platform
    // namespace, labelled with its owner; the tenant namespace holds only its own inputs.
    cluster
        .apply(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "regcred", "namespace": "tenant-a"},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": "{\"auths\":{}}"}}))
        .await;
    cluster
        .apply(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "mirror-s3", "namespace": "tenant-a"},
            "stringData": {"AWS_ACCESS_KEY_ID": "tenant", "AWS_SECRET_ACCESS_KEY": "tenant"}}))
        .await;
    let mut tenant_scan = scan("tenant-a", "app", "127.0.0.1:1/none:v1");
    tenant_scan["spec"]["imagePullSecrets"] = json!([{"name": "regcred"}]);
    let scans = cluster.api_for(&tenant_scan);
    create(&scans, tenant_scan).await;
    let domain = json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": "MirrorDomain",
        "metadata": {"name": "mirror", "namespace": "tenant-a"},
        "spec": {"domainId": "mirror", "replicas": 1,
                 "source": {"bucket": cluster.bucket, "prefix": "exports/",
                            "secretRef": {"name": "mirror-s3"}},
                 "storage": {"size": "1Gi"}, "auth": {"requireAuthentication": false}}});
    let domains = cluster.api_for(&domain);
    create(&domains, domain).await;
    let made = cluster
        .wait_for(
            "the tenant's objects in the platform namespace",
            SETTLE,
            || async {
                let made = made_for_resources(&cluster, Some("tenant-a"));
                let kinds = [
                    "Job/",
                    "CronJob/",
                    "Deployment/",
                    "Service/",
                    "PersistentVolumeClaim/",
                    "Secret/",
                ];
                kinds
                    .iter()
                    .all(|k| made.iter().any(|n| n.starts_with(k)))
                    .then_some(made)
            },
        )
        .await;
    eprintln!("made for tenant-a: {made:?}");
    assert!(
        made.iter()
            .all(|n| n.contains(&format!("/{OPERATOR_NAMESPACE}/"))),
        "{made:?}"
    );
    // The pull secret's copy is owned by the Job (it goes with it).
    let copy = cluster
        .emulator
        .objects("v1", "Secret")
        .into_iter()
        .find(|s| s["metadata"]["name"] == "tenant-a-app-scan-1-pull-0")
        .expect("the pull secret's copy");
    assert_eq!(copy["metadata"]["ownerReferences"][0]["kind"], "Job");

    // The operator stops; the tenant deletes both. The finalizer holds them.
    for operator in &mut cluster.operators {
        operator.child.kill().unwrap();
        operator.child.wait().unwrap();
    }
    cluster.kubectl(&[
        "delete",
        "-n",
        "tenant-a",
        "scan/app",
        "mirrordomain/mirror",
        "--wait=false",
    ]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (kind, name) in [("Scan", "app"), ("MirrorDomain", "mirror")] {
        let held = cluster
            .get(kind, Some("tenant-a"), name)
            .await
            .expect("held by the finalizer");
        assert!(held["metadata"]["deletionTimestamp"].is_string());
    }
    // Nobody removed them meanwhile (Pods may come and go with their Jobs).
    let held = made_for_resources(&cluster, Some("tenant-a"));
    for kind in [
        "Job/",
        "CronJob/",
        "Deployment/",
        "Service/",
        "PersistentVolumeClaim/",
        "Secret/",
    ] {
        assert!(held.iter().any(|n| n.starts_with(kind)), "{kind} {held:?}");
    }

    // The next start cleans up and releases the finalizers.
    cluster.start_operator("second", &[]);
    cluster
        .wait_for("everything made for tenant-a is gone", SETTLE, || async {
            made_for_resources(&cluster, Some("tenant-a"))
                .is_empty()
                .then_some(())
        })
        .await;
    for (kind, name) in [("Scan", "app"), ("MirrorDomain", "mirror")] {
        cluster
            .wait_for(&format!("{kind} {name} deleted"), SETTLE, || async {
                cluster
                    .get(kind, Some("tenant-a"), name)
                    .await
                    .is_none()
                    .then_some(())
            })
            .await;
    }
    assert_eq!(cluster.forbidden_operator_requests(), Vec::<String>::new());
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_keeps_the_artifact_lifecycle_cron_job_and_its_run_sweeps() {
    let Some(mut cluster) = Cluster::start("e2e_lifecycle").await else {
        return;
    };
    // Once a year, so that only the trigger below runs it (the default, 17 3 * * *, fires
    // beside it when the test runs at 03:17 UTC and records a second pass).
    cluster.start_operator(
        "solo",
        &[
            "--artifact-short-days",
            "0",
            "--artifact-lifecycle-schedule",
            YEARLY,
        ],
    );
    let cron_job = cluster
        .wait_for("the artifact lifecycle CronJob", SETTLE, || async {
            cluster
                .emulator
                .objects("batch/v1", "CronJob")
                .into_iter()
                .find(|c| {
                    c["metadata"]["namespace"] == OPERATOR_NAMESPACE
                        && c["metadata"]["name"] == "stellaops-artifact-lifecycle"
                })
        })
        .await;
    assert_eq!(cron_job["spec"]["schedule"], YEARLY);
    assert_eq!(cron_job["spec"]["timeZone"], "Etc/UTC");
    // A working artifact older than its class's age (zero days here) is swept by the run.
    let s3 = stellaops_store::s3::client(&stellaops_store::s3::S3Settings {
        endpoint: Some(cluster.services.s3_endpoint.clone()),
        region: None,
        force_path_style: true,
    })
    .await;
    s3.put_object()
        .bucket(&cluster.bucket)
        .key("scanner/diffs/old_new/diff.json.zst")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"{}"))
        .send()
        .await
        .expect("put");
    cluster
        .runner
        .as_ref()
        .unwrap()
        .trigger_cron_job(OPERATOR_NAMESPACE, "stellaops-artifact-lifecycle")
        .await
        .unwrap();
    cluster
        .wait_for("the lifecycle Job succeeds", SETTLE, || async {
            cluster
                .emulator
                .objects("batch/v1", "Job")
                .into_iter()
                .find(|j| {
                    j["metadata"]["labels"]["app.kubernetes.io/component"] == "artifact-lifecycle"
                        && j["status"]["succeeded"] == 1
                })
        })
        .await;
    let pool = stellaops_store::connect(&cluster.database_url)
        .await
        .unwrap();
    let passes: i64 = sqlx::query_scalar("SELECT count(*) FROM artifact_lifecycle_passes")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(passes, 1, "the pass was recorded");
    let left = s3
        .list_objects_v2()
        .bucket(&cluster.bucket)
        .prefix("scanner/diffs/")
        .send()
        .await
        .unwrap();
    assert!(left.contents().is_empty(), "the working artifact was swept");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_audits_the_pods_already_running_against_a_new_policy() {
    let Some(mut cluster) = Cluster::start("e2e_audit").await else {
        return;
    };
    // Pods that were running before the policy existed (the emulator calls no webhook).
    cluster
        .apply(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "shop", "labels": {"environment": "production"}}}))
        .await;
    cluster
        .apply(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "sandbox", "labels": {"environment": "dev"}}}))
        .await;
    let digest = format!("registry.test/app@sha256:{}", "b".repeat(64));
    for (namespace, name, image) in [
        ("shop", "by-tag", "registry.test/app:1.0"),
        ("shop", "by-digest", digest.as_str()),
        ("sandbox", "by-tag", "registry.test/app:1.0"),
    ] {
        cluster
            .apply(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"containers": [{"name": "app", "image": image}]}}))
            .await;
    }
    cluster.start_operator("solo", &[]);
    cluster
        .apply(
            json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": "ZastavaPolicy",
            "metadata": {"name": "pinned"},
            "spec": {"mode": "dryRun", "requireDigest": true,
                     "namespaceSelector": {"matchLabels": {"environment": "production"}}}}),
        )
        .await;
    let audit = cluster
        .wait_for("status.audit on the policy", SETTLE, || async {
            cluster
                .emulator
                .objects("stella-ops.org/v1alpha1", "ZastavaPolicy")
                .into_iter()
                .find_map(|p| {
                    let audit = p["status"]["audit"].clone();
                    (audit["pods"] == 2).then_some(audit)
                })
        })
        .await;
    assert_eq!(audit["violations"], 1, "{audit:#}");
    assert_eq!(audit["compliant"], 1, "{audit:#}");
    assert_eq!(audit["unscanned"], 0, "{audit:#}");
    assert_eq!(audit["observedGeneration"], 1, "{audit:#}");
    assert_eq!(audit["examples"][0]["namespace"], "shop");
    assert_eq!(audit["examples"][0]["pod"], "by-tag");
    let event = cluster
        .wait_for(
            "a RuntimePolicyViolation Event on the Pod",
            SETTLE,
            || async {
                cluster
                    .emulator
                    .objects("events.k8s.io/v1", "Event")
                    .into_iter()
                    .find(|e| e["reason"] == "RuntimePolicyViolation")
            },
        )
        .await;
    assert_eq!(event["regarding"]["kind"], "Pod", "{event:#}");
    assert_eq!(event["regarding"]["name"], "by-tag");
    assert_eq!(event["regarding"]["namespace"], "shop");
    assert!(
        event["note"]
            .as_str()
            .unwrap_or_default()
            .contains("not pinned by digest"),
        "{event:#}"
    );
    let payload = cluster
        .wait_for("a zastava.runtime event in the outbox", SETTLE, || async {
            let pool = sqlx::PgPool::connect(&cluster.database_url).await.ok()?;
            let payload: Option<Value> = sqlx::query_scalar(
                "SELECT payload FROM events_outbox WHERE kind = 'zastava.runtime'",
            )
            .fetch_optional(&pool)
            .await
            .ok()?;
            pool.close().await;
            payload
        })
        .await;
    assert_eq!(payload["policy"], "pinned", "{payload}");
    assert_eq!(payload["pod"], "by-tag");
    assert_eq!(payload["namespace"], "shop");
    // The reconcile's own status writes (Ready, after the certificates) leave the audit alone.
    let policy = cluster
        .wait_for("the policy Ready", SETTLE, || async {
            cluster
                .emulator
                .objects("stella-ops.org/v1alpha1", "ZastavaPolicy")
                .into_iter()
                .find(|p| {
                    p["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
        })
        .await;
    assert_eq!(policy["status"]["audit"]["violations"], 1);
    cluster.stop().await;
}

/// `spec.serve`: the real operator deploys `federation serve` for an import site, the
/// runner starts the real worker with the copied tokens Secret, the site reports the
/// endpoint, the server answers only with a token, and dropping `serve` removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_site_with_serve_runs_the_federation_api_with_its_tokens() {
    let Some(mut cluster) = Cluster::start("e2e_fed_serve").await else {
        return;
    };
    cluster.start_operator("solo", &[]);
    let token = "site-hub-token-0123456789";
    cluster
        .apply(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "hub-tokens", "namespace": "tenant-a"},
            "stringData": {"tokens": format!("site-hub:{token}\n")}}))
        .await;
    let site = json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": "FederationSite",
        "metadata": {"name": "hub", "namespace": "tenant-a"},
        "spec": {"siteId": "site-hub", "direction": "import",
                 "transport": {"s3": {"bucket": cluster.bucket.clone(), "prefix": "bundles/hub",
                               "endpoint": cluster.services.s3_endpoint.clone(), "forcePathStyle": true}},
                 "policy": {"requireSignature": false},
                 "serve": {"tokensSecret": {"name": "hub-tokens"}}}});
    cluster.apply(site.clone()).await;
    let serving = cluster
        .wait_for("the site reports its endpoint", SETTLE, || async {
            let site = cluster
                .get("FederationSite", Some("tenant-a"), "hub")
                .await?;
            site["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Serving" && c["status"] == "True")
                .cloned()
        })
        .await;
    let message = serving["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "http://tenant-a-hub-federation-api.{OPERATOR_NAMESPACE}.svc/api/v1/federation/import"
        )),
        "{message}"
    );
    let address = cluster
        .wait_for("the server's address", SETTLE, || async {
            super::observability::listen_address(
                &cluster,
                OPERATOR_NAMESPACE,
                "tenant-a-hub-federation-api",
            )
        })
        .await;
    let http = reqwest::Client::new();
    let status_url = format!("http://{address}/api/v1/federation/sync/status");
    let answered = cluster
        .wait_for("the server answers", SETTLE, || async {
            http.get(&status_url).send().await.ok()
        })
        .await;
    assert_eq!(answered.status(), 401, "no token, no answer");
    let with_token = http
        .get(&status_url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        with_token.status(),
        200,
        "the token from the tenant's Secret (copied to the platform namespace) works"
    );
    // Without `serve`, the Deployment and Service go.
    let mut without = site;
    without["spec"].as_object_mut().unwrap().remove("serve");
    // Applied again by the same field manager: the field it no longer sends goes.
    cluster.apply(without).await;
    cluster
        .wait_for("the federation API removed", SETTLE, || async {
            let left = cluster
                .emulator
                .objects("apps/v1", "Deployment")
                .into_iter()
                .chain(cluster.emulator.objects("v1", "Service"))
                .any(|o| o["metadata"]["name"] == "tenant-a-hub-federation-api");
            (!left).then_some(())
        })
        .await;
    cluster.stop().await;
}
