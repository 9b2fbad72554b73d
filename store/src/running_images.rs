//! What runs where (`running_images`): the operator's leader keeps one row per workload
//! container with a known image digest, writing only what changed since its last pass; the
//! reports API reads them for workload VulnerabilityReports and ImageVerdicts' `runningIn`.

use sqlx::PgPool;

/// One workload container and the image digest it runs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, sqlx::FromRow)]
pub struct RunningImage {
    /// Namespace of the workload.
    pub namespace: String,
    /// Name of its VulnerabilityReport (unique in the namespace).
    pub report_name: String,
    /// `Deployment`, `StatefulSet`, `DaemonSet`, `Job`, `CronJob`, `Pod`, …
    pub workload_kind: String,
    /// Name of the workload.
    pub workload_name: String,
    /// Container name.
    pub container: String,
    /// Image as the container status reports it.
    pub image_ref: String,
    /// Digest it runs (`sha256:…`).
    pub image_digest: String,
}

/// Every stored row, in key order (what a new leader starts from).
pub async fn all(pool: &PgPool) -> crate::Result<Vec<RunningImage>> {
    Ok(sqlx::query_as(
        "SELECT namespace, report_name, workload_kind, workload_name, container, image_ref, image_digest
         FROM running_images ORDER BY namespace, report_name",
    )
    .fetch_all(pool)
    .await?)
}

/// Write `upserts` (new or changed rows), remove the rows keyed `removed` ((namespace,
/// report name)) and append `events` (the `image.changed` events of the rows that moved to
/// another digest) in one transaction: readers see one pass or the next, and an event
/// exists exactly when its move was recorded.
pub async fn apply(
    pool: &PgPool,
    upserts: &[RunningImage],
    removed: &[(String, String)],
    events: &[crate::outbox::NewEvent],
) -> crate::Result<()> {
    if upserts.is_empty() && removed.is_empty() && events.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    crate::outbox::publish_many(&mut tx, events).await?;
    if !removed.is_empty() {
        let (namespaces, names): (Vec<&str>, Vec<&str>) = removed
            .iter()
            .map(|(ns, name)| (ns.as_str(), name.as_str()))
            .unzip();
        sqlx::query(
            "DELETE FROM running_images r USING unnest($1::text[], $2::text[]) AS k(ns, name)
             WHERE r.namespace = k.ns AND r.report_name = k.name",
        )
        .bind(&namespaces)
        .bind(&names)
        .execute(&mut *tx)
        .await?;
    }
    if !upserts.is_empty() {
        sqlx::query(
            "INSERT INTO running_images
                 (namespace, report_name, workload_kind, workload_name, container, image_ref, image_digest)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
             ON CONFLICT (namespace, report_name) DO UPDATE SET
                 workload_kind = excluded.workload_kind, workload_name = excluded.workload_name,
                 container = excluded.container, image_ref = excluded.image_ref,
                 image_digest = excluded.image_digest, seen_at = now()",
        )
        .bind(column(upserts, |r| &r.namespace))
        .bind(column(upserts, |r| &r.report_name))
        .bind(column(upserts, |r| &r.workload_kind))
        .bind(column(upserts, |r| &r.workload_name))
        .bind(column(upserts, |r| &r.container))
        .bind(column(upserts, |r| &r.image_ref))
        .bind(column(upserts, |r| &r.image_digest))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// One field of every row, for an `unnest` insert.
fn column(rows: &[RunningImage], field: fn(&RunningImage) -> &str) -> Vec<&str> {
    rows.iter().map(field).collect()
}

/// The workload containers running each of `digests`: (digest, row), at most `per_digest`
/// of each, in (namespace, report name) order.
pub async fn running_of(
    pool: &PgPool,
    digests: &[&str],
    per_digest: i64,
) -> crate::Result<Vec<RunningImage>> {
    if digests.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_as(
        "SELECT namespace, report_name, workload_kind, workload_name, container, image_ref, image_digest
         FROM (SELECT *, row_number() OVER (PARTITION BY image_digest ORDER BY namespace, report_name) AS n
               FROM running_images WHERE image_digest = ANY($1)) t
         WHERE n <= $2 ORDER BY image_digest, namespace, report_name",
    )
    .bind(digests)
    .bind(per_digest)
    .fetch_all(pool)
    .await?)
}
