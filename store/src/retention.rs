//! Retention: rows that only record the past (finished deliveries and their attempts,
//! outbox events every consumer has long read, finished schedule runs) are deleted once
//! older than their configured age, in bounded batches so no delete holds locks or bloats
//! the WAL for long. Without this the tables grow for ever.

use std::time::Duration;

use sqlx::PgPool;

use crate::Result;

/// How long each kind of row is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ages {
    /// Deliveries that are over (sent, throttled, dead), with their attempts.
    pub deliveries: Duration,
    /// Attempts of deliveries still retrying.
    pub attempts: Duration,
    /// Outbox events.
    pub outbox_events: Duration,
    /// Finished schedule runs.
    pub schedule_runs: Duration,
}

impl Default for Ages {
    fn default() -> Self {
        const DAY: u64 = 24 * 3600;
        Ages {
            deliveries: Duration::from_secs(30 * DAY),
            attempts: Duration::from_secs(30 * DAY),
            outbox_events: Duration::from_secs(30 * DAY),
            schedule_runs: Duration::from_secs(90 * DAY),
        }
    }
}

/// Rows deleted by one [`prune`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Deliveries (their attempts go with them).
    pub deliveries: u64,
    /// Attempts of deliveries still retrying.
    pub attempts: u64,
    /// Outbox events.
    pub outbox_events: u64,
    /// Schedule runs.
    pub schedule_runs: u64,
    /// Artifact lifecycle passes (never a bucket's latest: the upgrade checklist reads it).
    pub lifecycle_passes: u64,
}

const DELIVERIES: &str = "DELETE FROM notify_deliveries WHERE id IN (
    SELECT id FROM notify_deliveries
    WHERE state IN ('sent', 'throttled', 'dead') AND created_at < now() - make_interval(secs => $1)
    LIMIT $2)";
const ATTEMPTS: &str = "DELETE FROM notify_attempts WHERE id IN (
    SELECT id FROM notify_attempts WHERE at < now() - make_interval(secs => $1) ORDER BY id LIMIT $2)";
// In id order, which is creation order: the walk stops at the first young event.
const OUTBOX_EVENTS: &str = "DELETE FROM events_outbox WHERE id IN (
    SELECT id FROM events_outbox WHERE created_at < now() - make_interval(secs => $1) ORDER BY id LIMIT $2)";
const SCHEDULE_RUNS: &str = "DELETE FROM schedule_runs WHERE id IN (
    SELECT id FROM schedule_runs
    WHERE finished_at IS NOT NULL AND finished_at < now() - make_interval(secs => $1)
    LIMIT $2)";

const LIFECYCLE_PASSES: &str = "DELETE FROM artifact_lifecycle_passes WHERE id IN (
    SELECT id FROM artifact_lifecycle_passes p
    WHERE finished_at < now() - make_interval(secs => $1)
      AND EXISTS (SELECT 1 FROM artifact_lifecycle_passes n WHERE n.bucket = p.bucket AND n.id > p.id)
    LIMIT $2)";

async fn delete_in_batches(pool: &PgPool, sql: &str, age: Duration, batch: i64) -> Result<u64> {
    let mut total = 0;
    loop {
        let deleted = sqlx::query(sql)
            .bind(age.as_secs_f64())
            .bind(batch)
            .execute(pool)
            .await?
            .rows_affected();
        total += deleted;
        if deleted < batch as u64 {
            return Ok(total);
        }
    }
}

/// Delete every row older than its age, `batch` rows per statement.
pub async fn prune(pool: &PgPool, ages: &Ages, batch: i64) -> Result<Pruned> {
    let batch = batch.max(1);
    Ok(Pruned {
        deliveries: delete_in_batches(pool, DELIVERIES, ages.deliveries, batch).await?,
        attempts: delete_in_batches(pool, ATTEMPTS, ages.attempts, batch).await?,
        outbox_events: delete_in_batches(pool, OUTBOX_EVENTS, ages.outbox_events, batch).await?,
        schedule_runs: delete_in_batches(pool, SCHEDULE_RUNS, ages.schedule_runs, batch).await?,
        // Kept as long as schedule runs: both are the record of housekeeping work.
        lifecycle_passes: delete_in_batches(pool, LIFECYCLE_PASSES, ages.schedule_runs, batch)
            .await?,
    })
}
