//! What the reports API reads: result ids as resourceVersions.

use std::time::Duration;

use serde_json::json;
use stellaops_store::reports;
use stellaops_store::scans::{self, NewResult, Reevaluated};

fn scanned<'a>(digest: &'a str, name: &'a str) -> NewResult<'a> {
    NewResult {
        image_digest: digest,
        image_ref: "registry.test/app:1.0",
        advisory_snapshot: 1,
        scan_namespace: Some("tenant-a"),
        scan_name: Some(name),
        scan_uid: None,
        sbom_uri: "s3://bucket/scanner/sboms/x.cdx.json",
        sbom_sha256: "sha256:x",
        components: 1,
        counts: [0, 1, 0, 0],
        verdict: "Fail",
        policy: json!({}),
        policy_digest: None,
        started_at: chrono::Utc::now(),
        attestation: None,
    }
}

fn reevaluated<'a>(digest: &'a str, name: &str) -> Reevaluated<'a> {
    Reevaluated {
        image_digest: digest,
        image_ref: "registry.test/app:1.0",
        scan_namespace: Some("tenant-a"),
        scan_name: Some(name.to_string()),
        scan_uid: None,
        sbom_uri: "s3://bucket/scanner/sboms/x.cdx.json",
        sbom_sha256: "sha256:x",
        components: 1,
        counts: [0, 0, 0, 0],
        verdict: "Pass",
        policy: json!({}),
        policy_digest: "sha256:p",
        attestation_key: None,
        attestation: None,
    }
}

/// A LIST's resourceVersion is the newest result id it saw and a WATCH sends the results
/// above it, so a result must never become visible below an id already read. Here a scan
/// worker's transaction has drawn its id and not committed when a re-evaluation writes
/// two results: the re-evaluation waits for it (so its ids come after and it commits
/// after), a version read meanwhile is below both writers' ids, and reading on from that
/// version finds all three results, in id order. Without the lock the re-evaluation would
/// commit ids above the open transaction's at once, the version read would be its last id,
/// and the scan's result, committed later below it, would be found by neither.
#[tokio::test]
async fn result_ids_commit_in_order_so_reading_on_from_a_version_misses_nothing() {
    let Some(pool) =
        stellaops_testing::migrated_database("store_result_order", &stellaops_store::MIGRATOR)
            .await
    else {
        return;
    };
    let digest = format!("sha256:{}", "ab".repeat(32));
    let mut scan = pool.begin().await.unwrap();
    let scanned_id = scans::insert_result(&mut scan, &scanned(&digest, "first"), &[], &[])
        .await
        .unwrap();
    let writer = {
        let (pool, digest) = (pool.clone(), digest.clone());
        tokio::spawn(async move {
            let mut tx = pool.begin().await.unwrap();
            let rows = [
                reevaluated(&digest, "second"),
                reevaluated(&digest, "third"),
            ];
            let ids = scans::insert_reevaluated(&mut tx, 1, &rows).await.unwrap();
            tx.commit().await.unwrap();
            let mut ids: Vec<i64> = ids.into_iter().map(|(_, _, id)| id).collect();
            ids.sort_unstable();
            ids
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !writer.is_finished(),
        "the second writer waits for the first to end"
    );
    let version = reports::current_version(&pool).await.unwrap();
    assert!(
        version < scanned_id,
        "version {version} read while {scanned_id} is open"
    );
    scan.commit().await.unwrap();
    let reevaluated_ids = tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .expect("the second writer goes on once the first committed")
        .unwrap();
    assert!(reevaluated_ids.iter().all(|id| *id > scanned_id));
    let read_on: Vec<i64> = reports::results_after(&pool, version, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.row.id)
        .collect();
    let mut expected = vec![scanned_id];
    expected.extend(&reevaluated_ids);
    assert_eq!(read_on, expected);
    assert_eq!(
        reports::current_version(&pool).await.unwrap(),
        *expected.last().unwrap()
    );

    // A writer that rolls back lets the next one go on and leaves a gap, nothing else.
    let mut aborted = pool.begin().await.unwrap();
    let gap = scans::insert_result(&mut aborted, &scanned(&digest, "gone"), &[], &[])
        .await
        .unwrap();
    let next = {
        let (pool, digest) = (pool.clone(), digest.clone());
        tokio::spawn(async move {
            let mut tx = pool.begin().await.unwrap();
            let id = scans::insert_result(&mut tx, &scanned(&digest, "after"), &[], &[])
                .await
                .unwrap();
            tx.commit().await.unwrap();
            id
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!next.is_finished(), "waits for the open writer");
    aborted.rollback().await.unwrap();
    let after = tokio::time::timeout(Duration::from_secs(10), next)
        .await
        .expect("goes on after the rollback")
        .unwrap();
    assert!(after > gap);
    let newer = reports::results_after(&pool, *expected.last().unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(
        newer.iter().map(|r| r.row.id).collect::<Vec<_>>(),
        vec![after]
    );
}

/// A result is reused only by the analyzer whose inventory it judged: a re-evaluation
/// judges the digest's stored inventory, so its rows carry the analyzer of the digest's
/// latest result; once those are an older analyzer's (an upgrade that reads more), nothing
/// of that digest is reused at the same advisory snapshot, so the image is scanned again.
#[tokio::test]
async fn a_result_is_reused_only_by_the_analyzer_whose_inventory_it_judged() {
    let Some(pool) =
        stellaops_testing::migrated_database("store_reuse_analyzer", &stellaops_store::MIGRATOR)
            .await
    else {
        return;
    };
    let digest = format!("sha256:{}", "cd".repeat(32));
    let mut tx = pool.begin().await.unwrap();
    let scanned_id = scans::insert_result(&mut tx, &scanned(&digest, "scan"), &[], &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let reusable = |pool: sqlx::PgPool, digest: String| async move {
        scans::reusable(&pool, &digest, 1)
            .await
            .unwrap()
            .map(|r| r.id)
    };
    assert_eq!(
        reusable(pool.clone(), digest.clone()).await,
        Some(scanned_id)
    );
    let reevaluate = |pool: sqlx::PgPool, digest: String| async move {
        let mut tx = pool.begin().await.unwrap();
        let ids = scans::insert_reevaluated(&mut tx, 1, &[reevaluated(&digest, "re")])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        ids[0].2
    };
    let reevaluated_id = reevaluate(pool.clone(), digest.clone()).await;
    assert_eq!(
        reusable(pool.clone(), digest.clone()).await,
        Some(reevaluated_id)
    );
    // The rows as an older analyzer left them.
    sqlx::query("UPDATE scan_results SET analyzer = analyzer - 1 WHERE image_digest = $1")
        .bind(&digest)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(reusable(pool.clone(), digest.clone()).await, None);
    // A re-evaluation of that inventory is that analyzer's too: still nothing to reuse.
    reevaluate(pool.clone(), digest.clone()).await;
    assert_eq!(reusable(pool.clone(), digest.clone()).await, None);
}
