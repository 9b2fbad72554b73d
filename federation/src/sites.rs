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

/// A key trusted to sign one site's bundles, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct SiteKey {
    /// The site whose bundles it verifies.
    pub site_id: String,
    /// `sha256:<hex>` of the key (SubjectPublicKeyInfo DER).
    pub key_id: String,
    /// The public key, PEM.
    pub public_key_pem: String,
    /// When it was added.
    pub added_at: DateTime<Utc>,
    /// Not trusted from then on.
    pub not_after: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl SiteKey {
    /// Trusted at `now`: not revoked, not past `not_after`.
    pub fn active_at(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.not_after.is_none_or(|end| now < end)
    }
}

/// Why a key cannot be added.
#[derive(Debug, thiserror::Error)]
pub enum SiteKeyError {
    /// Not a PEM public key of the bundle-signing kind.
    #[error("not an ES256 (P-256) PEM public key: {0}")]
    BadKey(crate::dsse::KeyError),
    /// The site is not known.
    #[error("site {0} is not known: add it first with `federation sites add {0}`")]
    UnknownSite(String),
    /// The key was revoked for this site; revocation is final.
    #[error("key {key_id} was revoked for site {site_id}; a revoked key is not added back")]
    Revoked {
        /// The site.
        site_id: String,
        /// The key.
        key_id: String,
    },
    /// The database.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

const KEY_COLUMNS: &str = "site_id, key_id, public_key_pem, added_at, not_after, revoked_at";

/// Trust `public_key_pem` for `site_id`'s bundles (until `not_after`, when given). Adding
/// a key again updates its `not_after`.
pub async fn add_key(
    pool: &PgPool,
    site_id: &str,
    public_key_pem: &str,
    not_after: Option<DateTime<Utc>>,
) -> Result<SiteKey, SiteKeyError> {
    let mut parsed = crate::dsse::TrustedKeys::default();
    parsed
        .push_pem(public_key_pem, Some(site_id))
        .map_err(SiteKeyError::BadKey)?;
    let key_id = parsed
        .key_ids()
        .first()
        .map(|id| id.to_string())
        .expect("one key was pushed");
    let mut conn = pool.acquire().await?;
    if get(&mut conn, site_id, false).await?.is_none() {
        return Err(SiteKeyError::UnknownSite(site_id.to_string()));
    }
    let stored: SiteKey = sqlx::query_as(&format!(
        "INSERT INTO federation_site_keys AS k (site_id, key_id, public_key_pem, not_after)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (site_id, key_id) DO UPDATE
             SET not_after = CASE WHEN k.revoked_at IS NULL THEN $4 ELSE k.not_after END
         RETURNING {KEY_COLUMNS}"
    ))
    .bind(site_id)
    .bind(&key_id)
    .bind(public_key_pem.trim())
    .bind(not_after)
    .fetch_one(&mut *conn)
    .await?;
    if stored.revoked_at.is_some() {
        return Err(SiteKeyError::Revoked {
            site_id: site_id.to_string(),
            key_id,
        });
    }
    Ok(stored)
}

/// The keys of one site, or of every site, by site and time added.
pub async fn list_keys(pool: &PgPool, site_id: Option<&str>) -> sqlx::Result<Vec<SiteKey>> {
    sqlx::query_as(&format!(
        "SELECT {KEY_COLUMNS} FROM federation_site_keys
         WHERE $1::text IS NULL OR site_id = $1 ORDER BY site_id, added_at, key_id"
    ))
    .bind(site_id)
    .fetch_all(pool)
    .await
}

/// Revoke a key for a site; false when the site has no such key.
pub async fn revoke_key(pool: &PgPool, site_id: &str, key_id: &str) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE federation_site_keys SET revoked_at = coalesce(revoked_at, now())
         WHERE site_id = $1 AND key_id = $2",
    )
    .bind(site_id)
    .bind(key_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The keys trusted for `site_id`'s bundles at `now`: `file_keys` narrowed to the site,
/// less the keys the database revoked (or retired) for it, plus its active database keys.
pub async fn trusted_for_site(
    conn: &mut PgConnection,
    site_id: &str,
    file_keys: &crate::dsse::TrustedKeys,
    now: DateTime<Utc>,
) -> sqlx::Result<crate::dsse::TrustedKeys> {
    let stored: Vec<SiteKey> = sqlx::query_as(&format!(
        "SELECT {KEY_COLUMNS} FROM federation_site_keys WHERE site_id = $1"
    ))
    .bind(site_id)
    .fetch_all(conn)
    .await?;
    let withdrawn: Vec<&str> = stored
        .iter()
        .filter(|k| !k.active_at(now))
        .map(|k| k.key_id.as_str())
        .collect();
    let mut trusted = file_keys.for_site(site_id).without(&withdrawn);
    for key in stored.iter().filter(|k| k.active_at(now)) {
        // Rows were checked when added; one that no longer parses is skipped, not fatal.
        if let Err(error) = trusted.push_pem(&key.public_key_pem, Some(site_id)) {
            tracing::warn!(site = site_id, key = %key.key_id, %error, "stored site key does not parse");
        }
    }
    Ok(trusted)
}
