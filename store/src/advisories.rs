//! The canonical advisory store: canonicals, source edges, deletions, and the change
//! sequence federation cursors point into. Writes are batched (one statement per kind
//! per call) and must run inside a transaction that first calls [`lock_changes`].

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};

use crate::Result;
use crate::copy::{CopyRows, copy_in};

/// One canonical advisory: a vulnerability as it affects one package. Field order is the
/// canonical JSON order (see docs/canonical-advisory.md).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
pub struct CanonicalAdvisory {
    /// `sha256:<hex>` of `"{vuln_id}|{affects_key}"`: the identity shared by every site.
    pub merge_hash: String,
    /// CVE id when known, else the source's id.
    pub vuln_id: String,
    /// The CVE id, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cve: Option<String>,
    /// Other ids of the same vulnerability, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Package URL without version (`pkg:npm/express`, `pkg:deb/debian/openssl?distro=debian-12`).
    pub affects_key: String,
    /// Ecosystem as OSV names it (`npm`, `PyPI`, `Debian:12`).
    pub ecosystem: String,
    /// Affected ranges: `[{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "4.19.2"}]}]`.
    #[serde(default, skip_serializing_if = "is_empty_array")]
    pub ranges: Value,
    /// Explicitly affected versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
    /// `critical`, `high`, `medium` or `low`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// `{"version": "3.1", "vector": "CVSS:3.1/…", "score": 7.5}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cvss: Option<Value>,
    /// One-line summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// First published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<DateTime<Utc>>,
    /// Last modified upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<DateTime<Utc>>,
    /// When upstream withdrew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<DateTime<Utc>>,
}

fn is_empty_array(v: &Value) -> bool {
    v.is_null() || v.as_array().is_some_and(Vec::is_empty)
}

impl CanonicalAdvisory {
    /// The merge hash of a (vulnerability, package) pair.
    pub fn merge_hash_of(vuln_id: &str, affects_key: &str) -> String {
        format!("sha256:{}", hex::encode(merge_digest(vuln_id, affects_key)))
    }

    /// Whether `merge_hash` is [`CanonicalAdvisory::merge_hash_of`] the pair, without
    /// building the string: an import checks every canonical of a bundle.
    pub fn is_merge_hash_of(merge_hash: &str, vuln_id: &str, affects_key: &str) -> bool {
        let Some(hex_digest) = merge_hash.strip_prefix("sha256:") else {
            return false;
        };
        let mut expected = [0u8; 64];
        hex::encode_to_slice(merge_digest(vuln_id, affects_key), &mut expected)
            .expect("64 hex digits for 32 bytes");
        hex_digest.as_bytes() == expected
    }

    /// `sha256:<hex>` of the canonical JSON: equal content, equal hash.
    pub fn content_hash(&self) -> String {
        sha256_hex(&serde_json::to_vec(self).expect("canonicals serialize"))
    }
}

/// The SHA-256 of `vuln_id|affects_key`, the pair's identity.
fn merge_digest(vuln_id: &str, affects_key: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(vuln_id)
        .chain_update("|")
        .chain_update(affects_key)
        .finalize()
        .into()
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A link from a canonical to the source document it came from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SourceEdge {
    /// The canonical.
    pub merge_hash: String,
    /// Source name (`nvd`, `ghsa`, `debian`, `osv`).
    pub source: String,
    /// The document's id at that source.
    pub source_advisory_id: String,
    /// `sha256:<hex>` of the document.
    pub document_hash: String,
    /// When the document was fetched.
    pub fetched_at: DateTime<Utc>,
}

/// A withdrawn or deleted canonical.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Deletion {
    /// The canonical.
    pub merge_hash: String,
    /// Why (`withdrawn`, `deleted`).
    pub reason: String,
}

/// A position in the change sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChangePoint {
    /// Sequence number.
    pub seq: i64,
    /// When the change was made.
    pub at: DateTime<Utc>,
}

/// Serialise writers of the change sequence for the rest of the transaction, so sequence
/// numbers commit in order.
pub async fn lock_changes(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(7305814, 1)")
        .execute(conn)
        .await?;
    Ok(())
}

/// What is stored locally for a canonical.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredCanonical {
    /// The canonical.
    pub advisory: CanonicalAdvisory,
    /// Its content hash.
    pub content_hash: String,
    /// Site it was imported from; `None` when ingested here.
    pub origin_site: Option<String>,
}

const CANONICAL_COLUMNS: &str = "merge_hash, vuln_id, cve, aliases, affects_key, ecosystem, ranges, versions, \
     severity, cvss, summary, published, modified, withdrawn";

/// The stored canonicals among `merge_hashes`.
pub async fn stored_canonicals(
    conn: &mut PgConnection,
    merge_hashes: &[impl AsRef<str>],
) -> Result<HashMap<String, StoredCanonical>> {
    use sqlx::Row as _;
    // Into an empty store (a new site's first import) there is nothing to look up: one
    // probe instead of one per hash (100,000 take a third of a second).
    let any_stored: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM canonical_advisories)")
        .fetch_one(&mut *conn)
        .await?;
    if merge_hashes.is_empty() || !any_stored {
        return Ok(HashMap::new());
    }
    // Sent sorted: where the server probes the index (a store much larger than the
    // bundle), it sorts the array first, and its sort checks for sorted input (100,000
    // hashes into 100,000 rows by index: 0.2 s → 0.1 s in psql). Merge hashes
    // are lowercase hex after a common prefix, in byte order under the usual collations;
    // were the server's order another, the answer would be the same, only slower.
    let mut sorted: Vec<&str> = merge_hashes.iter().map(AsRef::as_ref).collect();
    sorted.sort_unstable();
    let query = format!(
        "SELECT {CANONICAL_COLUMNS}, content_hash, origin_site FROM canonical_advisories WHERE merge_hash = ANY($1)"
    );
    let rows = sqlx::query(&query)
        .bind(&sorted)
        .fetch_all(&mut *conn)
        .await?;
    let mut stored = HashMap::with_capacity(rows.len());
    for row in &rows {
        let advisory = <CanonicalAdvisory as sqlx::FromRow<_>>::from_row(row)?;
        let entry = StoredCanonical {
            content_hash: row.try_get("content_hash")?,
            origin_site: row.try_get("origin_site")?,
            advisory,
        };
        stored.insert(entry.advisory.merge_hash.clone(), entry);
    }
    Ok(stored)
}

/// An empty session-private table shaped like `like`, for rows that replace stored ones
/// through one `UPDATE … FROM`; its rows go at commit.
async fn empty_staging_table(conn: &mut PgConnection, name: &str, like: &str) -> Result<()> {
    sqlx::query(&format!(
        "CREATE TEMP TABLE IF NOT EXISTS {name} (LIKE {like}) ON COMMIT DELETE ROWS"
    ))
    .execute(&mut *conn)
    .await?;
    sqlx::query(&format!("TRUNCATE {name}"))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The change numbers a write took: `first..=last.seq`; canonicals that were new took
/// `first..=last_created`, replaced ones the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChangeRange {
    /// First sequence number.
    pub first: i64,
    /// Last number taken by a newly created canonical (`first - 1` when none was new).
    pub last_created: i64,
    /// Last change.
    pub last: ChangePoint,
}

/// Reserve `n` consecutive change numbers and return the first, with the transaction's
/// timestamp. Callers hold [`lock_changes`], so nobody else draws from the sequence.
pub async fn reserve_changes(conn: &mut PgConnection, n: usize) -> Result<(i64, DateTime<Utc>)> {
    let (first, now): (i64, DateTime<Utc>) =
        sqlx::query_as("SELECT nextval('advisory_change_seq'), now()")
            .fetch_one(&mut *conn)
            .await?;
    if n > 1 {
        sqlx::query("SELECT setval('advisory_change_seq', $1)")
            .bind(first + n as i64 - 1)
            .execute(&mut *conn)
            .await?;
    }
    Ok((first, now))
}

/// Insert or replace `canonicals` (in order, taking consecutive change numbers),
/// recording `origin_site`, and clear any deletion of them. `is_stored` says which are
/// already in the store: the caller has read them under [`lock_changes`] to decide what
/// to write. New canonicals are COPYed straight into the table; replaced ones go through
/// a COPYed staging table and one UPDATE. Returns the change numbers taken.
pub async fn write_canonicals(
    conn: &mut PgConnection,
    canonicals: &[&CanonicalAdvisory],
    origin_site: Option<&str>,
    is_stored: impl Fn(&str) -> bool,
) -> Result<Option<ChangeRange>> {
    if canonicals.is_empty() {
        return Ok(None);
    }
    let reserved = reserve_changes(conn, canonicals.len()).await?;
    write_canonicals_reserved(conn, canonicals, origin_site, is_stored, reserved)
        .await
        .map(Some)
}

/// [`write_canonicals`] with the change numbers already taken by [`reserve_changes`]
/// (`canonicals.len()` of them), for a writer that needs the numbers first (the
/// federation import writes its events before the canonicals).
pub async fn write_canonicals_reserved(
    conn: &mut PgConnection,
    canonicals: &[&CanonicalAdvisory],
    origin_site: Option<&str>,
    is_stored: impl Fn(&str) -> bool,
    (first, now): (i64, DateTime<Utc>),
) -> Result<ChangeRange> {
    let started = std::time::Instant::now();
    // New canonicals take the first numbers, replaced ones the rest (each group in input
    // order), so readers can tell them apart by number alone.
    let (new, replaced): (Vec<&CanonicalAdvisory>, Vec<&CanonicalAdvisory>) = canonicals
        .iter()
        .copied()
        .partition(|c| !is_stored(&c.merge_hash));
    const COLUMNS: &str = "merge_hash, vuln_id, cve, aliases, affects_key, ecosystem, ranges, versions, severity, cvss, \
        summary, published, modified, withdrawn, document, content_hash, origin_site, change_seq, changed_at";
    // Every row's fields, in COLUMNS order. The document is the canonical JSON, and its
    // hash (taken from the bytes just written) the content hash.
    fn canonical_rows<'a>(
        canonicals: Vec<&'a CanonicalAdvisory>,
        first_seq: i64,
        origin_site: Option<&'a str>,
        changed_at: DateTime<Utc>,
    ) -> impl FnMut(&mut CopyRows) -> bool + Send + 'a {
        static NO_RANGES: Value = Value::Array(Vec::new());
        let mut rows = canonicals.into_iter().zip(first_seq..);
        move |out: &mut CopyRows| {
            let Some((c, seq)) = rows.next() else {
                return false;
            };
            out.text(Some(&c.merge_hash))
                .text(Some(&c.vuln_id))
                .text(c.cve.as_deref())
                .text_array(&c.aliases)
                .text(Some(&c.affects_key))
                .text(Some(&c.ecosystem))
                .jsonb(Some(if c.ranges.is_null() {
                    &NO_RANGES
                } else {
                    &c.ranges
                }))
                .text_array(&c.versions)
                .text(c.severity.as_deref())
                .jsonb(c.cvss.as_ref())
                .text(c.summary.as_deref())
                .timestamptz(c.published)
                .timestamptz(c.modified)
                .timestamptz(c.withdrawn);
            let content_hash = sha256_hex(out.json_text(c));
            out.text(Some(&content_hash))
                .text(origin_site)
                .int8(seq)
                .timestamptz(Some(changed_at));
            true
        }
    }
    let (new_count, replaced_count) = (new.len(), replaced.len());
    if !new.is_empty() {
        copy_in(
            conn,
            &format!("COPY canonical_advisories ({COLUMNS})"),
            canonical_rows(new, first, origin_site, now),
        )
        .await?;
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            rows = new_count,
            "new canonicals copied"
        );
        // A recreated canonical is no longer deleted. Driven from the (small) deletions
        // table rather than a 100,000-element array of the new hashes.
        sqlx::query(
            "DELETE FROM advisory_deletions d USING canonical_advisories c
             WHERE c.merge_hash = d.merge_hash AND c.change_seq BETWEEN $1 AND $2",
        )
        .bind(first)
        .bind(first + new_count as i64 - 1)
        .execute(&mut *conn)
        .await?;
    }
    if !replaced.is_empty() {
        empty_staging_table(conn, "staged_canonicals", "canonical_advisories").await?;
        copy_in(
            conn,
            &format!("COPY staged_canonicals ({COLUMNS})"),
            canonical_rows(replaced, first + new_count as i64, origin_site, now),
        )
        .await?;
        sqlx::query(
            "UPDATE canonical_advisories c SET vuln_id = s.vuln_id, cve = s.cve, aliases = s.aliases,
                 affects_key = s.affects_key, ecosystem = s.ecosystem, ranges = s.ranges, versions = s.versions,
                 severity = s.severity, cvss = s.cvss, summary = s.summary, published = s.published,
                 modified = s.modified, withdrawn = s.withdrawn, content_hash = s.content_hash, document = s.document,
                 origin_site = s.origin_site, change_seq = s.change_seq, changed_at = s.changed_at
             FROM staged_canonicals s WHERE c.merge_hash = s.merge_hash",
        )
        .execute(&mut *conn)
        .await?;
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            rows = replaced_count,
            "replaced canonicals updated"
        );
    }
    Ok(ChangeRange {
        first,
        last_created: first + new_count as i64 - 1,
        last: ChangePoint {
            seq: first + canonicals.len() as i64 - 1,
            at: now,
        },
    })
}

/// Insert or replace `edges` whose canonical exists; returns how many were written
/// (an edge to the same document, by hash, is left alone and not counted).
/// `just_created` names canonicals this transaction created: they exist and, since edges
/// go with their canonical, have no stored edges, so their edges need no lookup.
pub async fn write_edges(
    conn: &mut PgConnection,
    edges: &[SourceEdge],
    just_created: impl Fn(&str) -> bool,
) -> Result<u64> {
    if edges.is_empty() {
        return Ok(0);
    }
    let unknown: Vec<&str> = edges
        .iter()
        .map(|e| e.merge_hash.as_str())
        .filter(|h| !just_created(h))
        .collect();
    // Which of the other canonicals exist, and the document hash of their stored edges.
    let mut canonicals = std::collections::HashSet::<String>::new();
    let mut stored = HashMap::<(String, String, String), String>::new();
    if !unknown.is_empty() {
        canonicals = sqlx::query_scalar(
            "SELECT merge_hash FROM canonical_advisories WHERE merge_hash = ANY($1)",
        )
        .bind(&unknown)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
        stored = sqlx::query_as::<_, (String, String, String, String)>(
            "SELECT merge_hash, source, source_advisory_id, document_hash FROM advisory_source_edges WHERE merge_hash = ANY($1)",
        )
        .bind(&unknown)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|(m, s, i, d)| ((m, s, i), d))
        .collect();
    }
    let wanted: Vec<(&SourceEdge, bool)> = edges
        .iter()
        .filter_map(|e| {
            if just_created(&e.merge_hash) {
                return Some((e, true));
            }
            if !canonicals.contains(&e.merge_hash) {
                return None;
            }
            match stored.get(&(
                e.merge_hash.clone(),
                e.source.clone(),
                e.source_advisory_id.clone(),
            )) {
                None => Some((e, true)),
                Some(hash) if *hash != e.document_hash => Some((e, false)),
                Some(_) => None,
            }
        })
        .collect();
    if wanted.is_empty() {
        return Ok(0);
    }
    let (first, now) = reserve_changes(conn, wanted.len()).await?;
    const COLUMNS: &str = "merge_hash, source, source_advisory_id, document_hash, fetched_at, document, change_seq, changed_at";
    let edge_rows = |new: bool| {
        let mut rows = wanted
            .iter()
            .zip(first..)
            .filter(move |((_, is_new), _)| *is_new == new);
        move |out: &mut CopyRows| {
            let Some(((e, _), seq)) = rows.next() else {
                return false;
            };
            out.text(Some(&e.merge_hash))
                .text(Some(&e.source))
                .text(Some(&e.source_advisory_id))
                .text(Some(&e.document_hash))
                .timestamptz(Some(e.fetched_at));
            out.json_text(e);
            out.int8(seq).timestamptz(Some(now));
            true
        }
    };
    // Change numbers follow input order across new and replaced edges.
    if wanted.iter().any(|(_, new)| *new) {
        copy_in(
            conn,
            &format!("COPY advisory_source_edges ({COLUMNS})"),
            edge_rows(true),
        )
        .await?;
    }
    if wanted.iter().any(|(_, new)| !*new) {
        empty_staging_table(conn, "staged_edges", "advisory_source_edges").await?;
        copy_in(
            conn,
            &format!("COPY staged_edges ({COLUMNS})"),
            edge_rows(false),
        )
        .await?;
        sqlx::query(
            "UPDATE advisory_source_edges e SET document_hash = s.document_hash, fetched_at = s.fetched_at,
                 document = s.document, change_seq = s.change_seq, changed_at = s.changed_at
             FROM staged_edges s WHERE e.merge_hash = s.merge_hash AND e.source = s.source
                 AND e.source_advisory_id = s.source_advisory_id",
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(wanted.len() as u64)
}

/// Delete the canonicals of `deletions` (their edges go with them) and record each
/// deletion. Returns how many canonicals were present and removed.
pub async fn write_deletions(conn: &mut PgConnection, deletions: &[Deletion]) -> Result<u64> {
    if deletions.is_empty() {
        return Ok(0);
    }
    let (hashes, reasons): (Vec<String>, Vec<String>) = deletions
        .iter()
        .map(|d| (d.merge_hash.clone(), d.reason.clone()))
        .unzip();
    let removed: i64 = sqlx::query_scalar(
        "WITH input AS (
             SELECT merge_hash, reason, ord FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(merge_hash, reason, ord)
         ), recorded AS (
             INSERT INTO advisory_deletions (merge_hash, reason, change_seq, changed_at)
             SELECT merge_hash, reason, nextval('advisory_change_seq'), now() FROM (SELECT * FROM input ORDER BY ord) i
             ON CONFLICT (merge_hash) DO UPDATE SET reason = EXCLUDED.reason, change_seq = EXCLUDED.change_seq,
                 changed_at = EXCLUDED.changed_at
         ), removed AS (
             DELETE FROM canonical_advisories WHERE merge_hash IN (SELECT merge_hash FROM input) RETURNING 1
         )
         SELECT count(*) FROM removed",
    )
    .bind(&hashes)
    .bind(&reasons)
    .fetch_one(&mut *conn)
    .await?;
    Ok(removed as u64)
}

/// The kinds of change, in bundle member order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Canonicals created or updated.
    Canonical,
    /// Source edges added or changed.
    Edge,
    /// Canonicals withdrawn or deleted.
    Deletion,
}

impl ChangeKind {
    /// All kinds, in bundle member order.
    pub const ALL: [ChangeKind; 3] = [
        ChangeKind::Canonical,
        ChangeKind::Edge,
        ChangeKind::Deletion,
    ];

    fn table(self) -> &'static str {
        match self {
            ChangeKind::Canonical => "canonical_advisories",
            ChangeKind::Edge => "advisory_source_edges",
            ChangeKind::Deletion => "advisory_deletions",
        }
    }

    /// The exported JSON line, as an SQL expression over the kind's table.
    fn line(self) -> &'static str {
        match self {
            ChangeKind::Canonical | ChangeKind::Edge => "document",
            ChangeKind::Deletion => {
                r#"'{"merge_hash":' || to_json(merge_hash)::text || ',"reason":' || to_json(reason)::text || '}'"#
            }
        }
    }
}

/// Where a bundle of at most `limit` changes after sequence number `after` ends: the
/// number of the `limit`-th change, or `None` when no more than `limit` remain. Run it
/// in the export's `REPEATABLE READ` transaction.
pub async fn change_cut(conn: &mut PgConnection, after: i64, limit: i64) -> Result<Option<i64>> {
    // Every change took its own number, so when fewer numbers than `limit` were handed
    // out after `after`, everything fits and no index needs walking.
    if snapshot(&mut *conn).await? - after <= limit {
        return Ok(None);
    }
    let per_kind: Vec<String> = ChangeKind::ALL
        .iter()
        .map(|k| {
            format!(
                "(SELECT change_seq FROM {} WHERE change_seq > $1 ORDER BY change_seq LIMIT $2)",
                k.table()
            )
        })
        .collect();
    Ok(sqlx::query_scalar(&format!(
        "SELECT change_seq FROM ({}) c ORDER BY change_seq OFFSET $2 - 1 LIMIT 1",
        per_kind.join(" UNION ALL ")
    ))
    .bind(after)
    .bind(limit)
    .fetch_optional(&mut *conn)
    .await?)
}

/// The last change with a number in `(after, upto]`, if any.
pub async fn last_change_in(
    conn: &mut PgConnection,
    after: i64,
    upto: i64,
) -> Result<Option<ChangePoint>> {
    let per_kind: Vec<String> = ChangeKind::ALL
        .iter()
        .map(|k| {
            format!(
                "(SELECT change_seq, changed_at FROM {} WHERE change_seq > $1 AND change_seq <= $2
                  ORDER BY change_seq DESC LIMIT 1)",
                k.table()
            )
        })
        .collect();
    let row: Option<(i64, DateTime<Utc>)> = sqlx::query_as(&format!(
        "SELECT change_seq, changed_at FROM ({}) c ORDER BY change_seq DESC LIMIT 1",
        per_kind.join(" UNION ALL ")
    ))
    .bind(after)
    .bind(upto)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(seq, at)| ChangePoint { seq, at }))
}

/// Changes per group in [`stream_changes`].
const LINES_PER_GROUP: i64 = 1024;

/// Stream the exported JSON lines of every `kind` change numbered in `(after, upto]`, in
/// sequence order, to `on_lines`: each call gets the lines of a run of sequence numbers
/// joined by newlines (no trailing newline). Exported lines are single-line JSON.
///
/// PostgreSQL joins the lines of each run of [`LINES_PER_GROUP`] numbers, so a
/// 100,000-row export arrives as about a hundred large messages rather than 100,000
/// small ones (receiving a message costs as much as the server's work on a row); the
/// binary COPY format hands over the stored bytes with nothing to decode or unescape,
/// and each run is handed on as a slice of the received message, not a copy.
pub async fn stream_changes(
    conn: &mut PgConnection,
    kind: ChangeKind,
    after: i64,
    upto: i64,
    mut on_lines: impl FnMut(Bytes),
) -> Result<()> {
    use futures::StreamExt as _;
    if upto <= after {
        return Ok(());
    }
    // COPY takes no parameters; every value here is an integer formatted by us. The
    // aggregate takes its lines in the order of the sorted subquery (an `ORDER BY` inside
    // string_agg would sort every run again and double the server's time); that holds
    // for a serial plan, which the caller ensures (see `export`).
    let statement = format!(
        "COPY (
             SELECT grouped.lines
             FROM (SELECT g FROM generate_series({after}, {last_start}, {LINES_PER_GROUP}) g ORDER BY g) runs,
             LATERAL (
                 SELECT string_agg(line, E'\\n') AS lines FROM (
                     SELECT {line} AS line FROM {table}
                     WHERE change_seq > runs.g AND change_seq <= least(runs.g + {LINES_PER_GROUP}, {upto})
                     ORDER BY change_seq
                 ) run
             ) grouped
             WHERE grouped.lines IS NOT NULL
         ) TO STDOUT (FORMAT binary)",
        last_start = upto - 1,
        line = kind.line(),
        table = kind.table(),
    );
    let mut stream = conn.copy_out_raw(&statement).await?;
    let mut reader = BinaryCopyReader::default();
    while let Some(chunk) = stream.next().await {
        reader.feed(chunk?, &mut on_lines)?;
    }
    reader.end()
}

/// Reads PostgreSQL's binary COPY format for rows of one non-null column, whatever
/// way the bytes are split into messages. Values that lie within one message are handed
/// on as slices of it; only a value split across messages is copied (joined).
#[derive(Default)]
struct BinaryCopyReader {
    pending: BytesMut,
    header_read: bool,
    ended: bool,
}

fn copy_format_error(what: &str) -> crate::Error {
    sqlx::Error::Protocol(format!("binary COPY: {what}")).into()
}

impl BinaryCopyReader {
    const SIGNATURE: &'static [u8] = b"PGCOPY\n\xff\r\n\0";

    fn feed(&mut self, chunk: Bytes, on_value: &mut impl FnMut(Bytes)) -> Result<()> {
        if self.pending.is_empty() {
            let used = self.parse(&chunk, on_value)?;
            self.pending.extend_from_slice(&chunk[used..]);
        } else {
            self.pending.extend_from_slice(&chunk);
            let pending = std::mem::take(&mut self.pending).freeze();
            let used = self.parse(&pending, on_value)?;
            self.pending.extend_from_slice(&pending[used..]);
        }
        Ok(())
    }

    /// Hands every complete value in `bytes` to `on_value`; returns the bytes used.
    fn parse(&mut self, bytes: &Bytes, on_value: &mut impl FnMut(Bytes)) -> Result<usize> {
        let be32 = |at: usize| i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let mut at = 0;
        if !self.header_read {
            if bytes.len() < 19 {
                return Ok(0);
            }
            if &bytes[..11] != Self::SIGNATURE {
                return Err(copy_format_error("bad signature"));
            }
            let extension =
                usize::try_from(be32(15)).map_err(|_| copy_format_error("bad header"))?;
            if bytes.len() < 19 + extension {
                return Ok(0);
            }
            at = 19 + extension;
            self.header_read = true;
        }
        loop {
            let rest = bytes.len() - at;
            if self.ended {
                return if rest == 0 {
                    Ok(at)
                } else {
                    Err(copy_format_error("data after the trailer"))
                };
            }
            if rest < 2 {
                return Ok(at);
            }
            match i16::from_be_bytes([bytes[at], bytes[at + 1]]) {
                -1 => {
                    self.ended = true;
                    at += 2;
                    continue;
                }
                1 => {}
                n => return Err(copy_format_error(&format!("{n} columns, expected 1"))),
            }
            if rest < 6 {
                return Ok(at);
            }
            let len = usize::try_from(be32(at + 2)).map_err(|_| copy_format_error("null value"))?;
            if rest < 6 + len {
                return Ok(at);
            }
            on_value(bytes.slice(at + 6..at + 6 + len));
            at += 6 + len;
        }
    }

    fn end(self) -> Result<()> {
        if self.ended && self.pending.is_empty() {
            Ok(())
        } else {
            Err(copy_format_error("ended without its trailer"))
        }
    }
}

/// The newest change, if any.
pub async fn latest_change(pool: &PgPool) -> Result<Option<ChangePoint>> {
    last_change_in(&mut *pool.acquire().await?, i64::MIN, i64::MAX).await
}

/// Number of canonicals stored.
pub async fn canonical_count(pool: &PgPool) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM canonical_advisories")
            .fetch_one(pool)
            .await?,
    )
}

/// The advisory snapshot: the last change sequence value handed out (0 before any), which
/// scan results record so a later scan can tell whether advisories moved since.
pub async fn snapshot<'e>(executor: impl sqlx::PgExecutor<'e>) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM advisory_change_seq",
    )
    .fetch_one(executor)
    .await?)
}

/// Every id each advisory is known by (its id, CVE and aliases), by merge hash: what VEX
/// statements and exploitation feeds are matched on.
pub async fn ids_of(
    pool: &PgPool,
    merge_hashes: &[String],
) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
    use sqlx::Row;
    let rows = sqlx::query(
        "SELECT merge_hash, vuln_id, cve, aliases FROM canonical_advisories WHERE merge_hash = ANY($1)",
    )
    .bind(merge_hashes)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let mut ids: Vec<String> = vec![r.get("vuln_id")];
            ids.extend(r.get::<Option<String>, _>("cve"));
            ids.extend(r.get::<Vec<String>, _>("aliases"));
            let mut seen = std::collections::BTreeSet::new();
            ids.retain(|id| seen.insert(id.clone()));
            (r.get("merge_hash"), ids)
        })
        .collect())
}

/// The sources (`osv`, `debian`, …) each advisory came from, sorted, by merge hash: what a
/// ScanPolicy rule's `sources` matcher is held against.
pub async fn sources_of(
    pool: &PgPool,
    merge_hashes: &[String],
) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT DISTINCT merge_hash, source FROM advisory_source_edges
         WHERE merge_hash = ANY($1) ORDER BY merge_hash, source",
    )
    .bind(merge_hashes)
    .fetch_all(pool)
    .await?;
    let mut sources: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (hash, source) in rows {
        sources.entry(hash).or_default().push(source);
    }
    Ok(sources)
}

/// The advisory rows stored under `keys` (withdrawn ones left out), as matching reads them,
/// and the snapshot they were read at: one read-only transaction, so the rows and the
/// sequence value agree.
pub async fn matching_rows(
    pool: &PgPool,
    keys: &[String],
) -> Result<(Vec<stellaops_scanner::AdvisoryRow>, i64)> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let snapshot = snapshot(&mut *tx).await?;
    #[derive(sqlx::FromRow)]
    struct Row {
        merge_hash: String,
        vuln_id: String,
        affects_key: String,
        ecosystem: String,
        ranges: serde_json::Value,
        versions: Vec<String>,
        severity: Option<String>,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT merge_hash, vuln_id, affects_key, ecosystem, ranges, versions, severity
         FROM canonical_advisories WHERE affects_key = ANY($1) AND withdrawn IS NULL",
    )
    .bind(keys)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let rows = rows
        .into_iter()
        .map(|r| stellaops_scanner::AdvisoryRow {
            merge_hash: r.merge_hash,
            vuln_id: r.vuln_id,
            affects_key: r.affects_key,
            ecosystem: r.ecosystem,
            ranges: r.ranges,
            versions: r.versions,
            severity: r.severity,
        })
        .collect();
    Ok((rows, snapshot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_hashes_are_checked_as_they_are_made() {
        // `printf 'CVE-2024-0001|pkg:deb/debian/openssl' | sha256sum`
        let known = "sha256:fbea80aa2616f4bf241dcaae83218f0a2a54ac224fec201f83ad08f4f528be30";
        let (vuln, key) = ("CVE-2024-0001", "pkg:deb/debian/openssl");
        assert_eq!(CanonicalAdvisory::merge_hash_of(vuln, key), known);
        assert!(CanonicalAdvisory::is_merge_hash_of(known, vuln, key));
        for wrong in [
            known.to_uppercase().replacen("SHA256", "sha256", 1),
            known.trim_start_matches("sha256:").to_string(),
            known[..known.len() - 1].to_string(),
            format!("{known}0"),
            CanonicalAdvisory::merge_hash_of("CVE-2024-0002", key),
            CanonicalAdvisory::merge_hash_of(vuln, "pkg:deb/debian/openssl3"),
            String::new(),
        ] {
            assert!(
                !CanonicalAdvisory::is_merge_hash_of(&wrong, vuln, key),
                "{wrong}"
            );
        }
    }

    /// A binary COPY stream of one text column, as PostgreSQL sends it.
    fn copy_stream(values: &[&[u8]]) -> Vec<u8> {
        let mut bytes = BinaryCopyReader::SIGNATURE.to_vec();
        bytes.extend_from_slice(&0i32.to_be_bytes()); // flags
        bytes.extend_from_slice(&4i32.to_be_bytes()); // header extension, skipped
        bytes.extend_from_slice(b"ext!");
        for value in values {
            bytes.extend_from_slice(&1i16.to_be_bytes());
            bytes.extend_from_slice(&(value.len() as i32).to_be_bytes());
            bytes.extend_from_slice(value);
        }
        bytes.extend_from_slice(&(-1i16).to_be_bytes());
        bytes
    }

    fn read_in_chunks(bytes: &[u8], chunk: usize) -> Result<Vec<Vec<u8>>> {
        let mut reader = BinaryCopyReader::default();
        let mut values = Vec::new();
        for piece in bytes.chunks(chunk) {
            reader.feed(Bytes::copy_from_slice(piece), &mut |v: Bytes| {
                values.push(v.to_vec())
            })?;
        }
        reader.end()?;
        Ok(values)
    }

    #[test]
    fn binary_copy_values_survive_any_split_of_the_stream() {
        let values: [&[u8]; 4] = [
            b"{\"a\":1}\n{\"b\":\"\\\\\"}",
            b"",
            b"\t\xc3\xa9",
            &[0u8; 700],
        ];
        let bytes = copy_stream(&values);
        for chunk in [1, 2, 3, 5, 7, 19, 20, 64, 701, bytes.len()] {
            assert_eq!(
                read_in_chunks(&bytes, chunk).unwrap(),
                values,
                "chunks of {chunk}"
            );
        }
    }

    #[test]
    fn broken_binary_copy_streams_are_errors() {
        let bytes = copy_stream(&[b"value"]);
        // Cut anywhere before the trailer's end: the stream did not finish.
        for cut in [0, 10, 19, 25, bytes.len() - 1] {
            let error = read_in_chunks(&bytes[..cut], 4).unwrap_err();
            assert!(
                error.to_string().contains("without its trailer"),
                "cut {cut}: {error}"
            );
        }
        let error = |bytes: &[u8]| read_in_chunks(bytes, 64).unwrap_err().to_string();
        let mut wrong_signature = bytes.clone();
        wrong_signature[0] = b'X';
        assert!(error(&wrong_signature).contains("signature"));
        let mut null = copy_stream(&[]);
        let trailer = null.split_off(null.len() - 2);
        null.extend_from_slice(&1i16.to_be_bytes());
        null.extend_from_slice(&(-1i32).to_be_bytes());
        null.extend_from_slice(&trailer);
        assert!(error(&null).contains("null"));
        let mut two_columns = copy_stream(&[]);
        two_columns.truncate(two_columns.len() - 2);
        two_columns.extend_from_slice(&2i16.to_be_bytes());
        assert!(error(&two_columns).contains("2 columns"));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(error(&trailing).contains("after the trailer"));
    }
}
