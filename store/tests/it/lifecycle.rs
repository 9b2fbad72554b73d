//! Artifact lifecycle against the real S3 server (which, like many self-hosted stores,
//! has no bucket lifecycle API) and the real PostgreSQL.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::primitives::ByteStream;
use stellaops_store::lifecycle::{self, Bounds, Retention};
use stellaops_store::s3::{S3Settings, client};

const DAY: Duration = Duration::from_secs(24 * 3600);

async fn keys(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let mut keys: Vec<String> = s3
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .expect("list")
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    keys.sort();
    keys
}

async fn result_row(pool: &sqlx::PgPool, digest: &str, uri: &str, finished_days_ago: i32) {
    sqlx::query(
        "INSERT INTO scan_results (image_digest, image_ref, advisory_snapshot, sbom_uri,
             sbom_sha256, components, verdict, started_at, finished_at)
         VALUES ($1, 'registry.example/app', 1, $2, 'sha256:00', 1, 'Pass',
             now() - make_interval(days => $3), now() - make_interval(days => $3))",
    )
    .bind(digest)
    .bind(uri)
    .bind(finished_days_ago)
    .execute(pool)
    .await
    .expect("insert a result");
}

/// A client of the test S3 server with a fresh bucket, and a migrated database; `None`
/// (skip) outside CI without the services.
async fn fixture(
    database: &str,
    bucket: &str,
) -> Option<(aws_sdk_s3::Client, String, sqlx::PgPool)> {
    let endpoint = stellaops_testing::service("STELLAOPS_TEST_S3_ENDPOINT")?;
    let pool = stellaops_testing::migrated_database(database, &stellaops_store::MIGRATOR).await?;
    let s3 = client(&S3Settings {
        endpoint: Some(endpoint),
        region: None,
        force_path_style: true,
    })
    .await;
    let bucket = format!("{bucket}-{}", std::process::id());
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    Some((s3, bucket, pool))
}

#[tokio::test]
async fn expired_artifacts_go_and_current_results_and_compliance_artifacts_stay() {
    let Some((s3, bucket, pool)) = fixture("store_lifecycle", "lifecycle").await else {
        return;
    };
    let (a, b) = ("aa".repeat(32), "bb".repeat(32));
    let objects = [
        format!("scanner/images/{a}/inventory.cdx.json"),
        format!("scanner/images/{a}/inventory.spdx.json"),
        format!("scanner/images/{b}/old.cdx.json"),
        format!("scanner/images/{b}/old.spdx.json"),
        format!("scanner/images/{b}/new.cdx.json"),
        format!("scanner/layers/{a}/sbom.cdx.json.zst"),
        // (Shortened: the test server cannot store a 129-character path segment.)
        "scanner/diffs/aaaa_bbbb/diff.json.zst".to_string(),
        format!("attest/{a}.dsse.json"),
        "concelier/json/2026-01-01/index.json".to_string(),
    ];
    for key in &objects {
        s3.put_object()
            .bucket(&bucket)
            .key(key)
            .body(ByteStream::from(vec![b'x'; 100]))
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
    }
    // Image a: one current result. Image b: an old result superseded by a newer one.
    let uri = |key: &str| format!("s3://{bucket}/{key}");
    result_row(&pool, &format!("sha256:{a}"), &uri(&objects[0]), 1).await;
    result_row(&pool, &format!("sha256:{b}"), &uri(&objects[2]), 3).await;
    result_row(&pool, &format!("sha256:{b}"), &uri(&objects[4]), 2).await;

    let retention = Retention::days(14, 180);
    let now = SystemTime::now();

    // Nothing has expired yet.
    let pass = lifecycle::run_pass(&s3, &bucket, &pool, &retention, Bounds::default(), now)
        .await
        .expect("a pass");
    assert!(
        !pass.bucket_rule,
        "this store has no lifecycle API: {pass:?}"
    );
    assert!(pass.bucket_rule_unsupported.is_some());
    assert_eq!((pass.deleted_short, pass.deleted_default), (0, 0));
    assert_eq!(keys(&s3, &bucket).await.len(), objects.len());

    // Fifteen days on: the working artifact is past its class's age, nothing else is.
    let pass = lifecycle::run_pass(
        &s3,
        &bucket,
        &pool,
        &retention,
        Bounds::default(),
        now + 15 * DAY,
    )
    .await
    .expect("a pass");
    assert_eq!(
        (pass.deleted_short, pass.deleted_default),
        (1, 0),
        "{pass:?}"
    );
    assert!(!keys(&s3, &bucket).await.contains(&objects[6]));

    // Half a year on: unpinned SBOMs and fragments go; the current results' SBOMs (both
    // formats), the signed verdict and what is not classified stay.
    let pass = lifecycle::run_pass(
        &s3,
        &bucket,
        &pool,
        &retention,
        Bounds::default(),
        now + 181 * DAY,
    )
    .await
    .expect("a pass");
    assert_eq!(pass.deleted_default, 3, "{pass:?}");
    assert_eq!(pass.pinned, 3, "{pass:?}");
    assert_eq!(pass.bytes_deleted, 300);
    let mut kept = vec![
        objects[0].clone(),
        objects[1].clone(),
        objects[4].clone(),
        objects[7].clone(),
        objects[8].clone(),
    ];
    kept.sort();
    assert_eq!(keys(&s3, &bucket).await, kept);
    assert_eq!(
        lifecycle::compliance_at_risk(&pool).await.expect("read"),
        None
    );
}

#[tokio::test]
async fn a_pass_stops_at_its_bound_and_the_next_one_continues() {
    let Some((s3, bucket, pool)) = fixture("store_lifecycle_bound", "lifecycle-bound").await else {
        return;
    };
    for i in 0..5 {
        s3.put_object()
            .bucket(&bucket)
            .key(format!("scanner/layers/{i:064}/sbom.cdx.json.zst"))
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .expect("put");
    }
    let later = SystemTime::now() + 365 * DAY;
    let bounds = Bounds {
        max_listed: 1000,
        max_deleted: 3,
    };
    let retention = Retention::default();
    let first = lifecycle::run_pass(&s3, &bucket, &pool, &retention, bounds, later)
        .await
        .expect("a pass");
    assert_eq!(first.deleted_default, 3);
    assert!(first.truncated);
    let second = lifecycle::run_pass(&s3, &bucket, &pool, &retention, bounds, later)
        .await
        .expect("a pass");
    assert_eq!(second.deleted_default, 2);
    assert!(!second.truncated);
    assert!(keys(&s3, &bucket).await.is_empty());
}
