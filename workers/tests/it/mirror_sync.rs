//! `mirror sync` against the real S3 server.

use aws_sdk_s3::primitives::ByteStream;
use std::sync::Arc;
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
        // Tolerant: a sync running alongside renames directories.
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
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
    // What is served: the snapshot `.current` points to.
    let served = dir.join(".current");

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
        files(&served),
        vec![
            "2025-01-15/mirror/index.json",
            "2025-01-15/mirror/primary/bundle.json",
            "2025-01-15/mirror/primary/manifest.json",
        ]
    );
    let first_snapshot = std::fs::read_link(&served).unwrap();

    // Nothing changed: nothing is transferred and the served snapshot stays.
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
    assert_eq!(std::fs::read_link(&served).unwrap(), first_snapshot);

    // Size-only comparison: a new size is copied into a new snapshot, the unchanged files
    // are carried over as hard links (no second copy of the bytes); an extraneous file is
    // dropped with --delete and kept without it; a leftover staging directory is removed.
    put(
        &s3,
        &bucket,
        "concelier/latest/2025-01-15/mirror/primary/manifest.json",
        b"{\"v\":2}",
    )
    .await;
    std::fs::write(served.join("2025-01-15/mirror/old.json"), b"{}").unwrap();
    std::fs::create_dir_all(dir.join(".staging-killed/2025-01-15")).unwrap();
    let keep = sync(&s3, &bucket, "concelier/latest", &dir, false, 4)
        .await
        .unwrap();
    assert_eq!((keep.copied, keep.deleted), (1, 0));
    assert_ne!(std::fs::read_link(&served).unwrap(), first_snapshot);
    assert!(served.join("2025-01-15/mirror/old.json").exists());
    assert!(!dir.join(".staging-killed").exists());
    {
        use std::os::unix::fs::MetadataExt;
        let bundle = served.join("2025-01-15/mirror/primary/bundle.json");
        let before = dir
            .join(&first_snapshot)
            .join("2025-01-15/mirror/primary/bundle.json");
        assert_eq!(
            std::fs::metadata(&bundle).unwrap().ino(),
            std::fs::metadata(&before).unwrap().ino(),
            "an unchanged file is linked, not copied"
        );
    }
    let pruned = sync(&s3, &bucket, "concelier/latest", &dir, true, 4)
        .await
        .unwrap();
    assert_eq!((pruned.copied, pruned.deleted), (0, 1));
    assert!(!served.join("2025-01-15/mirror/old.json").exists());
    assert_eq!(
        std::fs::read(served.join("2025-01-15/mirror/primary/manifest.json")).unwrap(),
        b"{\"v\":2}"
    );
    // The snapshot just replaced is kept for requests still reading it; older ones go.
    let snapshots = std::fs::read_dir(dir.join(".snapshots")).unwrap().count();
    assert_eq!(snapshots, 2);
    assert!(!dir.join(&first_snapshot).exists());

    // A failing sync (unreachable bucket) changes nothing locally.
    let before = files(&dir);
    let link = std::fs::read_link(&served).unwrap();
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
    assert_eq!(std::fs::read_link(&served).unwrap(), link);

    std::fs::remove_dir_all(&dir).unwrap();
}

/// The files of one signed export of domain `primary`: (key under the prefix, bytes).
fn signed_export(
    signer: &p256::ecdsa::SigningKey,
    id: &str,
    bundle: Vec<u8>,
) -> Vec<(String, Vec<u8>)> {
    let jws = stellaops_workers::mirror::jws::sign_detached(signer, "k1", &bundle);
    vec![
        (
            format!("{id}/mirror/index.json"),
            format!("{{\"exportId\":\"{id}\",\"domains\":[\"primary\"]}}").into_bytes(),
        ),
        (
            format!("{id}/mirror/primary/manifest.json"),
            format!("{{\"exportId\":\"{id}\",\"bundleBytes\":{}}}", bundle.len()).into_bytes(),
        ),
        (format!("{id}/mirror/primary/bundle.json"), bundle),
        (
            format!("{id}/mirror/primary/bundle.json.jws"),
            jws.into_bytes(),
        ),
    ]
}

/// What the server answers for the four files of domain `primary`: URL path → bytes.
async fn served_files(
    http: &reqwest::Client,
    base: &str,
) -> Vec<(&'static str, reqwest::StatusCode, Vec<u8>)> {
    let mut out = Vec::new();
    for (path, _) in SERVED {
        let response = http.get(format!("{base}{path}")).send().await.unwrap();
        let status = response.status();
        out.push((path, status, response.bytes().await.unwrap().to_vec()));
    }
    out
}

/// URL path → file of the export.
const SERVED: [(&str, &str); 4] = [
    ("/concelier/exports/index.json", "mirror/index.json"),
    (
        "/concelier/exports/mirror/primary/manifest.json",
        "mirror/primary/manifest.json",
    ),
    (
        "/concelier/exports/mirror/primary/bundle.json",
        "mirror/primary/bundle.json",
    ),
    (
        "/concelier/exports/mirror/primary/bundle.json.jws",
        "mirror/primary/bundle.json.jws",
    ),
];

fn expect_export(
    answers: &[(&'static str, reqwest::StatusCode, Vec<u8>)],
    export: &[(String, Vec<u8>)],
    what: &str,
) {
    for (path, status, body) in answers {
        let file = SERVED.iter().find(|(p, _)| p == path).unwrap().1;
        let expected = &export.iter().find(|(k, _)| k.ends_with(file)).unwrap().1;
        assert_eq!(*status, reqwest::StatusCode::OK, "{what}: {path}");
        assert!(
            body == expected,
            "{what}: {path} served {} bytes that are not the expected export's ({} bytes)",
            body.len(),
            expected.len()
        );
    }
}

/// Issue 17 item 3: a sync process killed midway through a *new* export leaves every byte
/// the server answers belonging to the previous complete export, during the sync and after
/// the kill; the next complete sync switches the new export in; a new export whose
/// signature does not verify is never switched in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_midway_through_a_new_export_leaves_the_previous_one_served() {
    use p256::pkcs8::DecodePrivateKey;
    use stellaops_workers::mirror::serve::{Mirror, MirrorConfig, router};
    let Some(endpoint) = stellaops_testing::service("STELLAOPS_TEST_S3_ENDPOINT") else {
        return;
    };
    let s3 = client(&S3Settings {
        endpoint: Some(endpoint.clone()),
        region: None,
        force_path_style: true,
    })
    .await;
    let bucket = format!("mirror-switch-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let work = stellaops_testing::scratch_dir("mirror-switch");
    let dir = work.join("volume");
    let (private_pem, public_pem) = stellaops_federation::dsse::generate_key_pair();
    let signer = p256::ecdsa::SigningKey::from_pkcs8_pem(&private_pem).unwrap();
    let key = work.join("key.pub");
    std::fs::write(&key, public_pem).unwrap();

    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_stellaops-worker"))
            .args(["mirror", "sync", "--bucket", &bucket, "--prefix", "exports"])
            .arg("--directory")
            .arg(&dir)
            .args(["--delete", "--concurrency", "2", "--s3-endpoint", &endpoint])
            .arg("--signature-key")
            .arg(&key)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let summary = |out: &std::process::Output| -> serde_json::Value {
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}: {text}"))
    };

    // The previous export, synced completely.
    let previous = signed_export(&signer, "2025-02-01", vec![b'a'; 200_000]);
    for (k, body) in &previous {
        put(&s3, &bucket, &format!("exports/{k}"), body).await;
    }
    let out = run().wait_with_output().unwrap();
    assert!(out.status.success(), "{}", summary(&out));
    assert_eq!(summary(&out)["activeExportId"], "2025-02-01");

    let mirror = Arc::new(
        Mirror::new(MirrorConfig {
            root: dir.clone(),
            domain_id: "primary".into(),
            active_export_id: None,
            require_authentication: false,
            htpasswd: None,
            max_index_requests_per_hour: 0,
            max_download_requests_per_hour: 0,
            signature_key: Some(key.clone()),
        })
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, router(mirror)).await.unwrap() });
    let http = reqwest::Client::new();
    expect_export(
        &served_files(&http, &base).await,
        &previous,
        "after the first sync",
    );

    // A newer export: its small served files come first in key order, then large ones, so
    // the kill lands after part of the new export is on the volume.
    let new = signed_export(&signer, "2025-02-02", vec![b'b'; 1 << 20]);
    for (k, body) in &new {
        put(&s3, &bucket, &format!("exports/{k}"), body).await;
    }
    let filler = vec![7u8; 48 << 20];
    for i in 0..4 {
        put(
            &s3,
            &bucket,
            &format!("exports/2025-02-02/mirror/primary/zz-filler-{i}"),
            &filler,
        )
        .await;
    }

    // Requests all along the sync.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (http, base, stop) = (http.clone(), base.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                seen.push(served_files(&http, &base).await);
            }
            seen
        })
    };
    let mut child = run();
    let mut new_files_staged = false;
    let mut killed_midway = false;
    for _ in 0..20_000 {
        let on_volume = files(&dir);
        new_files_staged |= on_volume
            .iter()
            .any(|f| f.starts_with(".staging-") && f.ends_with("2025-02-02/mirror/index.json"));
        // Kill once a large file is being copied and the new index is staged (copies run
        // concurrently, so under load a filler can start before the index has landed).
        if new_files_staged
            && on_volume
                .iter()
                .any(|f| f.contains("zz-filler") && f.ends_with(".partial"))
        {
            killed_midway = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let during = reader.await.unwrap();
    assert!(
        killed_midway,
        "the sync finished before it could be interrupted"
    );
    assert!(
        new_files_staged,
        "the new export's index.json was on the volume before the kill"
    );
    assert!(!during.is_empty());
    for answers in &during {
        expect_export(answers, &previous, "during the killed sync");
    }
    expect_export(
        &served_files(&http, &base).await,
        &previous,
        "after the kill",
    );

    // The next complete sync switches the new export in (and cleans up after the kill).
    let out = run().wait_with_output().unwrap();
    let report = summary(&out);
    assert!(out.status.success(), "{report}");
    assert_eq!(report["activeExportId"], "2025-02-02", "{report}");
    assert_eq!(report["signaturesVerified"], serde_json::json!(["primary"]));
    // The server asks the disk again once REVALIDATE_AFTER has passed.
    tokio::time::sleep(stellaops_workers::mirror::serve::REVALIDATE_AFTER).await;
    expect_export(
        &served_files(&http, &base).await,
        &new,
        "after a complete sync",
    );
    assert!(
        !files(&dir).iter().any(|f| f.starts_with(".staging-")),
        "leftovers of the killed sync are gone"
    );

    // An export whose bundle does not match its signature is not switched in.
    let mut forged = signed_export(&signer, "2025-02-03", vec![b'c'; 1000]);
    forged[2].1 = vec![b'd'; 1000];
    for (k, body) in &forged {
        put(&s3, &bucket, &format!("exports/{k}"), body).await;
    }
    let out = run().wait_with_output().unwrap();
    let report = summary(&out);
    assert!(!out.status.success(), "{report}");
    assert_eq!(report["success"], false);
    assert!(
        report["signatureError"]
            .as_str()
            .is_some_and(|e| e.contains("domain primary")),
        "{report}"
    );
    assert_eq!(report["activeExportId"], "2025-02-02", "{report}");
    expect_export(
        &served_files(&http, &base).await,
        &new,
        "after a sync refused for its signature",
    );

    server.abort();
    std::fs::remove_dir_all(&work).unwrap();
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
        format!("{error:#}").contains("nothing was switched in or deleted"),
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
