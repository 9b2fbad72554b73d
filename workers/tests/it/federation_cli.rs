//! The seed's CLI round trip through the real binary: ingest → export → validate →
//! import on a second database, and the same through S3.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

pub(crate) fn worker(database_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stellaops-worker"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run stellaops-worker")
}

pub(crate) fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn write_osv(dir: &Path, id: &str, package: &str, fixed: &str) {
    let doc = json!({
        "id": id, "aliases": [], "modified": "2024-05-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": "PyPI", "name": package},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}],
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]
    });
    std::fs::write(
        dir.join(format!("{id}.json")),
        serde_json::to_vec_pretty(&doc).unwrap(),
    )
    .unwrap();
}

#[tokio::test]
async fn ingest_export_validate_import_through_the_cli() {
    let (Some(a), Some(b)) = (
        stellaops_testing::migrated_database_url("cli_site_a", &stellaops_store::MIGRATOR).await,
        stellaops_testing::migrated_database_url("cli_site_b", &stellaops_store::MIGRATOR).await,
    ) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("stellaops-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("osv")).unwrap();
    write_osv(&dir.join("osv"), "PYSEC-2024-0001", "Django", "4.2.11");
    write_osv(&dir.join("osv"), "PYSEC-2024-0002", "requests", "2.32.0");
    let key = dir.join("signer");
    let key_arg = key.to_str().unwrap();
    ok(&worker(&a, &["federation", "keygen", "-o", key_arg]));

    let summary: Value = serde_json::from_str(&ok(&worker(
        &a,
        &[
            "advisories",
            "ingest",
            "--format",
            "osv",
            dir.join("osv").to_str().unwrap(),
        ],
    )))
    .unwrap();
    assert_eq!(summary["created"], 2);
    let bundle = dir.join("delta.zst");
    let signing = format!("{key_arg}.pem");
    let public = format!("{key_arg}.pub");
    ok(&worker(
        &a,
        &[
            "federation",
            "bundle",
            "export",
            "--site-id",
            "site-a",
            "-o",
            bundle.to_str().unwrap(),
            "--signing-key",
            &signing,
        ],
    ));

    let report = ok(&worker(
        &b,
        &[
            "federation",
            "bundle",
            "validate",
            bundle.to_str().unwrap(),
            "--trusted-key",
            &public,
        ],
    ));
    assert!(
        report.contains("Site: site-a")
            && report.contains("Canonicals: 2")
            && report.ends_with("Ready for import.\n"),
        "{report}"
    );

    // Unknown site: refused with the seed's message and a non-zero exit.
    let refused = worker(
        &b,
        &[
            "federation",
            "bundle",
            "import",
            bundle.to_str().unwrap(),
            "--trusted-key",
            &public,
        ],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Site not allowed: site-a"));

    ok(&worker(
        &b,
        &[
            "federation",
            "sites",
            "add",
            "site-a",
            "--display-name",
            "Site A",
            "--allowed-sources",
            "pypa",
        ],
    ));
    let dry: Value = serde_json::from_str(&ok(&worker(
        &b,
        &[
            "federation",
            "bundle",
            "import",
            bundle.to_str().unwrap(),
            "--dry-run",
            "--json",
            "--trusted-key",
            &public,
        ],
    )))
    .unwrap();
    assert_eq!(
        (
            dry["dry_run"].as_bool(),
            dry["counts"]["canonical_created"].as_i64()
        ),
        (Some(true), Some(2))
    );
    let stdin_import = Command::new(env!("CARGO_BIN_EXE_stellaops-worker"))
        .args([
            "federation",
            "bundle",
            "import",
            "-",
            "--json",
            "--trusted-key",
            &public,
        ])
        .env("DATABASE_URL", &b)
        .stdin(std::fs::File::open(&bundle).unwrap())
        .output()
        .unwrap();
    let response: Value = serde_json::from_str(&ok(&stdin_import)).unwrap();
    assert_eq!(response["success"], true);
    assert_eq!(response["counts"]["canonical_created"], 2);
    assert_eq!(response["counts"]["edges_added"], 2);

    let list = ok(&worker(&b, &["federation", "sites", "list"]));
    assert!(list.lines().nth(2).unwrap().starts_with("site-a"), "{list}");
    assert!(
        list.contains(response["imported_cursor"].as_str().unwrap()),
        "{list}"
    );
    let history = ok(&worker(
        &b,
        &["federation", "sites", "history", "site-a", "--limit", "5"],
    ));
    assert_eq!(history.lines().count(), 1, "{history}");

    // Nothing new: export says so and writes nothing.
    let cursor = response["imported_cursor"].as_str().unwrap();
    let none = worker(
        &a,
        &[
            "federation",
            "bundle",
            "export",
            "--site-id",
            "site-a",
            "-c",
            cursor,
            "-o",
            dir.join("none.zst").to_str().unwrap(),
        ],
    );
    ok(&none);
    assert!(!dir.join("none.zst").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn bundles_travel_through_s3() {
    let Some(endpoint) = stellaops_testing::service("STELLAOPS_TEST_S3_ENDPOINT") else {
        return;
    };
    let (Some(a), Some(b)) = (
        stellaops_testing::migrated_database_url("cli_s3_a", &stellaops_store::MIGRATOR).await,
        stellaops_testing::migrated_database_url("cli_s3_b", &stellaops_store::MIGRATOR).await,
    ) else {
        return;
    };
    let dir = stellaops_testing::scratch_dir("cli-s3");
    for i in 0..3 {
        write_osv(
            &dir,
            &format!("PYSEC-2024-01{i:02}"),
            &format!("pkg{i}"),
            "1.0.0",
        );
    }
    let s3 = stellaops_store::s3::client(&stellaops_store::s3::S3Settings {
        endpoint: Some(endpoint.clone()),
        region: None,
        force_path_style: true,
    })
    .await;
    let bucket = format!("federation-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();

    ok(&worker(
        &a,
        &[
            "advisories",
            "ingest",
            dir.to_str().unwrap(),
            "--s3-endpoint",
            &endpoint,
        ],
    ));
    // Three canonicals and three edges in bundles of two items: three objects, in order.
    let prefix = format!("s3://{bucket}/bundles/site-a/");
    ok(&worker(
        &a,
        &[
            "federation",
            "bundle",
            "export",
            "--site-id",
            "site-a",
            "--max-items",
            "2",
            "-o",
            &prefix,
            "--s3-endpoint",
            &endpoint,
        ],
    ));
    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("bundles/site-a/")
        .send()
        .await
        .unwrap();
    let keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    ok(&worker(
        &b,
        &[
            "federation",
            "sites",
            "add",
            "site-a",
            "--require-signature",
            "false",
        ],
    ));
    for key in &keys {
        ok(&worker(
            &b,
            &[
                "federation",
                "bundle",
                "import",
                &format!("s3://{bucket}/{key}"),
                "--s3-endpoint",
                &endpoint,
            ],
        ));
    }
    let list = ok(&worker(&b, &["federation", "sites", "list", "--json"]));
    let sites: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(sites[0]["bundles_imported"], 3);
    assert_eq!(sites[0]["total_items_imported"], 6);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The seed's promise for air-gapped sites: an import killed half-way leaves nothing
/// behind, and running it again completes it. The worker is SIGKILLed while it holds
/// the change lock inside its transaction.
#[tokio::test]
async fn an_import_killed_mid_transaction_leaves_no_rows_and_a_rerun_completes() {
    let Some(url) =
        stellaops_testing::migrated_database_url("cli_kill", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    let dir = stellaops_testing::scratch_dir("kill");
    // A bundle big enough that the import's transaction lasts a while.
    let now = chrono::Utc::now();
    let (mut canonicals, mut edges) = (Vec::new(), Vec::new());
    for i in 0..40_000 {
        let id = format!("GO-2024-{i:05}");
        let doc = json!({"id": id, "affected": [{"package": {"ecosystem": "Go", "name": format!("example.com/m{i}")},
                                                 "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.0.1"}]}]}]});
        let parsed =
            stellaops_federation::osv::parse(&id, &serde_json::to_vec(&doc).unwrap(), None, now)
                .unwrap();
        canonicals.extend(parsed.canonicals);
        edges.extend(parsed.edges);
    }
    let bytes = stellaops_federation::bundle::write(
        &stellaops_federation::bundle::Contents {
            site_id: "site-a",
            since_cursor: None,
            cursor: "2025-01-15T10:00:00.000Z#80000".into(),
            canonicals: &canonicals,
            edges: &edges,
            deletions: &[],
        },
        None,
        3,
    );
    let bundle = dir.join("big.zst");
    std::fs::write(&bundle, bytes).unwrap();
    ok(&worker(
        &url,
        &[
            "federation",
            "sites",
            "add",
            "site-a",
            "--require-signature",
            "false",
        ],
    ));

    let pool = stellaops_store::connect(&url).await.unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stellaops-worker"))
        .args(["federation", "bundle", "import", bundle.to_str().unwrap()])
        .env("DATABASE_URL", &url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the import holds the change lock (it does so inside its transaction).
    let mut held = false;
    for _ in 0..2_000 {
        let locks: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 7305814 AND granted")
            .fetch_one(&pool)
            .await
            .unwrap();
        if locks > 0 {
            held = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert!(
        held,
        "the import finished before it could be killed; make the bundle larger"
    );
    child.kill().unwrap(); // SIGKILL: no cleanup code runs
    child.wait().unwrap();
    // The server notices the dropped connection and rolls the transaction back.
    for _ in 0..500 {
        let locks: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 7305814",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if locks == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    for table in [
        "canonical_advisories",
        "advisory_source_edges",
        "events_outbox",
        "federation_imported_bundles",
    ] {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(rows, 0, "{table} kept rows of the killed import");
    }
    let cursor: Option<String> = sqlx::query_scalar("SELECT last_cursor FROM federation_sites")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(cursor, None);

    ok(&worker(
        &url,
        &["federation", "bundle", "import", bundle.to_str().unwrap()],
    ));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM canonical_advisories")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 40_000);
    std::fs::remove_dir_all(&dir).unwrap();
}
