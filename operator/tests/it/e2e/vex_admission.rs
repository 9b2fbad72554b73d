//! The webhook denying, then admitting once a `not_affected` statement lands (issue 20),
//! end to end: the real operator and worker against the API server emulator, and the real
//! `stellaops-worker vex ingest` run as an administrator runs it (outside the cluster, with
//! the platform database and the verdict signing key). A Scan under a ScanPolicy fails on
//! the advisory's finding; a ZastavaPolicy requiring a scan verdict under that ScanPolicy
//! denies a Pod running the image — although another Scan of it, with an inline policy,
//! recorded the image's latest result. Statements that must not count (a `not_affected` without
//! a justification, one from a provider the ScanPolicy weighs 0) change nothing; the
//! vendor's `not_affected` with an accepted justification re-evaluates the stored result
//! (the ingest does that itself: no pull, a new signed result for each Scan), and the same
//! AdmissionReview is admitted well within the webhook's 30 s cache, both Scans' statuses
//! following to Pass.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::operator_runs::{ingest_openssl_advisory, pod_review, push_image};
use super::{Cluster, workspace_binary};

const SETTLE: Duration = Duration::from_secs(120);
/// How soon after the first denial that read the Fail (and cached it for 30 s) the same
/// review must be admitted: only forgetting the verdict on the re-evaluation's event can.
const ADMITTED_WITHIN: Duration = Duration::from_secs(25);

/// An OpenVEX 0.2.0 document about CVE-2024-0001 in Debian's openssl of image `digest`.
fn openvex(id: &str, version: u32, digest: &str, statement: Value) -> Value {
    let mut statement = statement;
    statement["vulnerability"] = json!({"name": "CVE-2024-0001"});
    statement["products"] = json!([{
        "@id": format!("pkg:oci/vexed@{}", digest.replace(':', "%3A")),
        "subcomponents": [{"@id": "pkg:deb/debian/openssl"}],
    }]);
    json!({
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": id,
        "author": "e2e",
        "timestamp": format!("2026-01-0{version}T00:00:00Z"),
        "version": version,
        "statements": [statement],
    })
}

/// `stellaops-worker vex ingest --format openvex --provider PROVIDER FILE`, as the
/// administrator runs it: the workers' database role, the platform bucket and the verdict
/// signing key. Returns its standard output; panics when it fails.
fn vex_ingest(cluster: &Cluster, provider: &str, name: &str, document: &Value) -> String {
    let file: PathBuf = cluster.dir.join(format!("{name}.openvex.json"));
    std::fs::write(&file, serde_json::to_vec_pretty(document).unwrap()).unwrap();
    let out = Command::new(workspace_binary("stellaops-worker"))
        .args([
            "vex",
            "ingest",
            "--format",
            "openvex",
            "--provider",
            provider,
        ])
        .arg(&file)
        .arg("--verdict-signing-key")
        .arg(cluster.verdict_signing_key())
        .args(["--bucket", &cluster.bucket])
        .env("DATABASE_URL", &cluster.worker_database_url)
        .env("AWS_ENDPOINT_URL", &cluster.services.s3_endpoint)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run stellaops-worker vex ingest");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "vex ingest {name} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

/// The latest result recorded for the Scan `uid`: its id, verdict, and what decided its one
/// finding.
async fn latest(pool: &sqlx::PgPool, uid: &str) -> (i64, String, String) {
    sqlx::query_as(
        "SELECT r.id, r.verdict, coalesce(f.decided_by, '') FROM scan_results r
         JOIN scan_findings f ON f.scan_id = r.id
         WHERE r.scan_uid = $1 ORDER BY r.id DESC LIMIT 1",
    )
    .bind(uid)
    .fetch_one(pool)
    .await
    .unwrap()
}

fn message(answer: &Value) -> &str {
    answer["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_denies_then_admits_once_a_not_affected_statement_lands() {
    let Some(mut cluster) = Cluster::start("e2e_vex").await else {
        return;
    };
    let started = Instant::now();
    ingest_openssl_advisory(&cluster.database_url).await;
    let (image, digest) = push_image(&cluster, "e2e/vexed").await;
    cluster.start_operator("solo", &[]);
    // The consensus's trust: the community feed is kept but never counted; every
    // justification is accepted (a not_affected without one never counts).
    cluster
        .apply(json!({
            "apiVersion": "stella-ops.org/v1alpha1", "kind": "ScanPolicy",
            "metadata": {"name": "vex-trust"},
            "spec": {"failOn": "high",
                     "vex": {"providers": [{"name": "community", "weight": 0}]}}
        }))
        .await;
    cluster
        .apply(json!({
            "apiVersion": "stella-ops.org/v1alpha1", "kind": "Scan",
            "metadata": {"name": "vexed", "namespace": "tenant-a"},
            "spec": {"image": image, "policy": {"policyRef": {"name": "vex-trust"}}}
        }))
        .await;

    // 1. The Scan fails on the advisory's high finding, its verdict signed and recorded.
    let failed = cluster
        .wait_for("the Scan finishes", SETTLE, || async {
            let scan = cluster.get("Scan", Some("tenant-a"), "vexed").await?;
            matches!(
                scan["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            )
            .then_some(scan)
        })
        .await;
    assert_eq!(
        (&failed["status"]["phase"], &failed["status"]["verdict"]),
        (&json!("Succeeded"), &json!("Fail")),
        "{failed:#}\n{}",
        cluster.logs()
    );
    assert_eq!(failed["status"]["findings"]["high"], 1, "{failed:#}");
    assert_eq!(failed["status"]["imageDigest"], digest.as_str());
    let uid = failed["metadata"]["uid"].as_str().unwrap().to_string();
    let pool = sqlx::PgPool::connect(&cluster.database_url).await.unwrap();
    let (scanned, verdict, decided_by) = latest(&pool, &uid).await;
    assert_eq!(
        (verdict.as_str(), decided_by.as_str()),
        ("Fail", "threshold")
    );
    let (purl, attestation): (String, Option<String>) = sqlx::query_as(
        "SELECT f.purl, r.attestation_key FROM scan_findings f JOIN scan_results r ON r.id = f.scan_id
         WHERE r.id = $1",
    )
    .bind(scanned)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(purl.starts_with("pkg:deb/debian/openssl@"), "{purl}");
    assert!(attestation.is_some(), "the Fail is a signed verdict");
    // Another Scan of the same image with an inline policy, finished last: the image's
    // latest result is now this one (Warn: its failOn is critical), not the ScanPolicy's.
    cluster
        .apply(json!({
            "apiVersion": "stella-ops.org/v1alpha1", "kind": "Scan",
            "metadata": {"name": "vexed-inline", "namespace": "tenant-a"},
            "spec": {"image": image, "policy": {"failOn": "critical", "warnOn": "high"}}
        }))
        .await;
    let warned = cluster
        .wait_for("the inline Scan finishes", SETTLE, || async {
            let scan = cluster
                .get("Scan", Some("tenant-a"), "vexed-inline")
                .await?;
            matches!(
                scan["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            )
            .then_some(scan)
        })
        .await;
    assert_eq!(warned["status"]["verdict"], "Warn", "{warned:#}");
    let inline_uid = warned["metadata"]["uid"].as_str().unwrap().to_string();
    assert!(latest(&pool, &inline_uid).await.0 > scanned);

    // 2. Statements that must not count under the ScanPolicy, before the vendor's: a
    // not_affected with only an impact statement (no justification; counted under no
    // policy), and one from the provider the ScanPolicy weighs 0 (the inline policy has no
    // trust settings: there every provider weighs 1). Each is stored and re-evaluates the
    // image: its latest result under each policy, two.
    let vendor_v1 = openvex(
        "https://vendor.example/vex/openssl",
        1,
        &digest,
        json!({"status": "not_affected",
               "impact_statement": "we looked at it and it seems fine"}),
    );
    let out = vex_ingest(&cluster, "vendor", "vendor-v1", &vendor_v1);
    assert!(
        out.contains("stored, 1 statements")
            && out.contains(
                "re-evaluated 2 images: 0 with a changed verdict or counted findings, 0 events"
            ),
        "{out}"
    );
    let community = openvex(
        "https://community.example/vex/openssl",
        1,
        &digest,
        json!({"status": "not_affected",
               "justification": "vulnerable_code_not_in_execute_path"}),
    );
    let out = vex_ingest(&cluster, "community", "community", &community);
    assert!(
        out.contains(
            "re-evaluated 2 images: 1 with a changed verdict or counted findings, 1 events"
        ),
        "{out}"
    );
    let (reevaluated, verdict, decided_by) = latest(&pool, &uid).await;
    assert!(reevaluated > scanned, "re-evaluated for the Scan");
    assert_eq!(
        (verdict.as_str(), decided_by.as_str()),
        ("Fail", "threshold"),
        "under the ScanPolicy neither statement counts"
    );
    let (_, verdict, decided_by) = latest(&pool, &inline_uid).await;
    assert_eq!(
        (verdict.as_str(), decided_by.as_str()),
        ("Pass", "vex:community"),
        "under the inline policy the community counts"
    );

    // 3. Enforce: a Pod running the image by digest needs a verdict under the ScanPolicy
    // that is not Fail. Denied, naming the verdict (read fresh: nothing was cached before).
    cluster
        .apply(json!({
            "apiVersion": "stella-ops.org/v1alpha1", "kind": "ZastavaPolicy",
            "metadata": {"name": "scanned"},
            "spec": {"mode": "enforce", "images": ["**"], "failurePolicy": "Fail",
                     "policyRef": {"name": "vex-trust"},
                     "requireScan": {"maxAge": "24h", "denyOnVerdict": ["Fail"]}}
        }))
        .await;
    let webhook = cluster.webhook("scanned", SETTLE).await;
    let pinned = format!("{}@{digest}", image.strip_suffix(":v1").unwrap());
    let review = pod_review("vexed", &pinned);
    // Until the webhook has its certificate, the policy and the ScanPolicy's digest, it may
    // refuse or deny for another reason; the first denial naming the verdict is the first
    // to read it (and caches it for 30 s).
    let mut first_read = Instant::now();
    let denied = cluster
        .wait_for("a denial naming the Fail verdict", SETTLE, || {
            first_read = Instant::now();
            let (webhook, review) = (&webhook, &review);
            async move {
                let answer = webhook.review(review).await?;
                message(&answer)
                    .contains("has verdict Fail")
                    .then_some(answer)
            }
        })
        .await;
    assert_eq!(denied["response"]["allowed"], false, "{denied:#}");
    let text = message(&denied);
    assert!(
        text.contains(&format!("latest scan of {digest} has verdict Fail")),
        "{text}"
    );
    assert_eq!(denied["response"]["status"]["code"], 403, "{denied:#}");

    // 4. The vendor's next version: not_affected, with a justification the ScanPolicy
    // accepts. It supersedes version 1, the ingest re-evaluates the image, and the
    // ScanPolicy's verdict changes: a new signed Pass for its Scan and a rescan.delta naming
    // it (the inline Scan's result passes as before, now by both providers).
    let again = webhook.review(&review).await.expect("an answer");
    assert_eq!(
        again["response"]["allowed"], false,
        "still cached: {again:#}"
    );
    let vendor_v2 = openvex(
        "https://vendor.example/vex/openssl",
        2,
        &digest,
        json!({"status": "not_affected",
               "justification": "vulnerable_code_not_in_execute_path",
               "impact_statement": "the TLS renegotiation path is never reached"}),
    );
    let out = vex_ingest(&cluster, "vendor", "vendor-v2", &vendor_v2);
    assert!(
        out.contains("replaces version 1, 1 statements")
            && out.contains(
                "re-evaluated 2 images: 1 with a changed verdict or counted findings, 1 events"
            ),
        "{out}"
    );
    let landed = Instant::now();
    let (passed, verdict, decided_by) = latest(&pool, &uid).await;
    assert!(passed > reevaluated);
    assert_eq!(
        (verdict.as_str(), decided_by.as_str()),
        ("Pass", "vex:vendor")
    );
    let (policy_digest, attestation): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT policy_digest, attestation_key FROM scan_results WHERE id = $1")
            .bind(passed)
            .fetch_one(&pool)
            .await
            .unwrap();
    let scan_policy = cluster.get("ScanPolicy", None, "vex-trust").await.unwrap();
    assert_eq!(
        policy_digest.as_deref(),
        scan_policy["status"]["policyDigest"].as_str(),
        "decided under the ScanPolicy the webhook judges by"
    );
    assert!(attestation.is_some(), "the Pass is a signed verdict");
    let (_, verdict, decided_by) = latest(&pool, &inline_uid).await;
    assert_eq!(
        (verdict.as_str(), decided_by.as_str()),
        ("Pass", "vex:community,vendor")
    );
    let delta: Value = sqlx::query_scalar(
        "SELECT payload FROM events_outbox WHERE kind = 'rescan.delta'
         AND payload->'scan'->>'uid' = $1",
    )
    .bind(&uid)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (&delta["previousVerdict"], &delta["verdict"]),
        (&json!("Fail"), &json!("Pass")),
        "{delta:#}"
    );
    assert_eq!(
        delta["scan"],
        json!({"namespace": "tenant-a", "name": "vexed", "uid": uid})
    );

    // 5. The same review is admitted: the webhook forgot the cached Fail on the event.
    let admitted = cluster
        .wait_for("the same review admitted", ADMITTED_WITHIN, || async {
            let answer = webhook.review(&review).await?;
            (answer["response"]["allowed"] == true).then_some(answer)
        })
        .await;
    let waited = landed.elapsed();
    assert!(
        first_read.elapsed() < Duration::from_secs(30),
        "admitted {:?} after the Fail was first read: the cache may have expired by itself",
        first_read.elapsed()
    );
    assert_eq!(admitted["response"]["uid"], "vexed");
    eprintln!(
        "admitted {:.2}s after the statement landed ({:.1}s after the Fail was first read)",
        waited.as_secs_f64(),
        first_read.elapsed().as_secs_f64()
    );

    // 6. The Scan's status follows the re-evaluation (woken by the same event), with an
    // Event saying so.
    let passed_scan = cluster
        .wait_for("the Scan's status passes", SETTLE, || async {
            let scan = cluster.get("Scan", Some("tenant-a"), "vexed").await?;
            (scan["status"]["verdict"] == "Pass").then_some(scan)
        })
        .await;
    eprintln!(
        "the Scan's status followed {:.2}s after the statement landed",
        landed.elapsed().as_secs_f64()
    );
    assert_eq!(passed_scan["status"]["phase"], "Succeeded");
    assert_eq!(
        passed_scan["status"]["findings"]["high"], 0,
        "{passed_scan:#}"
    );
    assert_eq!(
        passed_scan["status"]["policyDigest"], scan_policy["status"]["policyDigest"],
        "{passed_scan:#}"
    );
    let ready = passed_scan["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert!(
        ready["status"] == "True"
            && ready["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("Pass: 0 critical, 0 high"),
        "{ready:#}"
    );
    let event = cluster
        .wait_for("a Reevaluated Event on the Scan", SETTLE, || async {
            cluster
                .emulator
                .objects("events.k8s.io/v1", "Event")
                .into_iter()
                .find(|e| e["reason"] == "Reevaluated" && e["regarding"]["name"] == "vexed")
        })
        .await;
    assert!(
        event["note"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Fail → Pass"),
        "{event:#}"
    );

    let inline = cluster
        .wait_for("the inline Scan's status passes", SETTLE, || async {
            let scan = cluster
                .get("Scan", Some("tenant-a"), "vexed-inline")
                .await?;
            (scan["status"]["verdict"] == "Pass").then_some(scan)
        })
        .await;
    assert_eq!(inline["status"]["findings"]["high"], 0, "{inline:#}");

    // 7. explain names the statements that decided the image's latest result (the inline
    // Scan's).
    let out = Command::new(workspace_binary("stellaops-worker"))
        .args(["explain", &digest])
        .env("DATABASE_URL", &cluster.worker_database_url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("verdict Pass"), "{text}");
    assert!(
        text.contains("Taken out (1):")
            && text.contains("CVE-2024-0001")
            && text.contains("vex:community,vendor: VEX consensus: not_affected"),
        "{text}"
    );

    pool.close().await;
    assert!(
        cluster.forbidden_operator_requests().is_empty(),
        "{:?}",
        cluster.forbidden_operator_requests()
    );
    eprintln!(
        "VEX admission end to end in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    cluster.stop().await;
}
