//! Retention deletes what is older than its age, in bounded batches, and nothing else.

use std::time::Duration;

use stellaops_store::retention::{Ages, Pruned, prune};

async fn count(pool: &sqlx::PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn old_finished_rows_go_in_batches_and_live_ones_stay() {
    let Some(pool) =
        stellaops_testing::migrated_database("store_retention", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    // 25 old finished deliveries with 2 attempts each, 5 old ones still pending (one old
    // attempt each), 10 recent sent ones.
    sqlx::query(
        "INSERT INTO notify_deliveries (idempotency_key, rule_namespace, rule_name, action, channel, subject, state, created_at)
         SELECT 'd' || i, 'ns', 'r', 'a', 'slack', 's',
                CASE WHEN i <= 25 THEN 'sent' WHEN i <= 30 THEN 'pending' ELSE 'sent' END,
                CASE WHEN i <= 30 THEN now() - interval '40 days' ELSE now() END
         FROM generate_series(1, 40) AS i",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO notify_attempts (delivery_id, latency_ms, at)
         SELECT d.id, 1, d.created_at FROM notify_deliveries d, generate_series(1, 2) n
         WHERE d.state = 'sent' AND d.created_at < now() - interval '1 day'
         UNION ALL
         SELECT d.id, 1, d.created_at FROM notify_deliveries d WHERE d.state = 'pending'",
    )
    .execute(&pool)
    .await
    .unwrap();
    // 23 old outbox events, 4 new.
    sqlx::query(
        "INSERT INTO events_outbox (kind, subject, payload, idempotency_key, created_at)
         SELECT 'report.ready', 's', '{}', 'k' || i,
                CASE WHEN i <= 23 THEN now() - interval '40 days' ELSE now() END
         FROM generate_series(1, 27) AS i",
    )
    .execute(&pool)
    .await
    .unwrap();
    // 3 runs finished long ago, 1 finished recently, 1 old one still running.
    sqlx::query(
        "INSERT INTO schedule_runs (id, schedule_namespace, schedule_name, trigger, mode, scheduled_at,
             images, selected, rate_per_second, started_at, finished_at)
         SELECT 'run-' || i, 'ns', 's', 'cron', 'analysis-only', now(), '{}', 0, 1,
                now() - interval '200 days',
                CASE WHEN i <= 3 THEN now() - interval '100 days' WHEN i = 4 THEN now() END
         FROM generate_series(1, 5) AS i",
    )
    .execute(&pool)
    .await
    .unwrap();

    // Lifecycle passes: bucket a has 4 old ones (the newest of them is its latest and
    // stays); bucket b one old one, its latest.
    sqlx::query(
        "INSERT INTO artifact_lifecycle_passes (bucket, pass, finished_at)
         SELECT CASE WHEN i <= 4 THEN 'a' ELSE 'b' END, '{}', now() - interval '100 days'
         FROM generate_series(1, 5) AS i",
    )
    .execute(&pool)
    .await
    .unwrap();

    let pruned = prune(&pool, &Ages::default(), 7).await.unwrap();
    assert_eq!(
        pruned,
        Pruned {
            deliveries: 25,
            attempts: 5,
            outbox_events: 23,
            schedule_runs: 3,
            lifecycle_passes: 3,
        }
    );
    assert_eq!(count(&pool, "notify_deliveries").await, 15);
    assert_eq!(count(&pool, "notify_attempts").await, 0);
    assert_eq!(count(&pool, "events_outbox").await, 4);
    assert_eq!(count(&pool, "schedule_runs").await, 2);
    // Nothing more is old enough: a second pass deletes nothing.
    assert_eq!(
        prune(&pool, &Ages::default(), 7).await.unwrap(),
        Pruned::default()
    );
    // A shorter age reaches the recent rows too.
    let all = Ages {
        deliveries: Duration::ZERO,
        attempts: Duration::ZERO,
        outbox_events: Duration::ZERO,
        schedule_runs: Duration::ZERO,
    };
    let pruned = prune(&pool, &all, 1000).await.unwrap();
    assert_eq!(
        (
            pruned.deliveries,
            pruned.outbox_events,
            pruned.schedule_runs
        ),
        (10, 4, 1)
    );
}
