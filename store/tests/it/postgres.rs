use std::time::Duration;

use serde_json::json;
use sqlx::postgres::PgListener;
use stellaops_store::outbox::{self, NewEvent};
use stellaops_testing::fresh_database;

fn event(key: &str) -> NewEvent {
    NewEvent {
        kind: "report.ready".into(),
        namespace: Some("prod-web".into()),
        subject: "sha256:1111".into(),
        severity: Some("high".into()),
        payload: json!({"verdict": "Fail", "findings": {"high": 2}}),
        idempotency_key: key.into(),
    }
}

#[tokio::test]
async fn migrations_apply_once_and_outbox_round_trips() {
    let Some(pool) =
        stellaops_testing::migrated_database("store_outbox", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    // Idempotent: a second run (another Pod starting) applies nothing and fails nothing.
    stellaops_store::migrate(&pool).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied, stellaops_store::MIGRATOR.iter().count() as i64);
    // Large payloads (a federation import's event rows) are compressed with lz4 where the
    // server has it (the test server, Debian's PostgreSQL, does).
    let lz4_available: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_settings
                        WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals))",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let compression: String = sqlx::query_scalar(
        "SELECT attcompression::text FROM pg_attribute
         WHERE attrelid = 'events_outbox'::regclass AND attname = 'payload'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(compression, if lz4_available { "l" } else { "" });

    let first = outbox::publish(&pool, &event("scan/abc")).await.unwrap();
    assert!(first.is_some());
    // A retried producer cannot add the same event twice.
    assert_eq!(
        outbox::publish(&pool, &event("scan/abc")).await.unwrap(),
        None
    );
    let second = outbox::publish(&pool, &event("scan/def"))
        .await
        .unwrap()
        .unwrap();

    let events = outbox::read_after(&pool, 0, 10).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].payload["findings"]["high"], 2);
    assert_eq!(events[1].id, second);
    assert!(
        outbox::read_after(&pool, second, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn an_event_published_in_a_rolled_back_transaction_never_appears() {
    let Some(pool) =
        stellaops_testing::migrated_database("store_rollback", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    let mut tx = pool.begin().await.unwrap();
    outbox::publish(&mut *tx, &event("scan/rolled-back"))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert!(outbox::read_after(&pool, 0, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn listeners_are_woken_by_inserts() {
    let Some(url) = fresh_database("store_listen").await else {
        return;
    };
    let pool = stellaops_store::connect(&url).await.unwrap();
    stellaops_store::migrate(&pool).await.unwrap();
    let mut listener = PgListener::connect(&url).await.unwrap();
    listener.listen(outbox::NOTIFY_CHANNEL).await.unwrap();
    let id = outbox::publish(&pool, &event("scan/notify"))
        .await
        .unwrap()
        .unwrap();
    let notification = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(notification.payload(), id.to_string());
}

/// A follower hands out each event of its kind once, in id order, including one whose
/// transaction took an id first and committed after a later event was read; it starts with
/// the events of the last `grace`, and other kinds are not its business.
#[tokio::test]
async fn a_follower_hands_out_each_event_of_its_kind_once_even_one_committed_late() {
    let Some(pool) =
        stellaops_testing::migrated_database("store_follower", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    let delta = |key: &str| NewEvent {
        kind: "rescan.delta".into(),
        ..event(key)
    };
    let recent = outbox::publish(&pool, &delta("recent"))
        .await
        .unwrap()
        .unwrap();
    let mut follower = outbox::Follower::start(&pool, "rescan.delta", Duration::from_secs(60))
        .await
        .unwrap();
    let ids = |events: Vec<outbox::Event>| events.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        ids(follower.next(&pool, 10).await.unwrap()),
        vec![recent],
        "written within the grace before it started"
    );
    // A writer takes an id, and a later event commits (and is read) before it does.
    let mut tx = pool.begin().await.unwrap();
    let late = outbox::publish(&mut *tx, &delta("late"))
        .await
        .unwrap()
        .unwrap();
    let early = outbox::publish(&pool, &delta("early"))
        .await
        .unwrap()
        .unwrap();
    outbox::publish(&pool, &event("another-kind"))
        .await
        .unwrap();
    assert!(late < early);
    assert_eq!(ids(follower.next(&pool, 10).await.unwrap()), vec![early]);
    assert!(follower.next(&pool, 10).await.unwrap().is_empty());
    tx.commit().await.unwrap();
    assert_eq!(ids(follower.next(&pool, 10).await.unwrap()), vec![late]);
    assert!(follower.next(&pool, 10).await.unwrap().is_empty());
    // A full batch leaves the rest for the next call.
    for key in ["b1", "b2", "b3"] {
        outbox::publish(&pool, &delta(key)).await.unwrap();
    }
    assert_eq!(follower.next(&pool, 2).await.unwrap().len(), 2);
    assert_eq!(follower.next(&pool, 2).await.unwrap().len(), 1);
    assert!(follower.next(&pool, 2).await.unwrap().is_empty());
}
