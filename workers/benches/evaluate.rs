//! Advisory delta → verdicts: 10,000 stored image inventories (50 npm components each, from
//! a pool of 2,000 packages), then a federation import of 1,000 advisories each touching
//! one package; measured from the delta query to every affected image re-evaluated
//! (analysis-only: new results, findings and `rescan.delta` events written). Seed target
//! p95 ≤ 5 min for 10k images; aim ≤ 30 s here.
//!
//! Then one ScanPolicy change (issue 20): every image's latest result is recorded as
//! decided under ScanPolicy `bench` (each for its own Scan), the policy gains a 100-rule
//! version, and all of them are re-evaluated under it (`evaluate --policy-ref`); reported
//! in images/s. `STELLAOPS_BENCH_IMAGES` sets the number of images (default 10,000).
//!
//! Run with `scripts/bench.sh -p stellaops-workers --bench evaluate`.

use std::time::Instant;

use serde_json::json;
use stellaops_workers::evaluate::{Settings, evaluate, reevaluate_policy};

const DEFAULT_IMAGES: i64 = 10_000;
const COMPONENTS: i64 = 50;
const PACKAGES: i64 = 2_000;
const ADVISORIES: i64 = 1_000;

#[tokio::main]
async fn main() {
    let Some(url) =
        stellaops_testing::migrated_database_url("bench_evaluate", &stellaops_store::MIGRATOR)
            .await
    else {
        println!(
            "skipped: STELLAOPS_TEST_DATABASE_URL is not set (scripts/bench.sh starts PostgreSQL)"
        );
        return;
    };
    let images: i64 = std::env::var("STELLAOPS_BENCH_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_IMAGES);
    let pool = stellaops_store::connect(&url).await.unwrap();
    stellaops_store::migrate(&pool).await.unwrap();

    let setup = Instant::now();
    // Inventories: image i holds packages (7i + 13j) mod 2000 at version 1.0.(j mod 10).
    sqlx::query(
        "INSERT INTO image_packages (image_digest, affects_key, purl, version, layer_digest)
         SELECT 'sha256:' || lpad(to_hex(i), 64, '0'),
                'pkg:npm/p' || ((7 * i + 13 * j) % $3),
                'pkg:npm/p' || ((7 * i + 13 * j) % $3) || '@1.0.' || (j % 10),
                '1.0.' || (j % 10), 'sha256:base'
         FROM generate_series(0, $1 - 1) i, generate_series(0, $2 - 1) j
         ON CONFLICT DO NOTHING",
    )
    .bind(images)
    .bind(COMPONENTS)
    .bind(PACKAGES)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO scan_results (image_digest, image_ref, advisory_snapshot, sbom_uri, sbom_sha256,
             components, verdict, policy, started_at)
         SELECT 'sha256:' || lpad(to_hex(i), 64, '0'), 'registry.example.com/app' || i, 0,
                's3://stellaops/sboms/' || i, 'sha256:sbom', $2, 'Pass',
                '{\"failOn\": \"critical\", \"warnOn\": \"medium\", \"ignoreUnfixed\": false}', now()
         FROM generate_series(0, $1 - 1) i",
    )
    .bind(images)
    .bind(COMPONENTS as i32)
    .execute(&pool)
    .await
    .unwrap();
    let (_, _, head) = stellaops_store::schedules::advisory_delta(&pool, "bench", "delta")
        .await
        .unwrap();
    stellaops_store::schedules::set_advisory_cursor(&pool, "bench", "delta", head)
        .await
        .unwrap();
    // The delta: 1,000 advisories (versions below 1.0.5 affected), as an import writes them.
    let docs: Vec<_> = (0..ADVISORIES)
        .map(|p| {
            let doc = serde_json::to_vec(&json!({
                "id": format!("GHSA-bench-{p}"), "modified": "2026-11-25T00:00:00Z",
                "published": "2026-11-25T00:00:00Z", "aliases": [],
                "summary": format!("p{p} issue"),
                "affected": [{"package": {"ecosystem": "npm", "name": format!("p{p}")},
                              "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.0.5"}]}]}],
                "database_specific": {"severity": if p % 3 == 0 { "CRITICAL" } else { "MEDIUM" }}
            }))
            .unwrap();
            stellaops_federation::osv::parse(&format!("doc{p}"), &doc, None, chrono::Utc::now()).unwrap()
        })
        .collect();
    stellaops_federation::ingest::ingest(&pool, docs)
        .await
        .unwrap();
    println!(
        "setup: {images} inventories x {COMPONENTS} components, {ADVISORIES} advisories ingested in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let (affected, _, _) = stellaops_store::schedules::advisory_delta(&pool, "bench", "delta")
        .await
        .unwrap();
    let selected = started.elapsed();
    let settings = Settings {
        signer: None,
        rate_per_second: 100_000,
        notify: true,
        min_severity: Some("high".into()),
        namespace: Some("bench".into()),
        name: Some("delta".into()),
        run_id: None,
        policy: None,
        now: None,
    };
    let report = evaluate(&pool, &affected, &settings).await.unwrap();
    let total = started.elapsed();
    println!(
        "advisory delta ({ADVISORIES} package URLs) -> {} impacted images selected in {:.2} s; all re-evaluated in {:.2} s total ({:.0} images/s; {} with new findings >= high, {} rescan.delta events, verdicts {:?})",
        affected.len(),
        selected.as_secs_f64(),
        total.as_secs_f64(),
        report.evaluated as f64 / total.as_secs_f64(),
        report.new_findings,
        report.events,
        report.verdicts
    );
    println!(
        "aim <= 30 s: {}",
        if total.as_secs_f64() <= 30.0 {
            "met"
        } else {
            "missed"
        }
    );

    // One ScanPolicy change: every image's latest result decided under `bench`, for a Scan
    // of its own; then the policy gains 100 rules (none waiving the critical findings).
    sqlx::query(
        "UPDATE scan_results SET policy = policy || '{\"policyRef\": \"bench\"}'::jsonb,
                scan_uid = 'uid-' || image_digest",
    )
    .execute(&pool)
    .await
    .unwrap();
    let rules: Vec<serde_json::Value> = (0..100)
        .map(|i| match i % 4 {
            0 => json!({"name": format!("waive-{i}"), "matchers": {"vulnerabilities": [format!("CVE-2099-{i}")]},
                        "action": {"type": "ignore", "until": "2099-01-01T00:00:00Z", "justification": "bench"}}),
            1 => json!({"name": format!("image-{i}"), "matchers": {"images": [format!("registry.example.com/other{i}*")]},
                        "action": {"type": "fail"}}),
            2 => json!({"name": format!("purl-{i}"), "matchers": {"purls": [format!("pkg:npm/q{i}@*")]},
                        "action": {"type": "defer"}}),
            _ => json!({"name": format!("kev-{i}"), "matchers": {"kev": true, "epssAtLeast": 0.9},
                        "action": {"type": "escalate", "to": "critical"}}),
        })
        .collect();
    let evaluator: stellaops_policy::evaluate::Policy =
        serde_json::from_value(json!({"failOn": "critical", "warnOn": "medium", "rules": rules}))
            .unwrap();
    let policy = stellaops_scanner::Policy::from_evaluator(Some("bench".into()), evaluator);
    let settings = Settings {
        name: None,
        namespace: None,
        min_severity: None,
        ..settings
    };
    let started = Instant::now();
    let report = reevaluate_policy(&pool, &policy, &settings).await.unwrap();
    let total = started.elapsed();
    println!(
        "ScanPolicy change (100 rules) -> {} stored results re-evaluated in {:.2} s ({:.0} images/s; {} changed, {} rescan.delta events)",
        report.evaluated,
        total.as_secs_f64(),
        report.evaluated as f64 / total.as_secs_f64(),
        report.decisions_changed,
        report.events
    );
}
