//! The hot lookups at scale use their indexes: `EXPLAIN` on real PostgreSQL with enough
//! rows (and fresh statistics) that a sequential scan would be chosen without them.

use stellaops_store::{notify, scans};

async fn plan(pool: &sqlx::PgPool, sql: &str, binds: &[&str]) -> String {
    let explain = format!("EXPLAIN {sql}");
    let mut query = sqlx::query_scalar::<_, String>(&explain);
    for bind in binds {
        query = query.bind(bind.to_string());
    }
    query.fetch_all(pool).await.unwrap().join("\n")
}

#[tokio::test]
async fn scan_reuse_and_a_rules_last_error_use_indexes_at_scale() {
    let Some(pool) =
        stellaops_testing::migrated_database("store_indexes", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    // 50,000 results over 5,000 digests and 10 snapshots.
    sqlx::query(
        "INSERT INTO scan_results (image_digest, image_ref, advisory_snapshot, scan_uid, sbom_uri,
             sbom_sha256, components, verdict, started_at)
         SELECT 'sha256:' || lpad(to_hex(i % 5000), 64, '0'), 'r/app', i % 10, 'uid-' || i,
                's3://b/' || i, 'sha256:s', 10, 'Pass', now()
         FROM generate_series(1, 50000) AS i",
    )
    .execute(&pool)
    .await
    .unwrap();
    // 200 rules × 100 deliveries, three attempts each, the last one failed.
    sqlx::query(
        "INSERT INTO notify_deliveries (idempotency_key, rule_namespace, rule_name, action, channel, subject, state)
         SELECT 'd' || i, 'ns-' || (i % 20), 'rule-' || (i % 200), 'slack', 'slack', 'x', 'dead'
         FROM generate_series(1, 20000) AS i",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO notify_attempts (delivery_id, status_code, latency_ms, error)
         SELECT d.id, 500, 10, CASE WHEN n = 3 THEN 'HTTP 500' END
         FROM notify_deliveries d, generate_series(1, 3) AS n",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE scan_results, notify_deliveries, notify_attempts")
        .execute(&pool)
        .await
        .unwrap();

    let digest = format!("sha256:{:0>64}", "2a");
    // Snapshot as text: EXPLAIN of a parameterized query needs typed binds; cast in place.
    let reuse = scans::REUSE_SQL
        .replace("$2", "$2::bigint")
        .replace("$3", "$3::integer");
    let reuse_plan = plan(&pool, &reuse, &[&digest, "3", "11"]).await;
    assert!(
        reuse_plan.contains("scan_results_reuse") && !reuse_plan.contains("Seq Scan"),
        "{reuse_plan}"
    );

    let last_error_plan = plan(&pool, notify::LAST_ERROR_SQL, &["ns-7", "rule-7"]).await;
    assert!(
        !last_error_plan.contains("Seq Scan"),
        "the last-error lookup scans a table:\n{last_error_plan}"
    );
    assert!(
        last_error_plan.contains("notify_attempts_errors"),
        "{last_error_plan}"
    );
    let counts = notify::rule_counts(&pool, "ns-7", "rule-7").await.unwrap();
    assert_eq!(counts.last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(counts.failed, 100);
}
