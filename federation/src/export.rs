//! Export of the changes after a cursor as one or more signed bundles.

use sqlx::PgPool;
use stellaops_store::advisories::{self, Change};

use crate::bundle::{self, Counts, NdjsonMembers};
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
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let mut bundles = Vec::new();
    let mut since = options.since;
    let limit = options.max_items.max(1) as i64;
    loop {
        let after = since.map_or(0, |c| c.seq);
        let read_started = std::time::Instant::now();
        let changes = advisories::changes_after(&mut tx, after, limit).await?;
        tracing::debug!(
            changes = changes.len(),
            elapsed_ms = read_started.elapsed().as_millis() as u64,
            "changes read"
        );
        let Some((last, _)) = changes.last() else {
            break;
        };
        let cursor = Cursor {
            at: last.at,
            seq: last.seq,
        };
        let full = changes.len() as i64 == limit;
        let mut members = NdjsonMembers {
            canonicals: Vec::new(),
            edges: Vec::new(),
            deletions: Vec::new(),
            counts: Counts::default(),
        };
        for (_, change) in changes {
            let (buffer, count, line) = match change {
                Change::Canonical(line) => (
                    &mut members.canonicals,
                    &mut members.counts.canonicals,
                    line,
                ),
                Change::Edge(line) => (&mut members.edges, &mut members.counts.edges, line),
                Change::Deletion(line) => {
                    (&mut members.deletions, &mut members.counts.deletions, line)
                }
            };
            buffer.extend_from_slice(line.as_bytes());
            buffer.push(b'\n');
            *count += 1;
        }
        let counts = members.counts.clone();
        let since_cursor = since.map(|c| c.to_string());
        let bytes = bundle::write_members(
            &options.site_id,
            since_cursor.clone(),
            cursor.to_string(),
            members,
            options.signer,
            options.compression_level,
        );
        tracing::debug!(
            elapsed_ms = read_started.elapsed().as_millis() as u64,
            "bundle written"
        );
        bundles.push(ExportedBundle {
            bundle_hash: advisories::sha256_hex(&bytes),
            bytes,
            since_cursor,
            cursor: cursor.to_string(),
            counts,
        });
        since = Some(cursor);
        if !full {
            break;
        }
    }
    tx.commit().await?;
    Ok(bundles)
}
