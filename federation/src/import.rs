//! Import of a bundle: every check first, then everything in one transaction, so a
//! refused or failed import changes nothing. Answers with the seed's response shape.

use std::collections::{BTreeSet, HashSet};
use std::time::Instant;

use chrono::Utc;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use stellaops_store::advisories::{self, CanonicalAdvisory};
use stellaops_store::outbox::{self, NewEvent};

use crate::bundle::{self, BundleError, OpenedBundle};
use crate::cursor::Cursor;
use crate::dsse::TrustedKeys;
use crate::sites::{self, HistoryEntry};

/// Conflict strategy (the seed's `on_conflict`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    /// The remote value wins.
    #[default]
    PreferRemote,
    /// The local value is kept.
    PreferLocal,
    /// Abort on the first conflict.
    Fail,
}

impl std::str::FromStr for OnConflict {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "prefer_remote" => Ok(OnConflict::PreferRemote),
            "prefer_local" => Ok(OnConflict::PreferLocal),
            "fail" => Ok(OnConflict::Fail),
            other => Err(format!(
                "unknown conflict strategy {other:?}: use prefer_remote, prefer_local or fail"
            )),
        }
    }
}

/// Import options (the seed's query parameters).
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Validate and compute the outcome, write nothing.
    pub dry_run: bool,
    /// Skip signature verification; only for sites marked trusted.
    pub skip_signature: bool,
    /// Import even when the cursor is not after the current one (or leaves a gap), and
    /// re-import a bundle already imported.
    pub force: bool,
    /// Conflict strategy.
    pub on_conflict: OnConflict,
    /// When set, the bundle's SHA-256 must equal it (`sha256:<hex>`).
    pub expected_hash: Option<String>,
    /// Absolute size limit applied before the site is known.
    pub max_bundle_size_bytes: u64,
    /// The site the bundle must come from (a sync of one site, a token bound to one site):
    /// a bundle whose manifest names another `site_id` is refused before anything else.
    pub expected_site_id: Option<String>,
    /// Cap on the decompressed archive; `None`: 64 × `max_bundle_size_bytes`.
    pub max_expanded_bytes: Option<u64>,
}

/// The seed's counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportCounts {
    /// New canonicals.
    pub canonical_created: u64,
    /// Canonicals replaced by the remote value.
    pub canonical_updated: u64,
    /// Canonicals unchanged or kept local.
    pub canonical_skipped: u64,
    /// Source edges added or changed.
    pub edges_added: u64,
    /// Deletions applied.
    pub deletions_processed: u64,
}

/// One conflict, in the seed's shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Conflict {
    /// The canonical.
    pub merge_hash: String,
    /// The field that differs.
    pub field: String,
    /// Local value.
    pub local_value: Value,
    /// Remote value.
    pub remote_value: Value,
    /// Strategy applied.
    pub resolution: OnConflict,
}

/// The seed's import response.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ImportResponse {
    /// True when the import was (or, for a dry run, would be) applied.
    pub success: bool,
    /// True for a dry run (nothing written).
    pub dry_run: bool,
    /// Site the bundle came from.
    pub site_id: String,
    /// `sha256:<hex>` of the bundle.
    pub bundle_hash: String,
    /// The bundle's cursor, now this site's cursor for the sender.
    pub imported_cursor: String,
    /// Counts.
    pub counts: ImportCounts,
    /// Conflicts met.
    pub conflicts: Vec<Conflict>,
    /// Wall time.
    pub duration_ms: u64,
    /// Key that signed the bundle, when verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
}

/// Why an import was refused. Messages start with the seed's wording.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Structure, size, version or signature.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// Unknown or disabled site.
    #[error("Site not allowed: {0}")]
    SiteNotAllowed(String),
    /// The bundle names another site than the one being synced (or authorised).
    #[error("Site mismatch: the bundle is from site {got}, expected site {expected}")]
    WrongSite {
        /// The site being synced.
        expected: String,
        /// The bundle's `site_id`.
        got: String,
    },
    /// An edge from a source the site may not send.
    #[error("Source not allowed: {source_name} (site {site} may send {allowed})")]
    SourceNotAllowed {
        /// The source.
        source_name: String,
        /// The site.
        site: String,
        /// What it may send.
        allowed: String,
    },
    /// `--skip-signature` for a site not marked trusted.
    #[error(
        "Signature verification failed: skipping it requires a site marked trusted (sites policy --skip-signature-trusted)"
    )]
    SkipNotTrusted,
    /// Hash differs from the expected one.
    #[error("Bundle hash mismatch: expected {expected}, got {actual}")]
    HashMismatch {
        /// Expected.
        expected: String,
        /// Actual.
        actual: String,
    },
    /// Stale bundle.
    #[error("Cursor not after current: bundle cursor {bundle} is not after {current}")]
    CursorNotAfter {
        /// Bundle cursor.
        bundle: String,
        /// Current cursor.
        current: String,
    },
    /// A bundle in between is missing.
    #[error(
        "Cursor gap: bundle starts after {since} but this site has imported up to {current}; import the bundles in between first (or --force)"
    )]
    CursorGap {
        /// Bundle start.
        since: String,
        /// Current cursor.
        current: String,
    },
    /// Duplicate.
    #[error("Bundle already imported: {0}")]
    AlreadyImported(String),
    /// `on_conflict: fail`.
    #[error(
        "Conflict on {merge_hash} field {field}: import aborted (on_conflict=fail); nothing was written"
    )]
    Conflict {
        /// The canonical.
        merge_hash: String,
        /// First differing field.
        field: String,
    },
    /// A malformed cursor inside the bundle.
    #[error("Bundle is corrupt: {0}")]
    BadCursor(String),
    /// Database failure; the transaction was rolled back.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Store failure; the transaction was rolled back.
    #[error(transparent)]
    Store(#[from] stellaops_store::Error),
}

fn differing_fields(
    local: &CanonicalAdvisory,
    remote: &CanonicalAdvisory,
) -> Vec<(String, Value, Value)> {
    let (l, r) = (
        serde_json::to_value(local).unwrap_or_default(),
        serde_json::to_value(remote).unwrap_or_default(),
    );
    let keys: BTreeSet<&String> = l
        .as_object()
        .into_iter()
        .chain(r.as_object())
        .flat_map(|m| m.keys())
        .collect();
    keys.into_iter()
        .filter(|k| l.get(*k) != r.get(*k))
        .map(|k| {
            (
                k.clone(),
                l.get(k).cloned().unwrap_or(Value::Null),
                r.get(k).cloned().unwrap_or(Value::Null),
            )
        })
        .collect()
}

async fn check_site_policy(
    pool: &PgPool,
    opened: &OpenedBundle,
    options: &ImportOptions,
    trusted: &TrustedKeys,
) -> Result<Option<String>, ImportError> {
    let site_id = &opened.manifest.site_id;
    let mut conn = pool.acquire().await?;
    let site = sites::get(&mut conn, site_id, false).await?;
    let site = site
        .filter(|s| s.enabled)
        .ok_or_else(|| ImportError::SiteNotAllowed(site_id.clone()))?;
    // The keys given to the command (files) and the site's keys in the database.
    let trusted = &sites::trusted_for_site(&mut conn, site_id, trusted, chrono::Utc::now()).await?;
    if opened.size > site.max_bundle_size_bytes as u64 {
        return Err(BundleError::TooLarge {
            size: opened.size,
            max: site.max_bundle_size_bytes as u64,
        }
        .into());
    }
    if let Some(expected) = &options.expected_hash
        && *expected != opened.bundle_hash
    {
        return Err(ImportError::HashMismatch {
            expected: expected.clone(),
            actual: opened.bundle_hash.clone(),
        });
    }
    let signed_by = if options.skip_signature {
        if !site.skip_signature_trusted {
            return Err(ImportError::SkipNotTrusted);
        }
        // Even when skipping, a signature we can check is never accepted if it is bad.
        match &opened.signature {
            Some(_) if !trusted.is_empty() => Some(opened.verify_signature(trusted)?),
            _ => None,
        }
    } else if opened.signature.is_some() {
        Some(opened.verify_signature(trusted)?)
    } else if site.require_signature {
        return Err(BundleError::Unsigned.into());
    } else {
        None
    };
    if !site.allowed_sources.is_empty()
        && let Some(edge) = opened
            .edges
            .iter()
            .find(|e| !site.allowed_sources.contains(&e.source))
    {
        return Err(ImportError::SourceNotAllowed {
            source_name: edge.source.clone(),
            site: site_id.clone(),
            allowed: site.allowed_sources.join(", "),
        });
    }
    Ok(signed_by)
}

/// Import `bytes`. On refusal the store is untouched (and, unless a dry run, the attempt
/// is recorded in the site's history).
pub async fn import(
    pool: &PgPool,
    bytes: &[u8],
    options: &ImportOptions,
    trusted: &TrustedKeys,
) -> Result<ImportResponse, ImportError> {
    import_observed(pool, bytes, options, trusted, &|_, _| {}).await
}

/// [`import`], telling `observe(done, total)` how many of the bundle's items (canonicals,
/// edges, deletions) are written after each step (progress).
pub async fn import_observed(
    pool: &PgPool,
    bytes: &[u8],
    options: &ImportOptions,
    trusted: &TrustedKeys,
    observe: &(dyn Fn(u64, u64) + Sync),
) -> Result<ImportResponse, ImportError> {
    let started = Instant::now();
    let opened = match options.max_expanded_bytes {
        Some(expanded) => bundle::open_with_limit(bytes, options.max_bundle_size_bytes, expanded)?,
        None => bundle::open(bytes, options.max_bundle_size_bytes)?,
    };
    if let Some(expected) = &options.expected_site_id
        && *expected != opened.manifest.site_id
    {
        // Not recorded in either site's history: the bundle's claim is what is in doubt.
        return Err(ImportError::WrongSite {
            expected: expected.clone(),
            got: opened.manifest.site_id.clone(),
        });
    }
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "bundle opened and checked"
    );
    let result = apply(pool, &opened, options, trusted, started, observe).await;
    if !options.dry_run && !matches!(result, Err(ImportError::SiteNotAllowed(_))) {
        let entry = HistoryEntry {
            bundle_hash: opened.bundle_hash.clone(),
            since_cursor: opened.manifest.since_cursor.clone(),
            cursor: Some(opened.manifest.cursor.clone()),
            success: result.is_ok(),
            counts: result
                .as_ref()
                .map(|r| json!(r.counts))
                .unwrap_or_else(|_| json!({})),
            error: result.as_ref().err().map(ToString::to_string),
            duration_ms: started.elapsed().as_millis() as i64,
            finished_at: Utc::now(),
        };
        if let Ok(mut conn) = pool.acquire().await
            && let Err(error) =
                sites::record_history(&mut conn, &opened.manifest.site_id, &entry).await
        {
            tracing::warn!(%error, "could not record the import in the site history");
        }
    }
    result
}

async fn apply(
    pool: &PgPool,
    opened: &OpenedBundle,
    options: &ImportOptions,
    trusted: &TrustedKeys,
    started: Instant,
    observe: &(dyn Fn(u64, u64) + Sync),
) -> Result<ImportResponse, ImportError> {
    let total = (opened.canonicals.len() + opened.edges.len() + opened.deletions.len()) as u64;
    observe(0, total);
    let signed_by = check_site_policy(pool, opened, options, trusted).await?;
    let manifest = &opened.manifest;
    let bundle_cursor: Cursor = manifest
        .cursor
        .parse()
        .map_err(|e: crate::cursor::InvalidCursor| ImportError::BadCursor(e.to_string()))?;
    let since: Option<Cursor> = manifest
        .since_cursor
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e: crate::cursor::InvalidCursor| ImportError::BadCursor(e.to_string()))?;

    let mut tx = pool.begin().await?;
    advisories::lock_changes(&mut tx).await?;
    let site = sites::get(&mut tx, &manifest.site_id, true)
        .await?
        .filter(|s| s.enabled)
        .ok_or_else(|| ImportError::SiteNotAllowed(manifest.site_id.clone()))?;
    if !options.force {
        let duplicate: Option<String> = sqlx::query_scalar(
            "SELECT cursor FROM federation_imported_bundles WHERE bundle_hash = $1",
        )
        .bind(&opened.bundle_hash)
        .fetch_optional(&mut *tx)
        .await?;
        if duplicate.is_some() {
            return Err(ImportError::AlreadyImported(opened.bundle_hash.clone()));
        }
        let current: Option<Cursor> = site.last_cursor.as_deref().and_then(|c| c.parse().ok());
        if let Some(current) = current {
            if bundle_cursor <= current {
                return Err(ImportError::CursorNotAfter {
                    bundle: manifest.cursor.clone(),
                    current: current.to_string(),
                });
            }
            if let Some(since) = since
                && since.seq > current.seq
            {
                return Err(ImportError::CursorGap {
                    since: since.to_string(),
                    current: current.to_string(),
                });
            }
        } else if let Some(since) = since {
            return Err(ImportError::CursorGap {
                since: since.to_string(),
                current: "nothing (no bundle imported yet)".into(),
            });
        }
    }

    let mut counts = ImportCounts::default();
    let mut conflicts = Vec::new();
    let hashes: Vec<String> = opened
        .canonicals
        .iter()
        .map(|c| c.merge_hash.clone())
        .collect();
    let stored = advisories::stored_canonicals(&mut tx, &hashes).await?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "stored canonicals read"
    );
    let mut to_write = Vec::new();
    let mut actions = Vec::new();
    for remote in &opened.canonicals {
        match stored.get(&remote.merge_hash) {
            None => {
                counts.canonical_created += 1;
                actions.push((remote, "Created"));
                to_write.push(remote);
            }
            Some(local) if local.content_hash == remote.content_hash() => {
                counts.canonical_skipped += 1
            }
            Some(local) if local.origin_site.as_deref() == Some(manifest.site_id.as_str()) => {
                // The sender's own earlier value: a plain update, not a conflict.
                counts.canonical_updated += 1;
                actions.push((remote, "Updated"));
                to_write.push(remote);
            }
            Some(local) => {
                let fields = differing_fields(&local.advisory, remote);
                if options.on_conflict == OnConflict::Fail {
                    let field = fields.first().map(|f| f.0.clone()).unwrap_or_default();
                    return Err(ImportError::Conflict {
                        merge_hash: remote.merge_hash.clone(),
                        field,
                    });
                }
                for (field, local_value, remote_value) in fields {
                    tracing::info!(merge_hash = %remote.merge_hash, %field, resolution = ?options.on_conflict, "federation conflict");
                    conflicts.push(Conflict {
                        merge_hash: remote.merge_hash.clone(),
                        field,
                        local_value,
                        remote_value,
                        resolution: options.on_conflict,
                    });
                }
                if options.on_conflict == OnConflict::PreferRemote {
                    counts.canonical_updated += 1;
                    actions.push((remote, "Updated"));
                    to_write.push(remote);
                } else {
                    counts.canonical_skipped += 1;
                }
            }
        }
    }
    let written = advisories::write_canonicals(&mut tx, &to_write, Some(&manifest.site_id), |h| {
        stored.contains_key(h)
    })
    .await?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "canonicals written"
    );
    observe(opened.canonicals.len() as u64, total);
    let created: HashSet<&str> = actions
        .iter()
        .filter(|(_, action)| *action == "Created")
        .map(|(c, _)| c.merge_hash.as_str())
        .collect();
    counts.edges_added =
        advisories::write_edges(&mut tx, &opened.edges, |h| created.contains(h)).await?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "edges written"
    );
    observe((opened.canonicals.len() + opened.edges.len()) as u64, total);
    counts.deletions_processed = advisories::write_deletions(&mut tx, &opened.deletions).await?;
    observe(total, total);

    // One canonical-imported event per created or updated canonical, in change order
    // (created ones took the first numbers, replaced ones the rest, each in input order),
    // COPYed from here while the server stores them: reading the rows just written back
    // to build the events in SQL cost as much again as storing the events. The key names
    // the change: each write takes its own number, so no key can exist yet and a
    // duplicate fails the import. `imported_at` is the transaction's `now()`, as JSON.
    if let Some(range) = written {
        let imported_at: String = sqlx::query_scalar("SELECT to_json(now()) #>> '{}'")
            .fetch_one(&mut *tx)
            .await?;
        #[derive(Serialize)]
        struct Payload<'a> {
            canonical_id: &'a str,
            cve: Option<&'a str>,
            affects_key: &'a str,
            merge_hash: &'a str,
            action: &'a str,
            bundle_hash: &'a str,
            site_id: &'a str,
            imported_at: &'a str,
        }
        let mut in_change_order = Vec::with_capacity(actions.len());
        for kind in ["Created", "Updated"] {
            in_change_order.extend(actions.iter().copied().filter(|(_, a)| *a == kind));
        }
        let events = in_change_order
            .into_iter()
            .zip(range.first..)
            .map(|((c, action), seq)| outbox::BulkEvent {
                subject: &c.merge_hash,
                severity: c.severity.as_deref(),
                payload: Payload {
                    canonical_id: &c.merge_hash,
                    cve: c.cve.as_deref(),
                    affects_key: &c.affects_key,
                    merge_hash: &c.merge_hash,
                    action,
                    bundle_hash: &opened.bundle_hash,
                    site_id: &manifest.site_id,
                    imported_at: &imported_at,
                },
                idempotency_key: format!("canonical-imported/{seq:019}"),
            });
        let published = outbox::publish_copied(&mut tx, "canonical-imported", events).await?;
        debug_assert_eq!(published, (range.last.seq - range.first + 1) as u64);
    }
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "events published"
    );
    let items = counts.canonical_created
        + counts.canonical_updated
        + counts.edges_added
        + counts.deletions_processed;
    let changed_keys: Vec<&str> = actions
        .iter()
        .map(|(c, _)| c.affects_key.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let summary = NewEvent {
        kind: "federation.imported".into(),
        namespace: None,
        subject: manifest.site_id.clone(),
        severity: None,
        payload: json!({"site_id": manifest.site_id, "bundle_hash": opened.bundle_hash, "cursor": manifest.cursor,
                            "counts": counts, "affects_keys": changed_keys}),
        idempotency_key: format!("federation.imported/{}", opened.bundle_hash),
    };
    outbox::publish(&mut *tx, &summary).await?;
    sqlx::query(
        "UPDATE federation_sites SET last_cursor = $2, last_sync_at = now(), bundles_imported = bundles_imported + 1,
             total_items_imported = total_items_imported + $3 WHERE site_id = $1",
    )
    .bind(&manifest.site_id)
    .bind(&manifest.cursor)
    .bind(items as i64)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO federation_imported_bundles (bundle_hash, site_id, cursor) VALUES ($1, $2, $3)
         ON CONFLICT (bundle_hash) DO UPDATE SET imported_at = now()",
    )
    .bind(&opened.bundle_hash)
    .bind(&manifest.site_id)
    .bind(&manifest.cursor)
    .execute(&mut *tx)
    .await?;

    if options.dry_run {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(ImportResponse {
        success: true,
        dry_run: options.dry_run,
        site_id: manifest.site_id.clone(),
        bundle_hash: opened.bundle_hash.clone(),
        imported_cursor: manifest.cursor.clone(),
        counts,
        conflicts,
        duration_ms: started.elapsed().as_millis() as u64,
        signed_by,
    })
}
