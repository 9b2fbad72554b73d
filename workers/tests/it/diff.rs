//! `stellaops-worker diff OLD NEW` through the real binary: two images sharing a base
//! layer, the later one upgrading a dpkg package, deleting an npm package (whiteout) and
//! adding one. Images never scanned are pulled and scanned; once both are stored, digests
//! alone diff without the registry.

use std::process::{Command, Output};

use serde_json::{Value, json};
use stellaops_testing::oci;

fn worker(database_url: &str, s3: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stellaops-worker"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("AWS_ENDPOINT_URL", s3)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run stellaops-worker")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn two_images_diff_by_package_with_the_layer_that_caused_each_change() {
    let Some(registry) = stellaops_testing::service("STELLAOPS_TEST_REGISTRY") else {
        return;
    };
    let Some(endpoint) = stellaops_testing::service("STELLAOPS_TEST_S3_ENDPOINT") else {
        return;
    };
    let Some(url) = stellaops_testing::fresh_database("scan_diff").await else {
        return;
    };
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    stellaops_store::MIGRATOR.run(&pool).await.unwrap();
    let s3 = stellaops_store::s3::client(&stellaops_store::s3::S3Settings {
        endpoint: Some(endpoint.clone()),
        region: None,
        force_path_style: true,
    })
    .await;
    let bucket = format!("scan-diff-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();

    let base = oci::tar_of(&[
        ("etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n"),
        ("var/lib/dpkg/status", b"Package: libssl3\nStatus: install ok installed\nSource: openssl\nVersion: 3.0.11-1~deb12u1\n\nPackage: libc6\nStatus: install ok installed\nSource: glibc\nVersion: 2.36-9+deb12u4\n"),
        ("app/node_modules/express/package.json", br#"{"name": "express", "version": "4.19.1"}"#),
        ("app/node_modules/left-pad/package.json", br#"{"name": "left-pad", "version": "1.3.0"}"#),
    ]);
    let patch = oci::tar_of(&[
        ("app/node_modules/.wh.left-pad", b""),
        ("app/node_modules/zod/package.json", br#"{"name": "zod", "version": "3.23.8"}"#),
        ("var/lib/dpkg/status", b"Package: libssl3\nStatus: install ok installed\nSource: openssl\nVersion: 3.0.11-1~deb12u2\n\nPackage: libc6\nStatus: install ok installed\nSource: glibc\nVersion: 2.36-9+deb12u4\n"),
    ]);
    let work = std::env::temp_dir().join(format!("stellaops-diff-{}", std::process::id()));
    let old_image = oci::write_layout(&work.join("old"), std::slice::from_ref(&base), "v1");
    oci::push(&work.join("old"), "v1", &registry, "stellaops-it/diff");
    let new_image = oci::write_layout(&work.join("new"), &[base, patch], "v2");
    oci::push(&work.join("new"), "v2", &registry, "stellaops-it/diff");
    std::fs::remove_dir_all(&work).unwrap();
    let patch_layer = new_image.layer_digests[1].clone();
    let base_layer = old_image.layer_digests[0].clone();

    // Neither image was scanned: both are pulled and scanned, then compared.
    let (old_ref, new_ref) = (
        format!("{registry}/stellaops-it/diff:v1"),
        format!("{registry}/stellaops-it/diff:v2"),
    );
    let out = ok(&worker(
        &url,
        &endpoint,
        &["diff", &old_ref, &new_ref, "--json", "--bucket", &bucket],
    ));
    let diff: Value = serde_json::from_str(&out).unwrap();
    let expected = json!({
        "old": old_image.manifest_digest, "new": new_image.manifest_digest,
        "added": [{"package": "pkg:npm/zod", "oldVersions": [], "newVersions": ["3.23.8"], "layer": patch_layer}],
        "removed": [{"package": "pkg:npm/left-pad", "oldVersions": ["1.3.0"], "newVersions": [], "layer": base_layer, "layerKept": true}],
        "changed": [{"package": "pkg:deb/debian/libssl3", "oldVersions": ["3.0.11-1~deb12u1"],
                     "newVersions": ["3.0.11-1~deb12u2"], "layer": patch_layer}],
    });
    assert_eq!(diff, expected);
    let scans: i64 = sqlx::query_scalar("SELECT count(*) FROM scan_results")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(scans, 2, "each image scanned once");

    // Both stored now: by digest alone (no registry to pull from), the same diff, no scan.
    let out = ok(&worker(
        &url,
        &endpoint,
        &[
            "diff",
            &old_image.manifest_digest,
            &new_image.manifest_digest,
            "--json",
        ],
    ));
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), expected);
    // By reference again: resolved, not rescanned.
    let text = ok(&worker(
        &url,
        &endpoint,
        &["diff", &old_ref, &new_ref, "--bucket", &bucket],
    ));
    let scans: i64 = sqlx::query_scalar("SELECT count(*) FROM scan_results")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(scans, 2, "known images are not scanned again");
    let short = |d: &str| format!("sha256:{}", &d["sha256:".len().."sha256:".len() + 12]);
    assert!(
        text.contains(&format!(
            "~ pkg:deb/debian/libssl3 3.0.11-1~deb12u1 → 3.0.11-1~deb12u2  (layer {})",
            short(&patch_layer)
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "- pkg:npm/left-pad 1.3.0  (was in layer {}, still in the new image: removed by a later layer)",
            short(&base_layer)
        )),
        "{text}"
    );
    assert!(text.ends_with("1 added, 1 removed, 1 changed\n"), "{text}");

    // A digest never scanned cannot be diffed without a reference to pull.
    let unknown = format!("sha256:{}", "0".repeat(64));
    let out = worker(
        &url,
        &endpoint,
        &["diff", &unknown, &new_image.manifest_digest],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("was never scanned"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
