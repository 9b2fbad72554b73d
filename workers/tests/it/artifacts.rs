//! `stellaops-worker artifacts lifecycle` through the real binary, S3 server and database.

use std::process::Command;

use aws_sdk_s3::primitives::ByteStream;
use serde_json::Value;

#[tokio::test]
async fn the_lifecycle_pass_deletes_expired_fragments_and_keeps_signed_verdicts() {
    let Some(endpoint) = stellaops_testing::service("STELLAOPS_TEST_S3_ENDPOINT") else {
        return;
    };
    let Some(database_url) = stellaops_testing::fresh_database("workers_artifacts").await else {
        return;
    };
    // Migrated here: workers never run DDL themselves.
    let pool = stellaops_store::connect(&database_url)
        .await
        .expect("connect");
    stellaops_store::migrate(&pool).await.expect("migrate");
    let s3 = stellaops_store::s3::client(&stellaops_store::s3::S3Settings {
        endpoint: Some(endpoint.clone()),
        region: None,
        force_path_style: true,
    })
    .await;
    let bucket = format!("artifacts-cli-{}", std::process::id());
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket");
    let fragment = format!("scanner/layers/{}/sbom.cdx.json.zst", "cd".repeat(32));
    let verdict = format!("attest/{}.dsse.json", "cd".repeat(32));
    for key in [&fragment, &verdict] {
        s3.put_object()
            .bucket(&bucket)
            .key(key)
            .body(ByteStream::from_static(b"{}"))
            .send()
            .await
            .expect("put");
    }
    // Retention of zero days: everything written before the pass has expired.
    let out = Command::new(env!("CARGO_BIN_EXE_stellaops-worker"))
        .args(["artifacts", "lifecycle", "--bucket", &bucket])
        .args(["--short-days", "0", "--default-days", "0"])
        .env("DATABASE_URL", &database_url)
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run stellaops-worker");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pass: Value = serde_json::from_slice(&out.stdout).expect("the pass as JSON");
    assert_eq!(pass["deletedDefault"], 1, "{pass}");
    assert_eq!(pass["bucketRule"], false, "{pass}");
    let left: Vec<String> = s3
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .expect("list")
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    assert_eq!(left, vec![verdict]);
    assert_eq!(
        stellaops_store::lifecycle::compliance_at_risk(&pool)
            .await
            .expect("the pass was recorded"),
        None
    );
}
