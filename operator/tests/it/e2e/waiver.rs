//! A waiver's expiry end to end: the real operator and worker against the API server
//! emulator. A ScanPolicy waives the Scan's only failing finding until a few seconds ahead;
//! the Scan passes, and once `until` has passed the ScanPolicy controller's re-evaluation
//! Job runs by itself and the Scan's status goes back to Fail, nobody touching anything.

use std::time::{Duration, Instant};

use serde_json::json;

use super::Cluster;
use super::operator_runs::{ingest_openssl_advisory, push_image};

/// Long enough for the policy to be Ready and the Scan's Job to pull, scan and record.
const WAIVED_FOR: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waived_scan_passes_then_fails_again_by_itself_when_the_waiver_expires() {
    let Some(mut cluster) = Cluster::start("e2e_waiver").await else {
        return;
    };
    ingest_openssl_advisory(&cluster.database_url).await;
    let (image, _) = push_image(&cluster, "e2e/waived").await;
    cluster.start_operator("solo", &[]);
    let started = Instant::now();
    let until = jiff::Timestamp::now() + WAIVED_FOR;
    let until_text = until.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    cluster
        .apply(json!({
            "apiVersion": "stella-ops.org/v1alpha1", "kind": "ScanPolicy",
            "metadata": {"name": "waiver"},
            "spec": {"failOn": "high", "rules": [{
                "name": "waive-openssl", "match": {"vulnerabilities": ["CVE-2024-0001"]},
                "action": "ignore", "until": until_text,
                "justification": "not reachable in this image (e2e)"}]}
        }))
        .await;
    cluster
        .apply(json!({
            "apiVersion": "stella-ops.org/v1alpha1", "kind": "Scan",
            "metadata": {"name": "waived", "namespace": "tenant-a"},
            "spec": {"image": image, "policy": {"policyRef": {"name": "waiver"}}}
        }))
        .await;

    // The high finding is waived: Pass, decided by the rule.
    let passed = cluster
        .wait_for("the Scan passes under the waiver", WAIVED_FOR, || async {
            let scan = cluster.get("Scan", Some("tenant-a"), "waived").await?;
            (scan["status"]["phase"] == "Succeeded").then_some(scan)
        })
        .await;
    assert_eq!(
        passed["status"]["verdict"],
        "Pass",
        "{passed:#}\n{}",
        cluster.logs()
    );
    assert!(
        jiff::Timestamp::now() < until,
        "the Scan finished after the waiver expired: the test says nothing"
    );
    let policy = cluster.get("ScanPolicy", None, "waiver").await.unwrap();
    assert_eq!(
        policy["status"]["nextExpiry"].as_str(),
        Some(until_text.as_str()),
        "{policy:#}"
    );

    // Nothing is touched. After `until` the controller's Job re-evaluates and the Scan fails.
    let failed = cluster
        .wait_for(
            "the Scan fails again after the waiver expired",
            WAIVED_FOR + Duration::from_secs(20),
            || async {
                let scan = cluster.get("Scan", Some("tenant-a"), "waived").await?;
                (scan["status"]["verdict"] == "Fail").then_some(scan)
            },
        )
        .await;
    assert!(
        jiff::Timestamp::now() >= until,
        "failed before the waiver expired: {failed:#}"
    );
    assert_eq!(failed["status"]["phase"], "Succeeded");
    assert_eq!(failed["status"]["findings"]["high"], 1, "{failed:#}");
    let policy = cluster.get("ScanPolicy", None, "waiver").await.unwrap();
    assert_eq!(
        policy["status"]["lastReevaluation"]["reason"], "WaiverExpired",
        "{policy:#}"
    );
    let job = policy["status"]["lastReevaluation"]["job"]
        .as_str()
        .unwrap()
        .to_string();
    // The re-evaluation ran as the real worker, without pulling the image.
    let runs = cluster.runner.as_ref().unwrap().started();
    let evaluate = runs
        .iter()
        .find(|p| p.pod.starts_with(&job))
        .unwrap_or_else(|| panic!("no worker ran for Job {job}: {runs:?}"));
    assert!(
        evaluate.argv.iter().any(|a| a == "evaluate")
            && evaluate.argv.iter().any(|a| a == "waiver"),
        "{:?}",
        evaluate.argv
    );
    eprintln!(
        "waiver expiry end to end in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    cluster.stop().await;
}
