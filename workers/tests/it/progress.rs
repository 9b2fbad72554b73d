//! Progress of long work when stderr is not a terminal: no bar, but JSON `progress` records
//! in the log, periodic while the work runs and a last one when it ends — from real runs
//! of `mirror sync` (against the real S3 server) and `federation bundle export|import`.

use std::process::{Command, Output};

use aws_sdk_s3::primitives::ByteStream;
use serde_json::Value;
use stellaops_store::s3::{S3Settings, client};

use crate::federation_cli::{ok, write_osv};

/// The worker with JSON logs and progress records every 10 ms (5 s by default).
fn worker(database_url: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stellaops-worker"));
    command
        .args(args)
        .env("STELLAOPS_LOG_FORMAT", "json")
        .env("STELLAOPS_PROGRESS_INTERVAL_SECONDS", "0.01")
        .env("RUST_LOG", "info");
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    command.output().expect("run stellaops-worker")
}

/// The progress records of `task` in the JSON log on stderr. No bar may be drawn (no
/// carriage return, no escape sequence); every log line is JSON (the commands' own summary
/// lines, printed as text, are not log records).
fn progress_records(out: &Output, task: &str) -> Vec<Value> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains('\r') && !stderr.contains('\u{1b}'),
        "a progress bar was drawn off a terminal:\n{stderr}"
    );
    let mut records = Vec::new();
    for line in stderr.lines().filter(|l| l.starts_with('{')) {
        let record: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a stderr line is not JSON ({e}): {line:?}\n{stderr}"));
        if record["message"] == "progress" && record["task"] == task {
            assert_eq!(record["target"], "stellaops::progress", "{record}");
            assert_eq!(record["level"], "INFO", "{record}");
            records.push(record);
        }
    }
    records
}

fn states(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["state"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn mirror_sync_logs_progress_records_with_counts_rate_and_eta() {
    let Some(endpoint) = stellaops_testing::service("STELLAOPS_TEST_S3_ENDPOINT") else {
        return;
    };
    let s3 = client(&S3Settings {
        endpoint: Some(endpoint.clone()),
        region: None,
        force_path_style: true,
    })
    .await;
    let bucket = format!("progress-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let files = 40u64;
    let size = 50_000u64;
    for i in 0..files {
        s3.put_object()
            .bucket(&bucket)
            .key(format!("exports/file-{i:03}.json"))
            .body(ByteStream::from(vec![b'x'; size as usize]))
            .send()
            .await
            .unwrap();
    }
    let dir = std::env::temp_dir().join(format!("stellaops-progress-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = worker(
        None,
        &[
            "mirror",
            "sync",
            "--bucket",
            &bucket,
            "--prefix",
            "exports",
            "--directory",
            dir.to_str().unwrap(),
            "--concurrency",
            "1",
            "--s3-endpoint",
            &endpoint,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = progress_records(&out, "mirror sync");
    let seen = states(&records);
    assert_eq!(
        seen.first().map(String::as_str),
        Some("started"),
        "{seen:?}"
    );
    assert_eq!(seen.last().map(String::as_str), Some("done"), "{seen:?}");
    assert!(
        seen.iter().any(|s| s == "running"),
        "no periodic record while {files} files were copied one at a time: {seen:?}"
    );
    let first = &records[0];
    assert_eq!(first["unit"], "files");
    assert_eq!(first["total"], files);
    assert_eq!(first["bytes_total"], files * size);
    assert_eq!(first["done"], 0);
    let last = records.last().unwrap();
    assert_eq!(last["done"], files, "{last}");
    assert_eq!(last["bytes"], files * size, "{last}");
    assert_eq!(last["eta_seconds"], 0, "{last}");
    assert!(last["bytes_per_second"].as_f64().unwrap() > 0.0, "{last}");
    // Counts never go back, and a running record with work left has an ETA.
    let done: Vec<u64> = records
        .iter()
        .map(|r| r["done"].as_u64().unwrap())
        .collect();
    assert!(done.windows(2).all(|w| w[0] <= w[1]), "{done:?}");
    assert!(
        records
            .iter()
            .filter(|r| r["state"] == "running" && r["done"].as_u64() > Some(0))
            .all(|r| r["eta_seconds"].is_u64()),
        "{records:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn bundle_export_and_import_log_progress_records() {
    let (Some(a), Some(b)) = (
        stellaops_testing::migrated_database_url("progress_a", &stellaops_store::MIGRATOR).await,
        stellaops_testing::migrated_database_url("progress_b", &stellaops_store::MIGRATOR).await,
    ) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("stellaops-progress-fed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("osv")).unwrap();
    for i in 0..5 {
        write_osv(
            &dir.join("osv"),
            &format!("PYSEC-2024-{i:04}"),
            &format!("pkg{i}"),
            "1.0",
        );
    }
    ok(&worker(
        Some(&a),
        &[
            "advisories",
            "ingest",
            "--format",
            "osv",
            dir.join("osv").to_str().unwrap(),
        ],
    ));
    let key = dir.join("signer");
    let key_arg = key.to_str().unwrap();
    ok(&worker(Some(&a), &["federation", "keygen", "-o", key_arg]));
    let signing = format!("{key_arg}.pem");
    let public = format!("{key_arg}.pub");
    let bundle = dir.join("delta.zst");
    let out = worker(
        Some(&a),
        &[
            "federation",
            "bundle",
            "export",
            "--site-id",
            "site-a",
            "--max-items",
            "2",
            "-o",
            bundle.to_str().unwrap(),
            "--signing-key",
            &signing,
        ],
    );
    ok(&out);
    let records = progress_records(&out, "federation bundle export");
    assert_eq!(
        states(&records).last().map(String::as_str),
        Some("done"),
        "{records:#?}"
    );
    let last = records.last().unwrap();
    assert_eq!(last["unit"], "changes");
    assert!(last["done"].as_u64().unwrap() >= 5, "{last}");
    assert!(last["bytes"].as_u64().unwrap() > 0, "{last}");

    ok(&worker(
        Some(&b),
        &[
            "federation",
            "sites",
            "add",
            "site-a",
            "--allowed-sources",
            "pypa",
        ],
    ));
    // The first of the numbered bundles (five changes, two a bundle).
    let first = dir.join("delta-0001.zst");
    assert!(
        first.exists(),
        "{:?}",
        std::fs::read_dir(&dir).unwrap().collect::<Vec<_>>()
    );
    let out = worker(
        Some(&b),
        &[
            "federation",
            "bundle",
            "import",
            first.to_str().unwrap(),
            "--trusted-key",
            &public,
        ],
    );
    ok(&out);
    let records = progress_records(&out, "federation bundle import");
    let seen = states(&records);
    assert_eq!(seen.last().map(String::as_str), Some("done"), "{seen:?}");
    let last = records.last().unwrap();
    assert_eq!(last["unit"], "items");
    assert!(last["total"].as_u64().unwrap() > 0, "{last}");
    assert_eq!(last["done"], last["total"], "{last}");
    let _ = std::fs::remove_dir_all(&dir);
}
