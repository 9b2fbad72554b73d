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
        // Each member is hashed and compressed while PostgreSQL is still sending it.
        let mut writer = BundleWriter::new(options.compression_level);
        for kind in ChangeKind::ALL {
            writer.next_member();
            advisories::stream_changes(&mut tx, kind, after, last.seq, |lines| {
                writer.joined_lines(lines)
            })
            .await?;
        }
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
    tx.commit().await?;
    Ok(bundles)
}
