//! Federation partners: policy, cursor, counters and sync history.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

/// A federation partner as stored.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct Site {
    /// Site id.
    pub site_id: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Imports from a disabled site are refused.
    pub enabled: bool,
    /// Largest bundle accepted.
    pub max_bundle_size_bytes: i64,
    /// Sources accepted; all when empty.
    pub allowed_sources: Vec<String>,
    /// Refuse unsigned bundles.
    pub require_signature: bool,
    /// Allow `--skip-signature` for this site.
    pub skip_signature_trusted: bool,
    /// Cursor of the last imported bundle, in the site's sequence.
    pub last_cursor: Option<String>,
    /// When the last import finished.
    pub last_sync_at: Option<DateTime<Utc>>,
    /// Bundles imported.
    pub bundles_imported: i64,
    /// Items imported.
    pub total_items_imported: i64,
}

/// Changes to a site's policy; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct PolicyUpdate {
    /// Display name.
    pub display_name: Option<String>,
    /// Enabled.
    pub enabled: Option<bool>,
    /// Largest bundle accepted.
    pub max_bundle_size_bytes: Option<i64>,
    /// Sources accepted.
    pub allowed_sources: Option<Vec<String>>,
    /// Refuse unsigned bundles.
    pub require_signature: Option<bool>,
    /// Allow `--skip-signature`.
    pub skip_signature_trusted: Option<bool>,
}

const SITE_COLUMNS: &str = "site_id, display_name, enabled, max_bundle_size_bytes, allowed_sources, require_signature, \
     skip_signature_trusted, last_cursor, last_sync_at, bundles_imported, total_items_imported";

/// One site, locked for update when `for_update`.
pub async fn get(
    conn: &mut PgConnection,
    site_id: &str,
    for_update: bool,
) -> sqlx::Result<Option<Site>> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    sqlx::query_as(&format!(
        "SELECT {SITE_COLUMNS} FROM federation_sites WHERE site_id = $1{lock}"
    ))
    .bind(site_id)
    .fetch_optional(conn)
    .await
}

/// Every site, by id.
pub async fn list(pool: &PgPool) -> sqlx::Result<Vec<Site>> {
    sqlx::query_as(&format!(
        "SELECT {SITE_COLUMNS} FROM federation_sites ORDER BY site_id"
    ))
    .fetch_all(pool)
    .await
}

/// Create the site if needed and apply `update`.
pub async fn set_policy(pool: &PgPool, site_id: &str, update: &PolicyUpdate) -> sqlx::Result<Site> {
    sqlx::query_as(&format!(
        "INSERT INTO federation_sites AS s (site_id, display_name, enabled, max_bundle_size_bytes, allowed_sources,
             require_signature, skip_signature_trusted)
         VALUES ($1, $2, coalesce($3, TRUE), coalesce($4, 104857600), coalesce($5, '{{}}'), coalesce($6, TRUE), coalesce($7, FALSE))
         ON CONFLICT (site_id) DO UPDATE SET
             display_name = coalesce($2, s.display_name), enabled = coalesce($3, s.enabled),
             max_bundle_size_bytes = coalesce($4, s.max_bundle_size_bytes), allowed_sources = coalesce($5, s.allowed_sources),
             require_signature = coalesce($6, s.require_signature), skip_signature_trusted = coalesce($7, s.skip_signature_trusted)
         RETURNING {SITE_COLUMNS}"
    ))
    .bind(site_id)
    .bind(&update.display_name)
    .bind(update.enabled)
    .bind(update.max_bundle_size_bytes)
    .bind(&update.allowed_sources)
    .bind(update.require_signature)
    .bind(update.skip_signature_trusted)
    .fetch_one(pool)
    .await
}

/// One import attempt.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct HistoryEntry {
    /// Bundle hash.
    pub bundle_hash: String,
    /// Cursor the bundle started after.
    pub since_cursor: Option<String>,
    /// Cursor the bundle ended at.
    pub cursor: Option<String>,
    /// Whether it was applied.
    pub success: bool,
    /// Counts of the import response.
    pub counts: serde_json::Value,
    /// Why it failed.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: i64,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
}

/// The latest `limit` attempts for a site, newest first.
pub async fn history(pool: &PgPool, site_id: &str, limit: i64) -> sqlx::Result<Vec<HistoryEntry>> {
    sqlx::query_as(
        "SELECT bundle_hash, since_cursor, cursor, success, counts, error, duration_ms, finished_at
         FROM federation_sync_history WHERE site_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(site_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Record an attempt.
pub async fn record_history(
    conn: &mut PgConnection,
    site_id: &str,
    entry: &HistoryEntry,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO federation_sync_history (site_id, bundle_hash, since_cursor, cursor, success, counts, error, duration_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(site_id)
    .bind(&entry.bundle_hash)
    .bind(&entry.since_cursor)
    .bind(&entry.cursor)
    .bind(entry.success)
    .bind(&entry.counts)
    .bind(&entry.error)
    .bind(entry.duration_ms)
    .execute(conn)
    .await?;
    Ok(())
}
