//! `mirror sync` against the real S3 server.

use aws_sdk_s3::primitives::ByteStream;
use stellaops_store::s3::{S3Settings, client};
use stellaops_workers::mirror::sync::{SyncCounts, sync};

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &[u8]) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap();
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            if entry.path().is_dir() {
                walk(root, &entry.path(), out);
            } else {
                out.push(
                    entry
                        .path()
                        .strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn copies_changes_only_deletes_extraneous_and_never_half_applies() {
    let Some(endpoint) = stellaops_testing::service("STELLAOPS_TEST_S3_ENDPOINT") else {
        return;
    };
    let s3 = client(&S3Settings {
        endpoint: Some(endpoint),
        region: None,
        force_path_style: true,
    })
    .await;
    let bucket = format!("mirror-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    put(
        &s3,
        &bucket,
        "concelier/latest/2025-01-15/mirror/index.json",
        b"{\"exportId\":\"2025-01-15\"}",
    )
    .await;
    put(
        &s3,
        &bucket,
        "concelier/latest/2025-01-15/mirror/primary/manifest.json",
        b"{}",
    )
    .await;
    put(
        &s3,
        &bucket,
        "concelier/latest/2025-01-15/mirror/primary/bundle.json",
        &vec![b'x'; 300_000],
    )
    .await;
    put(&s3, &bucket, "other/ignored.json", b"{}").await;
    let dir = std::env::temp_dir().join(format!("stellaops-mirror-sync-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    let first = sync(&s3, &bucket, "concelier/latest", &dir, true, 4)
        .await
        .unwrap();
    assert_eq!(
        first,
        SyncCounts {
            copied: 3,
            deleted: 0,
            bytes: 300_000 + 2 + 25,
            unchanged: 0
        }
    );
    assert_eq!(
        files(&dir),
        vec![
            "2025-01-15/mirror/index.json",
            "2025-01-15/mirror/primary/bundle.json",
            "2025-01-15/mirror/primary/manifest.json",
        ]
    );

    // Nothing changed: nothing is transferred.
    let again = sync(&s3, &bucket, "concelier/latest/", &dir, true, 4)
        .await
        .unwrap();
    assert_eq!(
        again,
        SyncCounts {
            copied: 0,
            deleted: 0,
            bytes: 0,
            unchanged: 3
        }
    );

    // Size-only comparison: a new size is copied; an extraneous local file is deleted
    // with --delete and kept without it; a stale temporary file is cleaned up.
    put(
        &s3,
        &bucket,
        "concelier/latest/2025-01-15/mirror/primary/manifest.json",
        b"{\"v\":2}",
    )
    .await;
    std::fs::write(dir.join("2025-01-15/mirror/old.json"), b"{}").unwrap();
    std::fs::write(dir.join("2025-01-15/mirror/.index.json.partial"), b"half").unwrap();
    let keep = sync(&s3, &bucket, "concelier/latest", &dir, false, 4)
        .await
        .unwrap();
    assert_eq!((keep.copied, keep.deleted), (1, 0));
    assert!(dir.join("2025-01-15/mirror/old.json").exists());
    assert!(!dir.join("2025-01-15/mirror/.index.json.partial").exists());
    let pruned = sync(&s3, &bucket, "concelier/latest", &dir, true, 4)
        .await
        .unwrap();
    assert_eq!((pruned.copied, pruned.deleted), (0, 1));
    assert_eq!(
        std::fs::read(dir.join("2025-01-15/mirror/primary/manifest.json")).unwrap(),
        b"{\"v\":2}"
    );

    // A failing sync (unreachable bucket) changes nothing locally.
    let before = files(&dir);
    assert!(
        sync(
            &s3,
            "no-such-bucket-anywhere",
            "concelier/latest",
            &dir,
            true,
            4
        )
        .await
        .is_err()
    );
    assert_eq!(files(&dir), before);

    std::fs::remove_dir_all(&dir).unwrap();
}

/// A sync killed while downloading leaves no partially written file under a served name,
/// keeps the previous files, and the next run completes (and drops the leftovers).
#[tokio::test]
async fn an_interrupted_sync_never_exposes_a_partial_file() {
    let Some(endpoint) = stellaops_testing::service("STELLAOPS_TEST_S3_ENDPOINT") else {
        return;
    };
    let s3 = client(&S3Settings {
        endpoint: Some(endpoint.clone()),
        region: None,
        force_path_style: true,
    })
    .await;
    let bucket = format!("mirror-kill-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let big = vec![7u8; 48 << 20];
    for i in 0..4 {
        put(
            &s3,
            &bucket,
            &format!("exports/2025-01-16/mirror/primary/bundle-{i}.json"),
            &big,
        )
        .await;
    }
    let dir = std::env::temp_dir().join(format!("stellaops-mirror-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("2025-01-15/mirror")).unwrap();
    std::fs::write(
        dir.join("2025-01-15/mirror/index.json"),
        b"{\"previous\":true}",
    )
    .unwrap();

    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_stellaops-worker"))
            .args([
                "mirror",
                "sync",
                "--bucket",
                &bucket,
                "--prefix",
                "exports",
                "--directory",
                dir.to_str().unwrap(),
                "--concurrency",
                "2",
                "--s3-endpoint",
                &endpoint,
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = run();
    // Kill it as soon as a download is under way.
    let mut saw_partial = false;
    for _ in 0..5_000 {
        if files(&dir).iter().any(|f| f.ends_with(".partial")) {
            saw_partial = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        saw_partial,
        "the sync finished before it could be interrupted"
    );
    let after_kill = files(&dir);
    for file in &after_kill {
        if file.ends_with(".json") && file.contains("bundle-") {
            let len = std::fs::metadata(dir.join(file)).unwrap().len();
            assert_eq!(len, big.len() as u64, "{file} is served but incomplete");
        }
    }
    assert!(
        after_kill.contains(&"2025-01-15/mirror/index.json".to_string()),
        "the previous export is still there"
    );

    let out = run().wait_with_output().unwrap();
    assert!(out.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["success"], true);
    let files = files(&dir);
    assert!(!files.iter().any(|f| f.ends_with(".partial")), "{files:?}");
    assert_eq!(files.iter().filter(|f| f.contains("bundle-")).count(), 4);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A corrupt object (its stored bytes no longer match the checksum recorded at upload)
/// fails the sync: it is not served, nothing is deleted, no partial file is left.
#[tokio::test]
async fn a_corrupt_object_fails_the_sync_and_changes_nothing() {
    let Some(endpoint) = stellaops_testing::service("STELLAOPS_TEST_S3_ENDPOINT") else {
        return;
    };
    let Some(data_dir) = stellaops_testing::service("STELLAOPS_TEST_S3_DATA_DIR") else {
        return;
    };
    let s3 = client(&S3Settings {
        endpoint: Some(endpoint),
        region: None,
        force_path_style: true,
    })
    .await;
    let bucket = format!("mirror-corrupt-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    put(
        &s3,
        &bucket,
        "exports/2025-01-17/mirror/index.json",
        b"{\"exportId\":\"2025-01-17\"}",
    )
    .await;
    put(
        &s3,
        &bucket,
        "exports/2025-01-17/mirror/primary/bundle.json",
        b"{\"advisories\":[1,2,3]}",
    )
    .await;
    let dir = std::env::temp_dir().join(format!("stellaops-mirror-corrupt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("2025-01-16/mirror")).unwrap();
    std::fs::write(
        dir.join("2025-01-16/mirror/index.json"),
        b"{\"previous\":true}",
    )
    .unwrap();

    // Flip one byte of the stored bundle, keeping its size.
    let stored = std::path::Path::new(&data_dir)
        .join(&bucket)
        .join("exports/2025-01-17/mirror/primary/bundle.json");
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[15] ^= 0x01;
    std::fs::write(&stored, bytes).unwrap();

    let error = sync(&s3, &bucket, "exports", &dir, true, 4)
        .await
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("nothing was deleted"),
        "{error:#}"
    );
    let left = files(&dir);
    assert!(
        left.contains(&"2025-01-16/mirror/index.json".to_string()),
        "the previous export is kept: {left:?}"
    );
    assert!(
        !left
            .iter()
            .any(|f| f.ends_with("bundle.json") || f.ends_with(".partial")),
        "{left:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_sync_reports_whether_the_served_export_signatures_verify() {
    use p256::pkcs8::DecodePrivateKey;
    use stellaops_workers::mirror::{jws, sync::check_signatures};
    let dir = std::env::temp_dir().join(format!("stellaops-sync-sig-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (private_pem, public_pem) = stellaops_federation::dsse::generate_key_pair();
    let signer = p256::ecdsa::SigningKey::from_pkcs8_pem(&private_pem).unwrap();
    for domain in ["primary", "secondary"] {
        let d = dir.join("2025-03-01/mirror").join(domain);
        std::fs::create_dir_all(&d).unwrap();
        let body = format!("{{\"domain\":\"{domain}\"}}");
        std::fs::write(d.join("bundle.json"), &body).unwrap();
        std::fs::write(
            d.join("bundle.json.jws"),
            jws::sign_detached(&signer, "k1", body.as_bytes()),
        )
        .unwrap();
    }
    let key = dir.join("key.pub");
    std::fs::write(&key, public_pem).unwrap();
    let export = dir.join("2025-03-01");
    assert_eq!(
        check_signatures(&export, &key).unwrap(),
        vec!["primary", "secondary"]
    );
    std::fs::write(
        export.join("mirror/secondary/bundle.json"),
        "{\"domain\":\"evil\"}",
    )
    .unwrap();
    let error = check_signatures(&export, &key).unwrap_err();
    assert!(
        error.starts_with("domain secondary: the signature does not match"),
        "{error}"
    );
    std::fs::remove_file(export.join("mirror/primary/bundle.json.jws")).unwrap();
    assert_eq!(
        check_signatures(&export, &key).unwrap_err(),
        "domain primary: bundle.json.jws is missing"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
