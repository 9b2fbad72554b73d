//! The reports API over 10,000 stored results (Scans in 100 namespaces, written through
//! `stellaops_store::scans::insert_result`): a LIST as a Table across all namespaces (what
//! `kubectl get vulnerabilityreports -A` asks for, in one page) and a GET of a report with
//! 500 findings, server time (handler and JSON encoding; no TLS) p50/p99 and bytes. The
//! reference in the same run: the raw SQL reading the same rows (the floor). Aim: LIST
//! Table of 10k ≤ 3× the floor and ≤ 300 ms; memory does not grow with repeated LISTs.
//!
//! Run with `scripts/bench.sh -p stellaops-reports --bench reports`.

/// The operator binary's allocator (operator/src/main.rs), which serves the reports API.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use stellaops_reports::kinds::Kind;
use stellaops_reports::server::{ListQuery, Reports, Settings};
use stellaops_store::scans::{NewFinding, NewResult, insert_result};

const RESULTS: u32 = 10_000;
const NAMESPACES: u32 = 100;
const FINDINGS: u32 = 500;
const ROUNDS: usize = 30;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn result<'a>(digest: &'a str, image: &'a str, ns: &'a str, name: &'a str) -> NewResult<'a> {
    NewResult {
        image_digest: digest,
        image_ref: image,
        advisory_snapshot: 1,
        scan_namespace: Some(ns),
        scan_name: Some(name),
        scan_uid: None,
        sbom_uri: "s3://stellaops/scanner/sboms/x.cdx.json",
        sbom_sha256: "sha256:x",
        components: 120,
        counts: [1, 3, 5, 8],
        verdict: "Fail",
        policy: json!({"failOn": "high"}),
        policy_digest: Some("sha256:policy"),
        started_at: chrono::Utc::now(),
        attestation: None,
    }
}

#[tokio::main]
async fn main() {
    let Some(pool) =
        stellaops_testing::migrated_database("bench_reports", &stellaops_store::MIGRATOR).await
    else {
        println!(
            "skipped: STELLAOPS_TEST_DATABASE_URL is not set (scripts/bench.sh starts PostgreSQL)"
        );
        return;
    };
    let setup = Instant::now();
    for chunk in 0..RESULTS / 1000 {
        let mut tx = pool.begin().await.unwrap();
        for i in chunk * 1000..(chunk + 1) * 1000 {
            let digest = format!("sha256:{i:064x}");
            let image = format!("registry.example.com/team-{}/app-{i}:1.0", i % NAMESPACES);
            let (ns, name) = (format!("team-{}", i % NAMESPACES), format!("app-{i}"));
            let findings: Vec<NewFinding> = (0..3)
                .map(|j| NewFinding {
                    merge_hash: format!("sha256:{i}-{j}"),
                    vuln_id: format!("CVE-2025-{j:04}"),
                    purl: format!("pkg:npm/p{j}@1.0.{j}"),
                    severity: Some("high".into()),
                    outcome: "fails".into(),
                    decided_by: "threshold".into(),
                    ..Default::default()
                })
                .collect();
            insert_result(
                &mut tx,
                &result(&digest, &image, &ns, &name),
                &findings,
                &[],
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
    }
    // The report with 500 findings.
    let big: Vec<NewFinding> = (0..FINDINGS)
        .map(|j| NewFinding {
            merge_hash: format!("sha256:big-{j}"),
            vuln_id: format!("CVE-2024-{j:05}"),
            purl: format!("pkg:deb/debian/lib{j}@1.{j}"),
            severity: Some(["critical", "high", "medium", "low"][j as usize % 4].into()),
            fixed_version: Some(format!("1.{}", j + 1)),
            outcome: "counted".into(),
            decided_by: "threshold".into(),
            reason: "counted by failOn".into(),
            ..Default::default()
        })
        .collect();
    let mut tx = pool.begin().await.unwrap();
    let big_digest = format!("sha256:{:064x}", 999_999_999u64);
    insert_result(
        &mut tx,
        &result(&big_digest, "registry.example.com/big:1", "team-0", "big"),
        &big,
        &[],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();
    println!(
        "setup: {} results with {} findings written in {:.1} s",
        RESULTS + 1,
        RESULTS * 3 + FINDINGS,
        setup.elapsed().as_secs_f64()
    );

    let reports = Arc::new(Reports {
        settings: Settings::default(),
        pool: Some(pool.clone()),
        s3: None,
        authenticator: Arc::new(Default::default()),
        authorizer: stellaops_reports::authz::Authorizer::allow_all(),
        certificate: Arc::new(stellaops_tls::ReloadableCert::new(None)),
        hub: stellaops_reports::watch::Hub::new(1),
    });

    // Floor: the raw SQL that reads the same rows, decoded by the driver and nothing else.
    let sql = stellaops_store::reports::latest_per_scan_sql();
    let version = stellaops_store::reports::current_version(&pool)
        .await
        .unwrap();
    let floor = || async {
        sqlx::query(&sql)
            .bind(version)
            .bind("")
            .bind("")
            .bind(None::<&str>)
            .bind(None::<&str>)
            .bind(i64::from(RESULTS) + 10)
            .fetch_all(&pool)
            .await
            .unwrap()
            .len()
    };
    assert_eq!(floor().await, RESULTS as usize + 1);
    let mut floor_times = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        floor().await;
        floor_times.push(t.elapsed());
    }

    // LIST as a Table, all namespaces, no limit (one page).
    let list = || async {
        reports
            .list(Kind::VulnerabilityReport, None, &ListQuery::default(), true)
            .await
            .unwrap()
    };
    let bytes = list().await;
    let rows = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["rows"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(rows, RESULTS as usize + 1);
    let rss_before = rss_kib();
    let mut list_times = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        list().await;
        list_times.push(t.elapsed());
    }
    for _ in 0..20 {
        list().await;
    }
    let rss_50 = rss_kib();
    for _ in 0..50 {
        list().await;
    }
    let rss_100 = rss_kib();

    // GET of the 500-finding report.
    let get = || async {
        let report = reports
            .get(Kind::VulnerabilityReport, Some("team-0"), "big", false)
            .await
            .unwrap();
        serde_json::to_vec(&report).unwrap()
    };
    let get_bytes = get().await;
    let mut get_times = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        get().await;
        get_times.push(t.elapsed());
    }
    // Its floor: the result row and its findings by the same SQL.
    let mut get_floor = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let rows = stellaops_store::reports::latest_per_scan(
            &pool,
            &stellaops_store::reports::ScanQuery {
                version: i64::MAX,
                namespace: Some("team-0"),
                name: Some("big"),
                after: ("", ""),
                limit: 1,
            },
        )
        .await
        .unwrap();
        let found = stellaops_store::reports::findings(&pool, &[rows[0].id], 2001)
            .await
            .unwrap();
        assert_eq!(found.len(), FINDINGS as usize);
        get_floor.push(t.elapsed());
    }

    let (lp50, lp99) = (
        percentile(&mut list_times, 0.5),
        percentile(&mut list_times, 0.99),
    );
    let fp50 = percentile(&mut floor_times, 0.5);
    println!();
    println!(
        "| {} results, {ROUNDS} rounds | p50 | p99 | bytes |",
        RESULTS + 1
    );
    println!("|---|---|---|---|");
    println!(
        "| LIST Table, all namespaces | {} | {} | {} |",
        ms(lp50),
        ms(lp99),
        bytes.len()
    );
    println!(
        "| floor: the raw SQL of those rows | {} | {} | |",
        ms(fp50),
        ms(percentile(&mut floor_times, 0.99))
    );
    println!(
        "| GET, {FINDINGS} findings | {} | {} | {} |",
        ms(percentile(&mut get_times, 0.5)),
        ms(percentile(&mut get_times, 0.99)),
        get_bytes.len()
    );
    println!(
        "| floor: its row and findings by SQL | {} | {} | |",
        ms(percentile(&mut get_floor, 0.5)),
        ms(percentile(&mut get_floor, 0.99))
    );
    println!();
    println!(
        "LIST Table p50 / floor p50: {:.2}× (aim ≤ 3×); p50 {} (aim ≤ 300 ms)",
        lp50.as_secs_f64() / fp50.as_secs_f64(),
        ms(lp50)
    );
    println!(
        "RSS after the first LIST: {} MiB; after 50 more: {} MiB; after 100: {} MiB (aim: no growth)",
        rss_before / 1024,
        rss_50 / 1024,
        rss_100 / 1024
    );
}
