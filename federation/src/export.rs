//! Export of the changes after a cursor as one or more signed bundles.

use sqlx::PgPool;
use stellaops_store::advisories::{self, ChangeKind};

use crate::bundle::{BundleWriter, Counts};
use crate::cursor::Cursor;
use crate::dsse::Signer;

/// What to export.
pub struct ExportOptions<'a> {
    /// This site's id, written into each manifest.
    pub site_id: String,
    /// Export the changes after this cursor; everything when `None`.
    pub since: Option<Cursor>,
    /// Most items (canonicals + edges + deletions) per bundle.
    pub max_items: usize,
    /// zstd level.
    pub compression_level: i32,
    /// Signs each bundle when given.
    pub signer: Option<&'a Signer>,
}

/// One exported bundle.
#[derive(Clone, Debug)]
pub struct ExportedBundle {
    /// The `.tar.zst` bytes.
    pub bytes: Vec<u8>,
    /// `sha256:<hex>` of the bytes.
    pub bundle_hash: String,
    /// Cursor it starts after.
    pub since_cursor: Option<String>,
    /// Cursor of its last change (the next export's `since`).
    pub cursor: String,
    /// Item counts.
    pub counts: Counts,
}

/// Export every change after `options.since`, split into bundles of at most
/// `max_items`, all read from one database snapshot. No changes: no bundles.
pub async fn export(
    pool: &PgPool,
    options: &ExportOptions<'_>,
) -> Result<Vec<ExportedBundle>, stellaops_store::Error> {
    export_observed(pool, options, &|_| {}).await
}

/// [`export`], telling `observe` about each bundle as soon as it is written (progress).
pub async fn export_observed(
    pool: &PgPool,
    options: &ExportOptions<'_>,
    observe: &(dyn Fn(&ExportedBundle) + Sync),
) -> Result<Vec<ExportedBundle>, stellaops_store::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    // Serial plans only: stream_changes relies on an aggregate consuming a sorted
    // subquery in order, which a parallel plan would not keep.
    sqlx::query("SET LOCAL max_parallel_workers_per_gather = 0")
        .execute(&mut *tx)
        .await?;
    // Edges are read on a second connection in the same snapshot, at the same time as the
    // canonicals: PostgreSQL's reading is most of an export's time.
    let mut edges_tx = second_reader(pool, &mut tx).await?;
    let mut bundles = Vec::new();
    let mut since = options.since;
    let limit = i64::try_from(options.max_items.max(1)).unwrap_or(i64::MAX);
    loop {
        let after = since.map_or(0, |c| c.seq);
        let started = std::time::Instant::now();
        let cut = advisories::change_cut(&mut tx, after, limit).await?;
        let Some(last) =
            advisories::last_change_in(&mut tx, after, cut.unwrap_or(i64::MAX)).await?
        else {
            break;
        };
        let cursor = Cursor {
            at: last.at,
            seq: last.seq,
        };
        // Each member is hashed and compressed while PostgreSQL is still sending it, the
        // canonicals and the edges at the same time.
        let mut writer = BundleWriter::new(options.compression_level);
        let [canonicals, edges, deletions] = writer.data_members();
        let read_canonicals =
            advisories::stream_changes(&mut tx, ChangeKind::Canonical, after, last.seq, |lines| {
                canonicals.joined_lines_shared(lines)
            });
        match &mut edges_tx {
            Some(edges_tx) => {
                let read_edges = advisories::stream_changes(
                    edges_tx,
                    ChangeKind::Edge,
                    after,
                    last.seq,
                    |lines| edges.joined_lines_shared(lines),
                );
                let (read_canonicals, read_edges) = tokio::join!(read_canonicals, read_edges);
                read_canonicals?;
                read_edges?;
            }
            None => {
                read_canonicals.await?;
                advisories::stream_changes(&mut tx, ChangeKind::Edge, after, last.seq, |lines| {
                    edges.joined_lines_shared(lines)
                })
                .await?;
            }
        }
        advisories::stream_changes(&mut tx, ChangeKind::Deletion, after, last.seq, |lines| {
            deletions.joined_lines_shared(lines)
        })
        .await?;
        let counts = writer.counts();
        let since_cursor = since.map(|c| c.to_string());
        let bytes = writer.finish(
            &options.site_id,
            since_cursor.clone(),
            cursor.to_string(),
            options.signer,
        );
        tracing::debug!(
            changes = counts.total(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "bundle written"
        );
        bundles.push(ExportedBundle {
            bundle_hash: advisories::sha256_hex(&bytes),
            bytes,
            since_cursor,
            cursor: cursor.to_string(),
            counts,
        });
        if let Some(bundle) = bundles.last() {
            observe(bundle);
        }
        since = Some(cursor);
        if cut.is_none() {
            break;
        }
    }
    if let Some(edges_tx) = edges_tx {
        edges_tx.commit().await?;
    }
    tx.commit().await?;
    Ok(bundles)
}

/// A second read-only transaction in `tx`'s snapshot (`pg_export_snapshot`), when the
/// pool has a connection to spare within a second; `None` (read everything on `tx`)
/// otherwise, so an export never waits long for a busy pool.
async fn second_reader(
    pool: &PgPool,
    tx: &mut sqlx::PgConnection,
) -> Result<Option<sqlx::Transaction<'static, sqlx::Postgres>>, stellaops_store::Error> {
    let spare = pool.num_idle() > 0 || pool.size() < pool.options().get_max_connections();
    if !spare {
        return Ok(None);
    }
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut *tx)
        .await?;
    // SET TRANSACTION SNAPSHOT takes no parameters; the id is PostgreSQL's own
    // (hex digits and dashes), checked before it is spliced in.
    if !snapshot.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Ok(None);
    }
    let acquire = tokio::time::timeout(std::time::Duration::from_secs(1), pool.begin());
    let Ok(Ok(mut second)) = acquire.await else {
        return Ok(None);
    };
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *second)
        .await?;
    sqlx::query(&format!("SET TRANSACTION SNAPSHOT '{snapshot}'"))
        .execute(&mut *second)
        .await?;
    sqlx::query("SET LOCAL max_parallel_workers_per_gather = 0")
        .execute(&mut *second)
        .await?;
    tracing::debug!(%snapshot, "edges read on a second connection");
    Ok(Some(second))
}
