//! Export of the changes after a cursor as one or more signed bundles.

use sqlx::PgPool;
use stellaops_store::advisories::{self, Change};

use crate::bundle::{self, Counts};
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
        let changes = advisories::changes_after(&mut tx, after, limit).await?;
        let Some((last, _)) = changes.last() else {
            break;
        };
        let cursor = Cursor {
            at: last.at,
            seq: last.seq,
        };
        let (mut canonicals, mut edges, mut deletions) = (Vec::new(), Vec::new(), Vec::new());
        let full = changes.len() as i64 == limit;
        for (_, change) in changes {
            match change {
                Change::Canonical(c) => canonicals.push(*c),
                Change::Edge(e) => edges.push(e),
                Change::Deletion(d) => deletions.push(d),
            }
        }
        let bytes = bundle::write(
            &bundle::Contents {
                site_id: &options.site_id,
                since_cursor: since.map(|c| c.to_string()),
                cursor: cursor.to_string(),
                canonicals: &canonicals,
                edges: &edges,
                deletions: &deletions,
            },
            options.signer,
            options.compression_level,
        );
        bundles.push(ExportedBundle {
            bundle_hash: advisories::sha256_hex(&bytes),
            bytes,
            since_cursor: since.map(|c| c.to_string()),
            cursor: cursor.to_string(),
            counts: Counts {
                canonicals: canonicals.len() as u64,
                edges: edges.len() as u64,
                deletions: deletions.len() as u64,
            },
        });
        since = Some(cursor);
        if !full {
            break;
        }
    }
    tx.commit().await?;
    Ok(bundles)
}
