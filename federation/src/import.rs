//! Import of a bundle: everything in one transaction, committed only after every check has
//! passed, so a refused or failed import changes nothing. The bundle's data members are
//! parsed while the transaction starts (see [`Body`]). Answers with the seed's response
//! shape.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use std::time::Instant;

use chrono::Utc;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use stellaops_store::advisories::{self, CanonicalAdvisory, Deletion, SourceEdge};
use stellaops_store::outbox::{self, NewEvent};

use crate::bundle::{self, BundleError, CanonicalKey, Unpacked};
use crate::cursor::Cursor;
use crate::dsse::{Envelope, TrustedKeys};
use crate::events::{self, CanonicalImported, ImportedItem};
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

/// The site's checks that need only the bundle's head: the site is known and enabled,
/// the size within its limit, the expected hash, the signature. Returns the signing key's
/// id and the sources the site may send (empty: any).
async fn check_site_policy(
    pool: &PgPool,
    unpacked: &Unpacked,
    signature: Option<&Envelope>,
    options: &ImportOptions,
    trusted: &TrustedKeys,
) -> Result<(Option<String>, Vec<String>), ImportError> {
    let site_id = &unpacked.manifest.site_id;
    let mut conn = pool.acquire().await?;
    let site = sites::get(&mut conn, site_id, false).await?;
    let site = site
        .filter(|s| s.enabled)
        .ok_or_else(|| ImportError::SiteNotAllowed(site_id.clone()))?;
    // The keys given to the command (files) and the site's keys in the database.
    let trusted = &sites::trusted_for_site(&mut conn, site_id, trusted, chrono::Utc::now()).await?;
    if unpacked.size > site.max_bundle_size_bytes as u64 {
        return Err(BundleError::TooLarge {
            size: unpacked.size,
            max: site.max_bundle_size_bytes as u64,
        }
        .into());
    }
    if let Some(expected) = &options.expected_hash
        && *expected != unpacked.bundle_hash
    {
        return Err(ImportError::HashMismatch {
            expected: expected.clone(),
            actual: unpacked.bundle_hash.clone(),
        });
    }
    let signed_by = if options.skip_signature {
        if !site.skip_signature_trusted {
            return Err(ImportError::SkipNotTrusted);
        }
        // Even when skipping, a signature we can check is never accepted if it is bad.
        match signature {
            Some(_) if !trusted.is_empty() => Some(unpacked.verify_signature(signature, trusted)?),
            _ => None,
        }
    } else if signature.is_some() {
        Some(unpacked.verify_signature(signature, trusted)?)
    } else if site.require_signature {
        return Err(BundleError::Unsigned.into());
    } else {
        None
    };
    Ok((signed_by, site.allowed_sources))
}

/// The bundle's data members, checked and parsed on a blocking thread while the import
/// does what needs only the bundle's head and the quick pass (site checks, the lookup of
/// stored canonicals, the events): opening a 100,000-canonical bundle takes about half a
/// second, a tenth of the import. The canonicals come first, on both cores, and the
/// edges and deletions after them, while the canonicals are being written: the import
/// needs them only then. Each place that needs a part awaits a clone of its future.
#[derive(Clone)]
struct Body {
    canonicals: Shared<BoxFuture<'static, Result<Arc<Vec<CanonicalAdvisory>>, BundleError>>>,
    rest: Shared<BoxFuture<'static, Result<Arc<EdgesAndDeletions>, BundleError>>>,
}

type EdgesAndDeletions = (Vec<SourceEdge>, Vec<Deletion>);

impl Body {
    /// Start [`Unpacked::parse_canonicals`], then [`Unpacked::parse_edges_and_deletions`],
    /// on a blocking thread.
    fn parse_in_background(unpacked: &Arc<Unpacked>) -> Body {
        let unpacked = Arc::clone(unpacked);
        let (canonicals_parsed, canonicals) = tokio::sync::oneshot::channel();
        let parsing = tokio::task::spawn_blocking(move || {
            let canonicals = unpacked.parse_canonicals().map(Arc::new);
            let failed = canonicals.as_ref().err().cloned();
            let _ = canonicals_parsed.send(canonicals);
            // Past a bad canonicals member nothing else is read: its error is the answer.
            match failed {
                Some(error) => Err(error),
                None => unpacked.parse_edges_and_deletions().map(Arc::new),
            }
        });
        let rest = async move {
            match parsing.await {
                Ok(parsed) => parsed,
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(error) => panic!("the bundle's parse was cancelled: {error}"),
            }
        }
        .boxed()
        .shared();
        let canonicals = {
            let rest = rest.clone();
            async move {
                match canonicals.await {
                    Ok(canonicals) => canonicals,
                    // The parsing thread ended without an answer: it panicked, and the
                    // rest's future says so.
                    Err(_) => {
                        rest.await?;
                        unreachable!("the canonicals are sent before the rest is parsed")
                    }
                }
            }
            .boxed()
            .shared()
        };
        Body { canonicals, rest }
    }

    /// Every part, once all are parsed and the counts and envelope checked: what
    /// [`Unpacked::parse`] returns, with the error it would return.
    async fn all(&self, unpacked: &Unpacked) -> Result<AllParts, BundleError> {
        let canonicals = self.canonicals.clone().await?;
        let rest = self.rest.clone().await?;
        unpacked.check_counts(canonicals.len(), rest.0.len(), rest.1.len())?;
        Ok((canonicals, rest, unpacked.signature()?))
    }
}

type AllParts = (
    Arc<Vec<CanonicalAdvisory>>,
    Arc<EdgesAndDeletions>,
    Option<Envelope>,
);

/// The quick pass read the same bytes as the parse; that they agree is checked, not
/// assumed, before anything decided on the quick pass is used with the parsed members
/// or committed.
fn agrees(keys: &[CanonicalKey<'_>], canonicals: &[CanonicalAdvisory]) -> Result<(), BundleError> {
    if keys.len() != canonicals.len()
        || keys
            .iter()
            .zip(canonicals)
            .any(|(key, canonical)| *key != CanonicalKey::of(canonical))
    {
        return Err(BundleError::Corrupt(
            "canonicals.ndjson reads differently in two passes".into(),
        ));
    }
    Ok(())
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
    let unpacked = Arc::new(match options.max_expanded_bytes {
        Some(expanded) => {
            bundle::unpack_with_limit(bytes, options.max_bundle_size_bytes, expanded)?
        }
        None => bundle::unpack(bytes, options.max_bundle_size_bytes)?,
    });
    // What the checks and the events need before the parse: the envelope and each
    // canonical's key, read by a quick pass before the parse takes the cores. When the
    // quick pass cannot read them, the parse decides.
    let quick = unpacked.signature().ok().zip(unpacked.canonical_keys());
    let body = Body::parse_in_background(&unpacked);
    let result = apply(
        pool, &unpacked, quick, &body, options, trusted, started, observe,
    )
    .await;
    // A bundle that does not open is refused for that, whatever else failed meanwhile (as
    // when it was opened before anything else), and not recorded in any site's history:
    // what it claims is in doubt.
    if result.is_err() {
        body.all(&unpacked).await?;
    }
    if let Err(ImportError::WrongSite { .. }) = result {
        return result;
    }
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "import applied"
    );
    if !options.dry_run && !matches!(result, Err(ImportError::SiteNotAllowed(_))) {
        let entry = HistoryEntry {
            bundle_hash: unpacked.bundle_hash.clone(),
            since_cursor: unpacked.manifest.since_cursor.clone(),
            cursor: Some(unpacked.manifest.cursor.clone()),
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
                sites::record_history(&mut conn, &unpacked.manifest.site_id, &entry).await
        {
            tracing::warn!(%error, "could not record the import in the site history");
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn apply<'a>(
    pool: &PgPool,
    unpacked: &'a Unpacked,
    quick: Option<(Option<Envelope>, Vec<CanonicalKey<'a>>)>,
    body: &Body,
    options: &ImportOptions,
    trusted: &TrustedKeys,
    started: Instant,
    observe: &(dyn Fn(u64, u64) + Sync),
) -> Result<ImportResponse, ImportError> {
    let manifest = &unpacked.manifest;
    if let Some(expected) = &options.expected_site_id
        && *expected != manifest.site_id
    {
        // Not recorded in either site's history: the bundle's claim is what is in doubt.
        return Err(ImportError::WrongSite {
            expected: expected.clone(),
            got: manifest.site_id.clone(),
        });
    }
    let total = manifest.counts.total();
    observe(0, total);
    // Parsed here only when the quick pass could not read the bundle.
    let unread: Arc<Vec<CanonicalAdvisory>>;
    let (signature, keys) = match quick {
        Some(quick) => quick,
        None => {
            let (canonicals, _, signature) = body.all(unpacked).await?;
            unread = canonicals;
            let keys = unread.iter().map(CanonicalKey::of).collect();
            (signature, keys)
        }
    };
    let (signed_by, allowed_sources) =
        check_site_policy(pool, unpacked, signature.as_ref(), options, trusted).await?;
    if !allowed_sources.is_empty() {
        let allowed = |source: &str| allowed_sources.iter().any(|a| a == source);
        let refused = match unpacked.edge_sources() {
            Some(sources) => sources
                .into_iter()
                .find(|s| !allowed(s))
                .map(std::borrow::Cow::into_owned),
            None => {
                let (_, rest, _) = body.all(unpacked).await?;
                rest.0
                    .iter()
                    .find(|e| !allowed(&e.source))
                    .map(|e| e.source.clone())
            }
        };
        if let Some(source_name) = refused {
            return Err(ImportError::SourceNotAllowed {
                source_name,
                site: manifest.site_id.clone(),
                allowed: allowed_sources.join(", "),
            });
        }
    }
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "site checked"
    );
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
        .bind(&unpacked.bundle_hash)
        .fetch_optional(&mut *tx)
        .await?;
        if duplicate.is_some() {
            return Err(ImportError::AlreadyImported(unpacked.bundle_hash.clone()));
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
    let hashes: Vec<&str> = keys.iter().map(|k| &*k.merge_hash).collect();
    let stored = advisories::stored_canonicals(&mut tx, &hashes).await?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "stored canonicals read"
    );
    // A canonical already stored is compared whole, so those wait for the parse.
    let early = if stored.is_empty() {
        None
    } else {
        let parsed = body.canonicals.clone().await?;
        agrees(&keys, &parsed)?;
        Some(parsed)
    };
    // Indexes into the bundle's canonicals, with what is done to each.
    let mut actions: Vec<(usize, &str)> = Vec::new();
    for (at, key) in keys.iter().enumerate() {
        let Some(local) = stored.get(&*key.merge_hash) else {
            counts.canonical_created += 1;
            actions.push((at, "Created"));
            continue;
        };
        let remote = &early.as_ref().expect("parsed when anything is stored")[at];
        if local.content_hash == remote.content_hash() {
            counts.canonical_skipped += 1
        } else if local.origin_site.as_deref() == Some(manifest.site_id.as_str()) {
            // The sender's own earlier value: a plain update, not a conflict.
            counts.canonical_updated += 1;
            actions.push((at, "Updated"));
        } else {
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
                actions.push((at, "Updated"));
            } else {
                counts.canonical_skipped += 1;
            }
        }
    }
    // Written in change order: the created canonicals take the first numbers, the
    // replaced ones the rest, each in bundle order (what `write_canonicals` does).
    let mut in_change_order = Vec::with_capacity(actions.len());
    for kind in ["Created", "Updated"] {
        in_change_order.extend(actions.iter().copied().filter(|(_, a)| *a == kind));
    }
    let reserved = if in_change_order.is_empty() {
        None
    } else {
        Some(advisories::reserve_changes(&mut tx, in_change_order.len()).await?)
    };

    // The canonical-imported events (crate::events: one row per chunk of canonicals, in
    // change order), COPYed from here before the canonicals, so the server stores them
    // while the bundle is still being parsed. Each key names its chunk's first change:
    // each write takes its own number, so no key can exist yet and a duplicate fails the
    // import. `imported_at` is the transaction's `now()`, as JSON.
    if let Some((first, _)) = reserved {
        let imported_at: String = sqlx::query_scalar("SELECT to_json(now()) #>> '{}'")
            .fetch_one(&mut *tx)
            .await?;
        let item = |(&(at, action), change): (&(usize, &'static str), i64)| {
            let key = &keys[at];
            ImportedItem(
                change,
                Cow::Borrowed(&*key.merge_hash),
                key.cve.as_deref().map(Cow::Borrowed),
                Cow::Borrowed(&*key.affects_key),
                Cow::Borrowed(action),
                key.severity.as_deref().map(Cow::Borrowed),
            )
        };
        let rows: Vec<CanonicalImported<'_>> = in_change_order
            .chunks(events::ITEMS_PER_EVENT)
            .zip((first..).step_by(events::ITEMS_PER_EVENT))
            .map(|(chunk, chunk_first)| {
                CanonicalImported::new(
                    &unpacked.bundle_hash,
                    &manifest.site_id,
                    &imported_at,
                    chunk.iter().zip(chunk_first..).map(item).collect(),
                )
            })
            .collect();
        let published = outbox::publish_copied(
            &mut tx,
            events::KIND,
            rows.iter().map(|row| outbox::BulkEvent {
                subject: &manifest.site_id,
                severity: row.severity(),
                payload: row,
                idempotency_key: row.idempotency_key(),
            }),
        )
        .await?;
        debug_assert_eq!(published, rows.len() as u64);
    }
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "events published"
    );

    let parsed = body.canonicals.clone().await?;
    agrees(&keys, &parsed)?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "bundle parsed"
    );
    let to_write: Vec<&CanonicalAdvisory> =
        in_change_order.iter().map(|(at, _)| &parsed[*at]).collect();
    if let Some(reserved) = reserved {
        advisories::write_canonicals_reserved(
            &mut tx,
            &to_write,
            Some(&manifest.site_id),
            |h| stored.contains_key(h),
            reserved,
        )
        .await?;
    }
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "canonicals written"
    );
    observe(manifest.counts.canonicals, total);
    // The edges and deletions were parsed while the canonicals were written.
    let rest = body.rest.clone().await?;
    let (edges, deletions) = &*rest;
    unpacked.check_counts(parsed.len(), edges.len(), deletions.len())?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "edges and deletions parsed"
    );
    let created: HashSet<&str> = actions
        .iter()
        .filter(|(_, action)| *action == "Created")
        .map(|(at, _)| &*keys[*at].merge_hash)
        .collect();
    counts.edges_added = advisories::write_edges(&mut tx, edges, |h| created.contains(h)).await?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "edges written"
    );
    observe(manifest.counts.canonicals + manifest.counts.edges, total);
    counts.deletions_processed = advisories::write_deletions(&mut tx, deletions).await?;
    observe(total, total);

    let items = counts.canonical_created
        + counts.canonical_updated
        + counts.edges_added
        + counts.deletions_processed;
    let changed_keys: Vec<&str> = actions
        .iter()
        .map(|(at, _)| &*keys[*at].affects_key)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let summary = NewEvent {
        kind: "federation.imported".into(),
        namespace: None,
        subject: manifest.site_id.clone(),
        severity: None,
        payload: json!({"site_id": manifest.site_id, "bundle_hash": unpacked.bundle_hash, "cursor": manifest.cursor,
                            "counts": counts, "affects_keys": changed_keys}),
        idempotency_key: format!("federation.imported/{}", unpacked.bundle_hash),
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
    .bind(&unpacked.bundle_hash)
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
        bundle_hash: unpacked.bundle_hash.clone(),
        imported_cursor: manifest.cursor.clone(),
        counts,
        conflicts,
        duration_ms: started.elapsed().as_millis() as u64,
        signed_by,
    })
}
