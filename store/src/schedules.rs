//! Schedule runs: what each selected and did, latest reports for `onlyIf`, and the
//! advisory-delta cursor that turns a federation import into the set of images it affects.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};

use crate::Result;

/// A run as planned: what is recorded when it starts.
#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct NewRun {
    /// Run id (deterministic: a second create is a no-op).
    pub id: String,
    /// Schedule namespace.
    #[sqlx(rename = "schedule_namespace")]
    pub namespace: String,
    /// Schedule name.
    #[sqlx(rename = "schedule_name")]
    pub name: String,
    /// `cron` or `advisory-delta`.
    pub trigger: String,
    /// `analysis-only` or `content-refresh`.
    pub mode: String,
    /// Scheduled time (or when the delta was seen).
    pub scheduled_at: DateTime<Utc>,
    /// Digests the run works on, in order (already limited by `maxScans`).
    pub images: Vec<String>,
    /// Images that matched the selection.
    pub selected: i64,
    /// Images left out (`onlyIf`, `maxScans`).
    pub skipped: i64,
    /// Evaluations or Scans started per second.
    pub rate_per_second: i32,
    /// Emit `rescan.delta` for new findings.
    pub notify: bool,
    /// Only findings at or above this count as new.
    pub min_severity: Option<String>,
}

/// A stored run: its plan and its progress.
#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct Run {
    /// What was recorded when it started.
    #[sqlx(flatten)]
    pub plan: NewRun,
    /// Evaluated or created.
    pub created: i64,
    /// Images with new findings.
    pub new_findings: i64,
    /// Started.
    pub started_at: DateTime<Utc>,
    /// Finished (`None` while running).
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Record a run; `false` when it exists already (a restart re-creating it).
pub async fn create_run(pool: &PgPool, run: &NewRun) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO schedule_runs (id, schedule_namespace, schedule_name, trigger, mode, scheduled_at,
             images, selected, skipped, rate_per_second, notify, min_severity)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&run.id)
    .bind(&run.namespace)
    .bind(&run.name)
    .bind(&run.trigger)
    .bind(&run.mode)
    .bind(run.scheduled_at)
    .bind(&run.images)
    .bind(run.selected)
    .bind(run.skipped)
    .bind(run.rate_per_second)
    .bind(run.notify)
    .bind(&run.min_severity)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// One run.
pub async fn run(pool: &PgPool, id: &str) -> Result<Option<Run>> {
    Ok(sqlx::query_as("SELECT * FROM schedule_runs WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// The latest `limit` runs of a Schedule, newest first.
pub async fn runs(pool: &PgPool, namespace: &str, name: &str, limit: i64) -> Result<Vec<Run>> {
    Ok(sqlx::query_as(
        "SELECT * FROM schedule_runs WHERE schedule_namespace = $1 AND schedule_name = $2
         ORDER BY started_at DESC, id DESC LIMIT $3",
    )
    .bind(namespace)
    .bind(name)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Record progress (evaluated so far, images with new findings).
pub async fn progress(pool: &PgPool, id: &str, created: i64, new_findings: i64) -> Result<()> {
    sqlx::query("UPDATE schedule_runs SET created = $2, new_findings = $3 WHERE id = $1")
        .bind(id)
        .bind(created)
        .bind(new_findings)
        .execute(pool)
        .await?;
    Ok(())
}

/// Count one more image with new findings in run `id` (a content-refresh Scan that found
/// some), in `tx`.
pub async fn count_new_findings(tx: &mut sqlx::PgConnection, id: &str) -> Result<()> {
    sqlx::query("UPDATE schedule_runs SET new_findings = new_findings + 1 WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Record how many Scans a content-refresh run has created.
pub async fn record_created(pool: &PgPool, id: &str, created: i64) -> Result<()> {
    sqlx::query("UPDATE schedule_runs SET created = $2 WHERE id = $1")
        .bind(id)
        .bind(created)
        .execute(pool)
        .await?;
    Ok(())
}

/// Mark a run finished, with its error if it failed.
pub async fn finish(pool: &PgPool, id: &str, error: Option<&str>) -> Result<()> {
    sqlx::query(
        "UPDATE schedule_runs SET finished_at = now(), error = $2 WHERE id = $1 AND finished_at IS NULL",
    )
    .bind(id)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// Keep the newest `keep` finished runs of a Schedule, delete older ones.
pub async fn prune(pool: &PgPool, namespace: &str, name: &str, keep: i64) -> Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM schedule_runs WHERE id IN (
             SELECT id FROM schedule_runs WHERE schedule_namespace = $1 AND schedule_name = $2
                 AND finished_at IS NOT NULL
             ORDER BY started_at DESC, id DESC OFFSET $3)",
    )
    .bind(namespace)
    .bind(name)
    .bind(keep)
    .execute(pool)
    .await?
    .rows_affected())
}

/// When each of `digests` was last reported on (digests never scanned are absent).
pub async fn latest_reports(
    pool: &PgPool,
    digests: &[String],
) -> Result<HashMap<String, DateTime<Utc>>> {
    let rows: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT image_digest, max(finished_at) FROM scan_results
         WHERE image_digest = ANY($1) GROUP BY image_digest",
    )
    .bind(digests)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// The images whose stored inventory holds a package that an advisory changed after the
/// Schedule's cursor, and the cursor to store once they are handled. A Schedule seen for
/// the first time starts at the current end of the sequence (it reacts to imports from now
/// on, not to history).
pub async fn advisory_delta(
    pool: &PgPool,
    namespace: &str,
    name: &str,
) -> Result<(Vec<String>, i64, i64)> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let head = crate::advisories::snapshot(&mut *tx).await?;
    let cursor: Option<i64> = sqlx::query_scalar(
        "SELECT change_seq FROM schedule_advisory_cursors
         WHERE schedule_namespace = $1 AND schedule_name = $2",
    )
    .bind(namespace)
    .bind(name)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(cursor) = cursor else {
        tx.commit().await?;
        return Ok((Vec::new(), head, head));
    };
    // Changed or withdrawn canonicals, and deletions of canonicals still known.
    let digests: Vec<String> = sqlx::query_scalar(
        "WITH changed AS (
             SELECT affects_key FROM canonical_advisories WHERE change_seq > $1
             UNION
             SELECT c.affects_key FROM advisory_deletions d
                 JOIN canonical_advisories c USING (merge_hash) WHERE d.change_seq > $1)
         SELECT DISTINCT p.image_digest FROM image_packages p JOIN changed USING (affects_key)
         ORDER BY 1",
    )
    .bind(cursor)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((digests, cursor, head))
}

/// Store the advisory cursor of a Schedule.
pub async fn set_advisory_cursor(
    pool: &PgPool,
    namespace: &str,
    name: &str,
    seq: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO schedule_advisory_cursors (schedule_namespace, schedule_name, change_seq)
         VALUES ($1, $2, $3)
         ON CONFLICT (schedule_namespace, schedule_name) DO UPDATE SET change_seq = GREATEST(schedule_advisory_cursors.change_seq, EXCLUDED.change_seq)",
    )
    .bind(namespace)
    .bind(name)
    .bind(seq)
    .execute(pool)
    .await?;
    Ok(())
}
