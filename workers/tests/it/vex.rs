//! `stellaops-worker vex ingest` through the real binary and database.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../policy/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn vex_ingest(database_url: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stellaops-worker"))
        .args(["vex", "ingest"])
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run stellaops-worker");
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn a_directory_is_ingested_and_a_bad_document_is_refused_naming_the_field() {
    let Some(database_url) = stellaops_testing::fresh_database("workers_vex").await else {
        return;
    };
    let pool = stellaops_store::connect(&database_url).await.unwrap();
    stellaops_store::migrate(&pool).await.unwrap();
    let dir = stellaops_testing::scratch_dir("vex");
    std::fs::write(
        dir.as_path().join("a-good.json"),
        fixture("openvex-0.2.0.json"),
    )
    .unwrap();
    let broken = String::from_utf8(fixture("openvex-0.2.0.json"))
        .unwrap()
        .replace(
            "\"@id\": \"https://openvex.dev/docs/example/vex-9fb3463de1b57\"",
            "\"@id\": \"https://example.com/other\"",
        )
        .replace("\"status\": \"fixed\"", "\"status\": \"maybe\"");
    std::fs::write(dir.as_path().join("b-broken.json"), broken).unwrap();
    std::fs::write(dir.as_path().join("notes.txt"), "not a document").unwrap();
    let path = dir.to_str().unwrap();

    let out = vex_ingest(
        &database_url,
        &["--format", "openvex", "--provider", "wolfi", path],
        None,
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "a refused document fails the run");
    assert!(
        stdout.contains("a-good.json") && stdout.contains("stored, 5 statements"),
        "{stdout}"
    );
    assert!(
        stderr.contains("b-broken.json: refused: statements[0].status: \"maybe\" is not one of"),
        "{stderr}"
    );
    assert_eq!(
        stellaops_store::vex::statement_count(&pool, "wolfi")
            .await
            .unwrap(),
        5
    );

    // The same document on standard input: nothing changes.
    let out = vex_ingest(
        &database_url,
        &["--format", "openvex", "--provider", "wolfi", "-"],
        Some(&fixture("openvex-0.2.0.json")),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing changed"));

    // The other formats through the same command.
    for (format, name, statements) in [
        ("csaf", "csaf-vex-2.0.json", 3),
        ("cyclonedx", "cyclonedx-1.6-vex.json", 2),
    ] {
        let out = vex_ingest(
            &database_url,
            &["--format", format, "--provider", format, "-"],
            Some(&fixture(name)),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            stellaops_store::vex::statement_count(&pool, format)
                .await
                .unwrap(),
            statements
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_changed_statement_re_evaluates_exactly_the_images_it_speaks_about() {
    use crate::evaluate::{npm, stored_scan};
    use crate::scan::{ingest, osv};
    use serde_json::json;

    let Some(database_url) = stellaops_testing::fresh_database("workers_vex_reeval").await else {
        return;
    };
    let pool = stellaops_store::connect(&database_url).await.unwrap();
    stellaops_store::migrate(&pool).await.unwrap();
    let minimist = json!([{"introduced": "0"}, {"fixed": "1.2.6"}]);
    ingest(
        &pool,
        vec![osv(
            "GHSA-minimist",
            "npm",
            "minimist",
            minimist,
            "CRITICAL",
        )],
    )
    .await;
    let (x, y) = (
        format!("sha256:{}", "e".repeat(64)),
        format!("sha256:{}", "f".repeat(64)),
    );
    stored_scan(&pool, &x, &[npm("minimist", "1.2.0")]).await;
    stored_scan(&pool, &y, &[npm("lodash", "4.17.21")]).await;
    let latest = |digest: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (i64, String)>(
                "SELECT id, verdict FROM scan_results WHERE image_digest = $1 ORDER BY id DESC LIMIT 1",
            )
            .bind(digest)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let (_, before) = latest(x.clone()).await;
    assert_eq!(before, "Fail");
    let (y_before, _) = latest(y.clone()).await;

    let document = |version: u32, status: &str| {
        let mut statement = json!({"vulnerability": {"name": "GHSA-minimist"},
            "products": [{"@id": "pkg:npm/minimist@1.2.0"}], "status": status});
        if status == "not_affected" {
            statement["justification"] = "vulnerable_code_not_in_execute_path".into();
        }
        json!({"@context": "https://openvex.dev/ns/v0.2.0", "@id": "https://vendor.example/vex/minimist",
               "author": "vendor", "version": version, "timestamp": format!("2026-01-0{version}T00:00:00Z"),
               "statements": [statement]})
        .to_string()
    };
    let run = |doc: String| {
        vex_ingest(
            &database_url,
            &["--format", "openvex", "--provider", "vendor", "-"],
            Some(doc.as_bytes()),
        )
    };
    let out = run(document(1, "not_affected"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "re-evaluated 1 images: 1 with a changed verdict or counted findings, 1 events"
        ),
        "{stdout}"
    );
    assert_eq!(latest(x.clone()).await.1, "Pass");
    assert_eq!(
        latest(y.clone()).await.0,
        y_before,
        "an image it does not speak about is left alone"
    );
    let events = stellaops_store::outbox::read_after(&pool, 0, 100)
        .await
        .unwrap();
    let delta = events
        .iter()
        .rfind(|e| e.kind == "rescan.delta")
        .expect("announced");
    assert_eq!(delta.payload["previousVerdict"], "Fail");
    assert_eq!(delta.payload["verdict"], "Pass");

    // explain says why: the finding is kept, taken out by the vendor.
    let explain = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_stellaops-worker"))
            .arg("explain")
            .args(args)
            .env("DATABASE_URL", &database_url)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = explain(&[&x]);
    assert!(text.contains("verdict Pass"), "{text}");
    assert!(
        text.contains("Taken out (1):")
            && text.contains("critical  GHSA-minimist in pkg:npm/minimist@1.2.0 (fixed in 1.2.6) — vex:vendor: VEX consensus: not_affected"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&explain(&[&x, "--json"])).unwrap();
    assert_eq!(json["findings"][0]["decidedBy"], "vex:vendor");
    assert!(
        json["policyDigest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    // The same document again: nothing to re-evaluate.
    let out = run(document(1, "not_affected"));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("re-evaluated"));

    // Version 2 takes it back: the image fails again.
    let out = run(document(2, "affected"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 with a changed verdict"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(latest(x.clone()).await.1, "Fail");
    let text = explain(&[&x]);
    assert!(
        text.contains("verdict Fail")
            && text.contains("Failing (1):")
            && text.contains("— threshold: critical is at or above failOn critical"),
        "{text}"
    );
}

/// One image, Scans deciding it under different policies: one under a ScanPolicy, then two
/// with an inline policy (the latter scanned last). A statement re-evaluates the latest
/// result under each policy, each recorded again for its own Scan — not only the image's
/// latest result — so `requireScan` under the ScanPolicy (the newest verdict decided under
/// its digest) and that Scan's status follow too. The image's latest result is still the
/// inline Scan's, and no Scan gets a result for an older one of its results.
#[tokio::test]
async fn a_statement_re_evaluates_the_latest_result_under_each_policy_of_an_image() {
    use crate::evaluate::npm;
    use crate::scan::{ingest, osv};
    use serde_json::json;
    use stellaops_scanner::{Policy, match_components};
    use stellaops_workers::scan::{Requester, advisories_for, record};

    let Some(database_url) = stellaops_testing::fresh_database("workers_vex_policies").await else {
        return;
    };
    let pool = stellaops_store::connect(&database_url).await.unwrap();
    stellaops_store::migrate(&pool).await.unwrap();
    let minimist = json!([{"introduced": "0"}, {"fixed": "1.2.6"}]);
    ingest(
        &pool,
        vec![osv(
            "GHSA-minimist",
            "npm",
            "minimist",
            minimist,
            "CRITICAL",
        )],
    )
    .await;
    let x = format!("sha256:{}", "d".repeat(64));
    let components = [npm("minimist", "1.2.0")];
    let (rows, snapshot) = advisories_for(&pool, &components).await.unwrap();
    let findings = match_components(&components, &rows);
    let strict = Policy::from_evaluator(
        Some("strict".into()),
        serde_json::from_value(json!({"failOn": "high"})).unwrap(),
    );
    let strict_digest = stellaops_scanner::judge::policy_of(&strict).digest();
    let inline = Policy {
        fail_on: "critical".into(),
        ..Default::default()
    };
    let record_for = |uid: &str, policy: &Policy| {
        let (pool, findings, x) = (pool.clone(), findings.clone(), x.clone());
        let (requester, policy) = (
            Requester {
                namespace: Some("shop".into()),
                name: Some(format!("scan-{uid}")),
                uid: Some(uid.into()),
            },
            policy.clone(),
        );
        async move {
            record(
                &pool,
                &requester,
                "registry.example.com/shop/web",
                &x,
                snapshot,
                ("s3://stellaops/sboms/x.json", "sha256:sbom"),
                &[npm("minimist", "1.2.0")],
                &findings,
                &policy,
                chrono::Utc::now(),
                None,
            )
            .await
            .unwrap();
        }
    };
    record_for("uid-strict", &strict).await;
    record_for("uid-old-inline", &inline).await;
    record_for("uid-inline", &inline).await;
    let results_of = |uid: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT verdict FROM scan_results WHERE scan_uid = $1 ORDER BY id",
            )
            .bind(uid)
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    let document = json!({"@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://vendor.example/vex/minimist", "author": "vendor", "version": 1,
        "timestamp": "2026-01-01T00:00:00Z",
        "statements": [{"vulnerability": {"name": "GHSA-minimist"},
            "products": [{"@id": "pkg:npm/minimist@1.2.0"}], "status": "not_affected",
            "justification": "vulnerable_code_not_in_execute_path"}]})
    .to_string();
    let out = vex_ingest(
        &database_url,
        &["--format", "openvex", "--provider", "vendor", "-"],
        Some(document.as_bytes()),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "re-evaluated 2 images: 2 with a changed verdict or counted findings, 2 events"
        ),
        "{stdout}"
    );
    assert_eq!(results_of("uid-strict").await, ["Fail", "Pass"]);
    assert_eq!(results_of("uid-inline").await, ["Fail", "Pass"]);
    assert_eq!(
        results_of("uid-old-inline").await,
        ["Fail"],
        "not the latest under its policy: left alone"
    );
    // What the webhook reads (the queries of `stellaops_store::scans`): under the
    // ScanPolicy's digest, and the image's latest.
    let verdict = |policy_digest: Option<String>| {
        let (pool, x) = (pool.clone(), x.clone());
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT verdict || ' ' || coalesce(scan_uid, '') FROM scan_results
                 WHERE image_digest = $1 AND ($2::text IS NULL OR policy_digest = $2)
                 ORDER BY finished_at DESC, id DESC LIMIT 1",
            )
            .bind(x)
            .bind(policy_digest)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(verdict(Some(strict_digest)).await, "Pass uid-strict");
    assert_eq!(
        verdict(None).await,
        "Pass uid-inline",
        "the image's latest result is still the inline Scan's"
    );
}
