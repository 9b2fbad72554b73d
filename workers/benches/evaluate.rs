//! Advisory delta → verdicts: 10,000 stored image inventories (50 npm components each, from
//! a pool of 2,000 packages), then a federation import of 1,000 advisories each touching
//! one package; measured from the delta query to every affected image re-evaluated
//! (analysis-only: new results, findings and `rescan.delta` events written). Seed target
//! p95 ≤ 5 min for 10k images; aim ≤ 30 s here.
//!
//! Run with `scripts/bench.sh -p stellaops-workers --bench evaluate`.

use std::time::Instant;

use serde_json::json;
use stellaops_workers::evaluate::{Settings, evaluate};

const IMAGES: i64 = 10_000;
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
    .bind(IMAGES)
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
    .bind(IMAGES)
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
        "setup: {IMAGES} inventories x {COMPONENTS} components, {ADVISORIES} advisories ingested in {:.1} s",
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
}
