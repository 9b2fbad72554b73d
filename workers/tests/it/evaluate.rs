//! Analysis-only re-evaluation against the real PostgreSQL: stored inventories re-matched
//! after new advisories, new findings and verdicts, `rescan.delta` events, the
//! advisory-delta index, and a Schedule run recorded end to end.

use serde_json::json;
use stellaops_scanner::{Component, MatchKey, Policy, match_components};
use stellaops_workers::evaluate::{Settings, announce_refresh, evaluate, reevaluate_policy, run};
use stellaops_workers::scan::{Requester, advisories_for, record};

use crate::scan::{ingest, osv};

pub fn npm(name: &str, version: &str) -> Component {
    Component {
        purl: format!("pkg:npm/{name}@{version}"),
        affects_keys: vec![MatchKey::new(format!("pkg:npm/{name}"), version)],
        source: String::new(),
        source_version: String::new(),
        kind: "npm".into(),
        name: name.into(),
        version: version.into(),
        layer: "sha256:layer".into(),
        path: format!("node_modules/{name}/package.json"),
        used_by_entrypoint: None,
        license: None,
    }
}

pub async fn stored_scan(pool: &sqlx::PgPool, digest: &str, components: &[Component]) {
    let (rows, snapshot) = advisories_for(pool, components).await.unwrap();
    let findings = match_components(components, &rows);
    let policy = Policy {
        fail_on: "critical".into(),
        warn_on: Some("medium".into()),
        ignore_unfixed: false,
        ..Default::default()
    };
    record(
        pool,
        &Requester::default(),
        "registry.example.com/shop/web",
        digest,
        snapshot,
        ("s3://stellaops/sboms/x.json", "sha256:sbom"),
        components,
        &findings,
        &policy,
        chrono::Utc::now(),
        None,
    )
    .await
    .unwrap();
}

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

#[tokio::test]
async fn stored_inventories_are_rematched_and_only_new_findings_are_announced() {
    let Some(pool) =
        stellaops_testing::migrated_database("evaluate", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    let lodash = json!([{"introduced": "0"}, {"fixed": "4.17.21"}]);
    ingest(
        &pool,
        vec![osv("GHSA-lodash", "npm", "lodash", lodash, "HIGH")],
    )
    .await;
    let (x, y, z) = (digest('a'), digest('b'), digest('c'));
    stored_scan(
        &pool,
        &x,
        &[npm("lodash", "4.17.20"), npm("minimist", "1.2.0")],
    )
    .await;
    stored_scan(&pool, &y, &[npm("minimist", "1.2.0")]).await;
    // A Schedule starts reading the advisory changes from here.
    let (none, _, head) = stellaops_store::schedules::advisory_delta(&pool, "shop", "nightly")
        .await
        .unwrap();
    assert!(none.is_empty(), "a new Schedule does not react to history");
    stellaops_store::schedules::set_advisory_cursor(&pool, "shop", "nightly", head)
        .await
        .unwrap();

    // A federation import brings a critical minimist advisory and a low one for lodash.
    let minimist = json!([{"introduced": "0"}, {"fixed": "1.2.6"}]);
    let lodash_low = json!([{"introduced": "4.0.0"}, {"fixed": "4.17.22"}]);
    ingest(
        &pool,
        vec![
            osv("GHSA-minimist", "npm", "minimist", minimist, "CRITICAL"),
            osv("GHSA-lodash-low", "npm", "lodash", lodash_low, "LOW"),
        ],
    )
    .await;
    // The delta selects exactly the images holding a changed package.
    let (affected, from, to) = stellaops_store::schedules::advisory_delta(&pool, "shop", "nightly")
        .await
        .unwrap();
    assert_eq!(affected, vec![x.clone(), y.clone()]);
    assert_eq!(from, head);
    assert!(to > head);

    let settings = Settings {
        signer: None,
        rate_per_second: 1000,
        notify: true,
        min_severity: Some("high".into()),
        namespace: Some("shop".into()),
        name: Some("nightly".into()),
        run_id: None,
        policy: None,
        now: None,
    };
    let report = evaluate(&pool, &[x.clone(), y.clone(), z.clone()], &settings)
        .await
        .unwrap();
    assert_eq!(report.evaluated, 2);
    assert_eq!(report.never_scanned, 1);
    assert_eq!(
        report.new_findings, 2,
        "minimist is new for both; the low lodash one is below high"
    );
    assert_eq!(report.events, 2);
    assert_eq!(report.verdicts.get("Fail"), Some(&2));
    let events = stellaops_store::outbox::read_after(&pool, 0, 100)
        .await
        .unwrap();
    let deltas: Vec<_> = events.iter().filter(|e| e.kind == "rescan.delta").collect();
    assert_eq!(deltas.len(), 2);
    let for_x = deltas.iter().find(|e| e.subject.ends_with(&x)).unwrap();
    assert_eq!(for_x.severity.as_deref(), Some("critical"));
    assert_eq!(for_x.namespace.as_deref(), Some("shop"));
    let new: Vec<&str> = for_x.payload["newFindings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["vulnId"].as_str().unwrap())
        .collect();
    assert_eq!(
        new,
        ["GHSA-minimist"],
        "known and below-threshold findings are not new"
    );
    // The new result is the latest for the digest, with all its findings counted.
    let (critical, high, low, verdict, scan_name): (i32, i32, i32, String, String) = sqlx::query_as(
        "SELECT critical, high, low, verdict, scan_name FROM scan_results WHERE image_digest = $1
         ORDER BY id DESC LIMIT 1",
    )
    .bind(&x)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (critical, high, low, verdict.as_str(), scan_name.as_str()),
        (1, 1, 1, "Fail", "schedule/nightly")
    );

    // Evaluated again with nothing new: no new findings, no events.
    let again = evaluate(&pool, &[x.clone(), y.clone()], &settings)
        .await
        .unwrap();
    assert_eq!(
        (again.evaluated, again.new_findings, again.events),
        (2, 0, 0)
    );

    // A recorded run runs to its end and keeps its counts.
    let new_run = stellaops_store::schedules::NewRun {
        id: "nightly-1".into(),
        namespace: "shop".into(),
        name: "nightly".into(),
        trigger: "cron".into(),
        mode: "analysis-only".into(),
        scheduled_at: chrono::Utc::now(),
        images: vec![x.clone(), z.clone()],
        selected: 3,
        skipped: 1,
        rate_per_second: 100,
        notify: true,
        min_severity: Some("high".into()),
    };
    assert!(
        stellaops_store::schedules::create_run(&pool, &new_run)
            .await
            .unwrap()
    );
    assert!(
        !stellaops_store::schedules::create_run(&pool, &new_run)
            .await
            .unwrap(),
        "idempotent"
    );
    let report = run(&pool, "nightly-1", None, None).await.unwrap();
    assert_eq!(report.evaluated, 1);
    let stored = stellaops_store::schedules::run(&pool, "nightly-1")
        .await
        .unwrap()
        .unwrap();
    assert!(stored.finished_at.is_some());
    assert_eq!(
        (stored.created, stored.new_findings, stored.error),
        (2, 0, None)
    );
    assert!(
        run(&pool, "missing", None, None)
            .await
            .unwrap_err()
            .to_string()
            .contains("does not exist")
    );

    // Content refresh: a forced Scan of y in a run finds a new high advisory; the run
    // counts it once and announces it once.
    let refresh = stellaops_store::schedules::NewRun {
        id: "nightly-refresh".into(),
        mode: "content-refresh".into(),
        images: vec![y.clone()],
        ..new_run.clone()
    };
    stellaops_store::schedules::create_run(&pool, &refresh)
        .await
        .unwrap();
    let qs = json!([{"introduced": "0"}, {"fixed": "1.2.7"}]);
    ingest(
        &pool,
        vec![osv("GHSA-minimist-2", "npm", "minimist", qs, "HIGH")],
    )
    .await;
    stored_scan(&pool, &y, &[npm("minimist", "1.2.0")]).await;
    let latest: i64 =
        sqlx::query_scalar("SELECT max(id) FROM scan_results WHERE image_digest = $1")
            .bind(&y)
            .fetch_one(&pool)
            .await
            .unwrap();
    let before = stellaops_store::outbox::read_after(&pool, 0, 100)
        .await
        .unwrap()
        .len();
    assert!(
        announce_refresh(&pool, "nightly-refresh", latest, &y)
            .await
            .unwrap()
    );
    assert!(
        announce_refresh(&pool, "nightly-refresh", latest, &y)
            .await
            .unwrap()
    );
    let stored = stellaops_store::schedules::run(&pool, "nightly-refresh")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.new_findings, 1, "counted once");
    let events = stellaops_store::outbox::read_after(&pool, 0, 100)
        .await
        .unwrap();
    assert_eq!(events.len(), before + 1, "announced once");
    let last = events.last().unwrap();
    assert_eq!(last.kind, "rescan.delta");
    assert_eq!(last.payload["newFindings"][0]["vulnId"], "GHSA-minimist-2");
    assert_eq!(last.payload["schedule"]["run"], "nightly-refresh");
}

/// Analysis-only re-evaluation matches a Debian package by its source package at the
/// source version, as the scan did: the stored inventory keeps each key's own version.
#[tokio::test]
async fn stored_debian_packages_are_rematched_by_their_source_package() {
    use stellaops_scanner::analyze::{FoundPackage, OsRelease};
    let Some(pool) =
        stellaops_testing::migrated_database("evaluate_source", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    let mut found = FoundPackage::new("deb", "", "libbz2-1.0", "1.0.8-5+b1");
    found.source = "bzip2".into();
    found.source_version = "1.0.8-5".into();
    let os = OsRelease {
        id: "debian".into(),
        version_id: "12".into(),
        pretty_name: String::new(),
    };
    let (purl, affects_keys) = stellaops_scanner::purl_of(&found, Some(&os));
    let component = Component {
        purl: purl.clone(),
        affects_keys,
        kind: "deb".into(),
        name: found.name.clone(),
        version: found.version.clone(),
        source: found.source.clone(),
        source_version: found.source_version.clone(),
        layer: "sha256:layer".into(),
        path: "var/lib/dpkg/status".into(),
        used_by_entrypoint: None,
        license: None,
    };
    let image = digest('d');
    stored_scan(&pool, &image, std::slice::from_ref(&component)).await;
    // The source version is the last affected one: the binNMU's own version is above it.
    ingest(
        &pool,
        vec![
            osv(
                "DSA-bzip2",
                "Debian:12",
                "bzip2",
                json!([{"introduced": "0"}, {"last_affected": "1.0.8-5"}]),
                "HIGH",
            ),
            osv(
                "DSA-binary-name",
                "Debian:12",
                "libbz2-1.0",
                json!([{"introduced": "0"}, {"fixed": "9"}]),
                "HIGH",
            ),
        ],
    )
    .await;
    let settings = Settings {
        signer: None,
        rate_per_second: 1000,
        notify: false,
        min_severity: None,
        namespace: None,
        name: None,
        run_id: None,
        policy: None,
        now: None,
    };
    let report = evaluate(&pool, std::slice::from_ref(&image), &settings)
        .await
        .unwrap();
    assert_eq!((report.evaluated, report.new_findings), (1, 1));
    let found: Vec<(String, String)> = sqlx::query_as(
        "SELECT f.vuln_id, f.purl FROM scan_findings f
         WHERE f.scan_id = (SELECT max(id) FROM scan_results WHERE image_digest = $1)",
    )
    .bind(&image)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(found, [("DSA-bzip2".to_string(), purl)]);
}

#[tokio::test]
async fn a_vendor_not_affected_statement_changes_the_verdict_of_stored_images() {
    let Some(pool) =
        stellaops_testing::migrated_database("evaluate_vex", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
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
    let x = digest('d');
    stored_scan(&pool, &x, &[npm("minimist", "1.2.0")]).await;
    let verdict_of = |pool: sqlx::PgPool, digest: String| async move {
        sqlx::query_as::<_, (String, i32, Option<String>)>(
            "SELECT r.verdict, r.critical, f.decided_by FROM scan_results r
             JOIN scan_findings f ON f.scan_id = r.id
             WHERE r.image_digest = $1 ORDER BY r.id DESC LIMIT 1",
        )
        .bind(digest)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    assert_eq!(
        verdict_of(pool.clone(), x.clone()).await,
        ("Fail".into(), 1, Some("threshold".into()))
    );

    // The vendor says the vulnerable code is never run.
    let statement = json!({
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://vendor.example/vex/1", "author": "vendor", "version": 1,
        "timestamp": "2026-01-01T00:00:00Z",
        "statements": [{"vulnerability": {"name": "GHSA-minimist"},
                        "products": [{"@id": "pkg:npm/minimist@1.2.0"}],
                        "status": "not_affected",
                        "justification": "vulnerable_code_not_in_execute_path"}]
    });
    let document = stellaops_policy::vex::parse(
        stellaops_policy::vex::Format::OpenVex,
        statement.to_string().as_bytes(),
    )
    .unwrap();
    stellaops_store::vex::ingest(&pool, "vendor", &document)
        .await
        .unwrap();
    let settings = Settings {
        signer: None,
        rate_per_second: 1000,
        notify: false,
        min_severity: None,
        namespace: None,
        name: None,
        run_id: None,
        policy: None,
        now: None,
    };
    let report = evaluate(&pool, std::slice::from_ref(&x), &settings)
        .await
        .unwrap();
    assert_eq!(report.verdicts.get("Pass"), Some(&1));
    assert_eq!(
        verdict_of(pool.clone(), x.clone()).await,
        ("Pass".into(), 0, Some("vex:vendor".into())),
        "the finding is kept, taken out by the vendor's statement"
    );
    // A scan recorded now (a rescan or a reused result) is judged the same way.
    stored_scan(&pool, &x, &[npm("minimist", "1.2.0")]).await;
    assert_eq!(verdict_of(pool.clone(), x).await.0, "Pass");
}

/// A ScanPolicy's `ignore` turns a stored Fail into Pass; once its `until` has passed, the
/// same re-evaluation (nobody touched the policy) makes it Fail again. Only results decided
/// under that ScanPolicy are re-evaluated, each keeping its Scan (whose status reads the
/// latest result by uid).
#[tokio::test]
async fn a_scan_policy_waiver_passes_until_it_expires_then_fails_again() {
    let Some(pool) =
        stellaops_testing::migrated_database("evaluate_policy", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
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
    let x = digest('e');
    let components = [npm("minimist", "1.2.0")];
    let (rows, snapshot) = advisories_for(&pool, &components).await.unwrap();
    let findings = match_components(&components, &rows);
    let scan = |uid: &str| Requester {
        namespace: Some("shop".into()),
        name: Some(format!("scan-{uid}")),
        uid: Some(uid.into()),
    };
    let under_policy = |rules: serde_json::Value| {
        let policy: stellaops_policy::evaluate::Policy =
            serde_json::from_value(json!({"failOn": "critical", "rules": rules})).unwrap();
        Policy::from_evaluator(Some("shop-policy".into()), policy)
    };
    let record_for = |uid: &'static str, policy: Policy| {
        let pool = pool.clone();
        let (findings, x) = (findings.clone(), x.clone());
        async move {
            record(
                &pool,
                &scan(uid),
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
    // One Scan under the ScanPolicy (no rules yet), one with the inline thresholds.
    record_for("uid-web", under_policy(json!([]))).await;
    record_for("uid-inline", Policy::default()).await;
    let latest = |uid: &'static str| {
        let pool = pool.clone();
        async move {
            let verdict: String = sqlx::query_scalar(
                "SELECT verdict FROM scan_results WHERE scan_uid = $1 ORDER BY id DESC LIMIT 1",
            )
            .bind(uid)
            .fetch_one(&pool)
            .await
            .unwrap();
            let (decided_by, reason): (Option<String>, Option<String>) = sqlx::query_as(
                "SELECT f.decided_by, f.reason FROM scan_findings f
                 WHERE f.scan_id = (SELECT id FROM scan_results WHERE scan_uid = $1
                                    ORDER BY id DESC LIMIT 1)",
            )
            .bind(uid)
            .fetch_one(&pool)
            .await
            .unwrap();
            (
                verdict,
                decided_by.unwrap_or_default(),
                reason.unwrap_or_default(),
            )
        }
    };
    assert_eq!(latest("uid-web").await.0, "Fail");

    // The ScanPolicy waives the finding until a fixed time.
    let until: jiff::Timestamp = "2031-03-01T12:00:00Z".parse().unwrap();
    let policy = under_policy(json!([{
        "name": "waive-minimist",
        "matchers": {"vulnerabilities": ["GHSA-minimist"], "images": ["registry.example.com/shop/*"]},
        "action": {"type": "ignore", "until": until.to_string(),
                   "justification": "prototype pollution needs attacker-controlled args"}
    }]));
    let at = |now: jiff::Timestamp| Settings {
        signer: None,
        rate_per_second: 1000,
        notify: true,
        min_severity: None,
        namespace: None,
        name: None,
        run_id: None,
        policy: None,
        now: Some(now),
    };
    let before = until - jiff::SignedDuration::from_hours(24);
    let report = reevaluate_policy(&pool, &policy, &at(before))
        .await
        .unwrap();
    assert_eq!(
        report.evaluated, 1,
        "only the Scan under the ScanPolicy: {report:?}"
    );
    assert_eq!(report.decisions_changed, 1);
    assert_eq!(report.events, 1, "the changed verdict is announced");
    // Naming the Scan it was recorded for: the Scan controller follows these events to
    // read a re-evaluated result into the Scan's status.
    let delta = stellaops_store::outbox::read_after(&pool, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .rfind(|e| e.kind == "rescan.delta")
        .unwrap();
    assert_eq!(
        delta.payload["scan"],
        json!({"namespace": "shop", "name": "scan-uid-web", "uid": "uid-web"})
    );
    let (verdict, decided_by, reason) = latest("uid-web").await;
    assert_eq!(
        (verdict.as_str(), decided_by.as_str()),
        ("Pass", "rule:waive-minimist")
    );
    assert!(reason.contains("until 2031-03-01T12:00:00Z"), "{reason}");
    assert_eq!(
        latest("uid-inline").await.0,
        "Fail",
        "another policy's Scan is left alone"
    );
    let inline_results: i64 =
        sqlx::query_scalar("SELECT count(*) FROM scan_results WHERE scan_uid = 'uid-inline'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(inline_results, 1);
    // The result names the Scan, so the Scan controller's lookup by uid finds it, and
    // records the digest of the evaluator's form of the policy.
    let (scan_name, policy_digest): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT scan_name, policy_digest FROM scan_results WHERE scan_uid = 'uid-web'
         ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(scan_name.as_deref(), Some("scan-uid-web"));
    assert_eq!(
        policy_digest,
        Some(stellaops_scanner::judge::policy_of(&policy).digest())
    );

    // Nothing changes while the waiver is in force: no new decision, no event.
    let again = reevaluate_policy(&pool, &policy, &at(before))
        .await
        .unwrap();
    assert_eq!((again.decisions_changed, again.events), (0, 0));

    // The waiver's `until` passes; nobody touched the policy.
    let after = until + jiff::SignedDuration::from_secs(1);
    let report = reevaluate_policy(&pool, &policy, &at(after)).await.unwrap();
    assert_eq!(report.decisions_changed, 1);
    let (verdict, decided_by, _) = latest("uid-web").await;
    assert_eq!(
        (verdict.as_str(), decided_by.as_str()),
        ("Fail", "threshold")
    );
}

/// The result the webhook would read for `digest` (its query), checked as it checks it.
async fn as_the_webhook_reads(
    pool: &sqlx::PgPool,
    keys: &stellaops_store::attestation::VerdictKeys,
    digest: &str,
) -> (
    String,
    Vec<u8>,
    Result<stellaops_store::attestation::VerdictPredicate, String>,
) {
    let stellaops_store::scans::VerdictRow {
        verdict,
        attestation_key: key,
        attestation: envelope,
        ..
    } = stellaops_store::scans::latest_verdict(pool, digest)
        .await
        .unwrap()
        .unwrap();
    let checked = stellaops_store::attestation::check_row(
        keys,
        digest,
        &verdict,
        key.as_deref(),
        envelope.as_deref(),
    );
    (
        key.unwrap_or_default(),
        envelope.unwrap_or_default(),
        checked,
    )
}

#[tokio::test]
async fn re_evaluations_store_their_signed_envelopes_in_s3_and_the_webhook_trusts_them() {
    let Some(env) = crate::scan::env("evaluate_attest").await else {
        return;
    };
    let pool = &env.pool;
    ingest(
        pool,
        vec![osv(
            "GHSA-minimist",
            "npm",
            "minimist",
            json!([{"introduced": "0"}, {"fixed": "1.2.6"}]),
            "CRITICAL",
        )],
    )
    .await;
    let x = digest('f');
    let components = [npm("minimist", "1.2.0")];
    let (rows, snapshot) = advisories_for(pool, &components).await.unwrap();
    let findings = match_components(&components, &rows);
    let (private, public) = stellaops_store::attestation::generate_key_pair();
    let keys = stellaops_store::attestation::VerdictKeys::from_pem_bundle(&public).unwrap();
    let under_policy = |rules: serde_json::Value| {
        let policy: stellaops_policy::evaluate::Policy =
            serde_json::from_value(json!({"failOn": "critical", "rules": rules})).unwrap();
        Policy::from_evaluator(Some("shop-policy".into()), policy)
    };
    // The scan: signed, under the ScanPolicy.
    let scan_signer = stellaops_store::attestation::VerdictSigner::from_pem(&private).unwrap();
    record(
        pool,
        &Requester {
            namespace: Some("shop".into()),
            name: Some("web".into()),
            uid: Some("uid-web".into()),
        },
        "registry.example.com/shop/web",
        &x,
        snapshot,
        ("s3://stellaops/sboms/x.json", "sha256:sbom"),
        &components,
        &findings,
        &under_policy(json!([])),
        chrono::Utc::now(),
        Some(&stellaops_workers::scan::Attest {
            signer: &scan_signer,
            s3: &env.s3,
            bucket: &env.bucket,
        }),
    )
    .await
    .unwrap();
    let (scanned_key, _, checked) = as_the_webhook_reads(pool, &keys, &x).await;
    assert_eq!(checked.unwrap().verdict, "Fail");

    let settings = Settings {
        signer: Some(std::sync::Arc::new(stellaops_workers::evaluate::Signing {
            signer: stellaops_store::attestation::VerdictSigner::from_pem(&private).unwrap(),
            s3: env.s3.clone(),
            bucket: env.bucket.clone(),
        })),
        rate_per_second: 1000,
        notify: false,
        min_severity: None,
        namespace: None,
        name: None,
        run_id: None,
        policy: None,
        now: None,
    };
    let in_bucket = |key: String| {
        let env = &env;
        async move { env.object(&key).await }
    };
    // An advisory-delta re-evaluation (a Schedule run, `evaluate --digest`, VEX ingest).
    evaluate(pool, std::slice::from_ref(&x), &settings)
        .await
        .unwrap();
    // A ScanPolicy re-evaluation: a waiver makes the same image pass.
    reevaluate_policy(
        pool,
        &under_policy(json!([{
            "name": "waive-minimist",
            "matchers": {"vulnerabilities": ["GHSA-minimist"]},
            "action": {"type": "ignore", "justification": "not reachable from the entry point"}
        }])),
        &settings,
    )
    .await
    .unwrap();
    let results: Vec<(i64, String, String, Vec<u8>)> = sqlx::query_as(
        "SELECT id, verdict, attestation_key, attestation FROM scan_results
         WHERE image_digest = $1 ORDER BY id",
    )
    .bind(&x)
    .fetch_all(pool)
    .await
    .unwrap();
    let verdicts: Vec<&str> = results.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(verdicts, ["Fail", "Fail", "Pass"]);
    for (id, verdict, key, envelope) in &results {
        // Each re-evaluation's envelope is in S3 under its own name, byte for byte the row's.
        assert!(
            key.starts_with("attest/") && key.ends_with(".dsse.json"),
            "{key}"
        );
        assert_eq!(&in_bucket(key.clone()).await, envelope, "result {id}");
        let signed = keys.verify(key, envelope, &x).unwrap();
        assert_eq!(&signed.verdict, verdict, "result {id}");
    }
    assert_eq!(results[0].2, scanned_key);
    // The webhook reads the newest, the waived Pass, and trusts it.
    let (key, envelope, checked) = as_the_webhook_reads(pool, &keys, &x).await;
    assert_eq!(key, results[2].2);
    assert_eq!(checked.unwrap().verdict, "Pass");

    // Tampered: the stored envelope edited in place.
    let mut edited = envelope.clone();
    let at = edited.len() / 2;
    edited[at] ^= 1;
    sqlx::query("UPDATE scan_results SET attestation = $2 WHERE id = $1")
        .bind(results[2].0)
        .bind(&edited)
        .execute(pool)
        .await
        .unwrap();
    let (_, _, checked) = as_the_webhook_reads(pool, &keys, &x).await;
    let refused = checked.unwrap_err();
    assert!(
        refused.contains(&format!("verdict envelope {key} does not hash to its name")),
        "{refused}"
    );
    // Tampered and renamed to match: no signature by the configured key, named.
    let renamed = stellaops_store::attestation::object_key(&edited);
    sqlx::query("UPDATE scan_results SET attestation_key = $2 WHERE id = $1")
        .bind(results[2].0)
        .bind(&renamed)
        .execute(pool)
        .await
        .unwrap();
    let (_, _, checked) = as_the_webhook_reads(pool, &keys, &x).await;
    let refused = checked.unwrap_err();
    assert!(
        refused.contains(&format!("verdict envelope {renamed} ")),
        "{refused}"
    );
}

/// A ScanPolicy's VEX settings decide the consensus wherever it judges: the re-evaluation
/// under the policy, a scan recorded under it, and a re-evaluation under each result's own
/// stored policy. Two providers disagree about one finding: at equal weight the cautious
/// `affected` holds (Fail); with the vendor weighing 2 its `not_affected` wins (Pass);
/// accepting only `component_not_present` leaves the vendor's statement uncounted (Fail).
#[tokio::test]
async fn a_scan_policys_vex_weights_and_accepted_justifications_decide_the_consensus() {
    let Some(pool) =
        stellaops_testing::migrated_database("evaluate_vex_trust", &stellaops_store::MIGRATOR)
            .await
    else {
        return;
    };
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
    for (provider, status, justification) in [
        (
            "vendor",
            "not_affected",
            Some("vulnerable_code_not_in_execute_path"),
        ),
        ("scanner-team", "affected", None),
    ] {
        let mut statement = json!({"vulnerability": {"name": "GHSA-minimist"},
                                   "products": [{"@id": "pkg:npm/minimist@1.2.0"}],
                                   "status": status});
        if let Some(j) = justification {
            statement["justification"] = json!(j);
        }
        let document = json!({
            "@context": "https://openvex.dev/ns/v0.2.0",
            "@id": format!("https://{provider}.example/vex/1"), "author": provider,
            "version": 1, "timestamp": "2026-01-01T00:00:00Z", "statements": [statement]
        });
        let document = stellaops_policy::vex::parse(
            stellaops_policy::vex::Format::OpenVex,
            document.to_string().as_bytes(),
        )
        .unwrap();
        stellaops_store::vex::ingest(&pool, provider, &document)
            .await
            .unwrap();
    }
    let x = digest('f');
    let components = [npm("minimist", "1.2.0")];
    let (rows, snapshot) = advisories_for(&pool, &components).await.unwrap();
    let findings = match_components(&components, &rows);
    let under = |vex: Option<serde_json::Value>| {
        let mut policy = json!({"failOn": "critical"});
        if let Some(vex) = vex {
            policy["vex"] = vex;
        }
        let policy: stellaops_policy::evaluate::Policy = serde_json::from_value(policy).unwrap();
        assert!(policy.problems().is_empty(), "{:?}", policy.problems());
        Policy::from_evaluator(Some("vex-policy".into()), policy)
    };
    let record_under = |policy: Policy| {
        let (pool, findings, x) = (pool.clone(), findings.clone(), x.clone());
        async move {
            record(
                &pool,
                &Requester {
                    namespace: Some("shop".into()),
                    name: Some("scan-web".into()),
                    uid: Some("uid-vex".into()),
                },
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
    let latest = || {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (String, String, Option<String>, serde_json::Value)>(
                "SELECT r.verdict, f.decided_by, r.policy_digest, r.policy FROM scan_results r
                 JOIN scan_findings f ON f.scan_id = r.id
                 WHERE r.scan_uid = 'uid-vex' ORDER BY r.id DESC LIMIT 1",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let settings = |policy: Option<Policy>| Settings {
        signer: None,
        rate_per_second: 1000,
        notify: false,
        min_severity: None,
        namespace: None,
        name: None,
        run_id: None,
        policy,
        now: None,
    };

    // Default trust: a tie, the cautious status, the threshold fails it.
    let plain = under(None);
    record_under(plain.clone()).await;
    let (verdict, decided_by, plain_digest, _) = latest().await;
    assert_eq!(
        (verdict.as_str(), decided_by.as_str()),
        ("Fail", "threshold")
    );

    // The policy weighs the vendor 2: re-evaluated under it, not_affected wins.
    let vendor_heavy = under(Some(json!({
        "weights": {"vendor": 2.0}, "defaultWeight": 1.0,
        "acceptedJustifications": ["component_not_present", "vulnerable_code_not_present",
            "vulnerable_code_not_in_execute_path",
            "vulnerable_code_cannot_be_controlled_by_adversary",
            "inline_mitigations_already_exist"]
    })));
    let heavy_digest = stellaops_scanner::judge::policy_of(&vendor_heavy).digest();
    assert_ne!(
        Some(&heavy_digest),
        plain_digest.as_ref(),
        "the settings are in the digest"
    );
    let report = reevaluate_policy(&pool, &vendor_heavy, &settings(Some(vendor_heavy.clone())))
        .await
        .unwrap();
    assert_eq!(
        (report.evaluated, report.decisions_changed),
        (1, 1),
        "{report:?}"
    );
    let (verdict, decided_by, digest_now, stored) = latest().await;
    assert_eq!(
        (verdict.as_str(), decided_by.as_str()),
        ("Pass", "vex:vendor")
    );
    assert_eq!(digest_now.as_ref(), Some(&heavy_digest));
    assert_eq!(
        stored["vex"]["weights"]["vendor"], 2.0,
        "stored with the result: {stored}"
    );

    // Re-evaluated under each result's own stored policy (a VEX change, a Schedule run):
    // the stored settings still hold.
    evaluate(&pool, std::slice::from_ref(&x), &settings(None))
        .await
        .unwrap();
    assert_eq!(latest().await.0, "Pass");
    // A scan recorded under the policy (the scan worker's path) is judged the same way.
    record_under(vendor_heavy.clone()).await;
    assert_eq!(latest().await.0, "Pass");

    // Only component_not_present accepted: the vendor's statement does not count.
    let strict = under(Some(json!({
        "weights": {"vendor": 2.0}, "defaultWeight": 1.0,
        "acceptedJustifications": ["component_not_present"]
    })));
    reevaluate_policy(&pool, &strict, &settings(Some(strict.clone())))
        .await
        .unwrap();
    let (verdict, decided_by, _, _) = latest().await;
    assert_eq!(
        (verdict.as_str(), decided_by.as_str()),
        ("Fail", "threshold")
    );
}

/// An analysis-only Schedule run naming a ScanPolicy decides each selected image's latest
/// result under that policy, whatever it was decided under before (an inline policy here,
/// another ScanPolicy there); without the policy the same run keeps each result's own.
#[tokio::test]
async fn a_schedule_run_naming_a_scan_policy_decides_every_image_under_it() {
    let Some(pool) =
        stellaops_testing::migrated_database("evaluate_run_policy", &stellaops_store::MIGRATOR)
            .await
    else {
        return;
    };
    let minimist = json!([{"introduced": "0"}, {"fixed": "1.2.6"}]);
    ingest(
        &pool,
        vec![osv("GHSA-minimist", "npm", "minimist", minimist, "HIGH")],
    )
    .await;
    let (inline, other) = (digest('1'), digest('2'));
    let components = [npm("minimist", "1.2.0")];
    let (rows, snapshot) = advisories_for(&pool, &components).await.unwrap();
    let findings = match_components(&components, &rows);
    let scan_policy = |name: &str, fail_on: &str| {
        let policy: stellaops_policy::evaluate::Policy =
            serde_json::from_value(json!({"failOn": fail_on})).unwrap();
        Policy::from_evaluator(Some(name.into()), policy)
    };
    // A high finding: Pass under the inline critical threshold and under "lenient".
    for (digest, policy) in [
        (&inline, Policy::default()),
        (&other, scan_policy("lenient", "critical")),
    ] {
        record(
            &pool,
            &Requester::default(),
            "registry.example.com/shop/web",
            digest,
            snapshot,
            ("s3://stellaops/sboms/x.json", "sha256:sbom"),
            &components,
            &findings,
            &policy,
            chrono::Utc::now(),
            None,
        )
        .await
        .unwrap();
    }
    let new_run = |id: &str| stellaops_store::schedules::NewRun {
        id: id.into(),
        namespace: "shop".into(),
        name: "nightly".into(),
        trigger: "cron".into(),
        mode: "analysis-only".into(),
        scheduled_at: chrono::Utc::now(),
        images: vec![inline.clone(), other.clone()],
        selected: 2,
        skipped: 0,
        rate_per_second: 100,
        notify: false,
        min_severity: None,
    };
    let latest = |digest: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (String, Option<String>, Option<String>, Option<String>)>(
                "SELECT verdict, policy->>'policyRef', policy_digest, scan_name FROM scan_results
                 WHERE image_digest = $1 ORDER BY id DESC LIMIT 1",
            )
            .bind(digest)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };

    // Without a policy the run keeps each result's own: both still pass.
    stellaops_store::schedules::create_run(&pool, &new_run("nightly-own"))
        .await
        .unwrap();
    let report = run(&pool, "nightly-own", None, None).await.unwrap();
    assert_eq!(report.verdicts.get("Pass"), Some(&2), "{report:?}");

    // Under the Schedule's ScanPolicy "strict" (fail on high) both fail.
    let strict = scan_policy("strict", "high");
    let strict_digest = stellaops_scanner::judge::policy_of(&strict).digest();
    stellaops_store::schedules::create_run(&pool, &new_run("nightly-strict"))
        .await
        .unwrap();
    let report = run(&pool, "nightly-strict", None, Some(strict.clone()))
        .await
        .unwrap();
    assert_eq!(
        (report.evaluated, report.verdicts.get("Fail")),
        (2, Some(&2)),
        "{report:?}"
    );
    for digest in [&inline, &other] {
        assert_eq!(
            latest(digest.clone()).await,
            (
                "Fail".to_string(),
                Some("strict".to_string()),
                Some(strict_digest.clone()),
                Some("schedule/nightly".to_string())
            )
        );
    }
    let stored = stellaops_store::schedules::run(&pool, "nightly-strict")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stored.finished_at.is_some(), stored.error), (true, None));
    // The results now belong to "strict": its own re-evaluation (after a change) finds them.
    assert_eq!(
        stellaops_store::scans::digests_under_policy(&pool, "strict")
            .await
            .unwrap(),
        vec![inline.clone(), other.clone()]
    );
}
