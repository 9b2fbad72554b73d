//! The canonical advisory store: canonicals, source edges, deletions, and the change
//! sequence federation cursors point into. Writes are batched (one statement per kind
//! per call) and must run inside a transaction that first calls [`lock_changes`].

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};

use crate::Result;

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
        sha256_hex(format!("{vuln_id}|{affects_key}").as_bytes())
    }

    /// `sha256:<hex>` of the canonical JSON: equal content, equal hash.
    pub fn content_hash(&self) -> String {
        sha256_hex(&serde_json::to_vec(self).expect("canonicals serialize"))
    }
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

/// One change, in sequence order, as the JSON line a bundle carries for it.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// A canonical created or updated.
    Canonical(String),
    /// A source edge added or changed.
    Edge(String),
    /// A canonical withdrawn or deleted.
    Deletion(String),
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
    merge_hashes: &[String],
) -> Result<HashMap<String, StoredCanonical>> {
    use sqlx::Row as _;
    let query = format!(
        "SELECT {CANONICAL_COLUMNS}, content_hash, origin_site FROM canonical_advisories WHERE merge_hash = ANY($1)"
    );
    let rows = sqlx::query(&query)
        .bind(merge_hashes)
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

/// COPY text format: one row of tab-separated fields.
struct CopyRows(String);

impl CopyRows {
    fn new() -> Self {
        CopyRows(String::new())
    }

    fn field(&mut self, value: Option<&str>) -> &mut Self {
        if !self.0.is_empty() && !self.0.ends_with('\n') {
            self.0.push('\t');
        }
        match value {
            None => self.0.push_str("\\N"),
            Some(v) => {
                for ch in v.chars() {
                    match ch {
                        '\\' => self.0.push_str("\\\\"),
                        '\t' => self.0.push_str("\\t"),
                        '\n' => self.0.push_str("\\n"),
                        '\r' => self.0.push_str("\\r"),
                        c => self.0.push(c),
                    }
                }
            }
        }
        self
    }

    fn array(&mut self, items: &[String]) -> &mut Self {
        let mut literal = String::from("{");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                literal.push(',');
            }
            literal.push('"');
            literal.push_str(&item.replace('\\', "\\\\").replace('"', "\\\""));
            literal.push('"');
        }
        literal.push('}');
        self.field(Some(&literal))
    }

    fn end_row(&mut self) {
        self.0.push('\n');
    }
}

fn timestamp(t: &Option<DateTime<Utc>>) -> Option<String> {
    t.map(|t| t.to_rfc3339())
}

async fn copy_in(conn: &mut PgConnection, statement: &str, rows: &CopyRows) -> Result<()> {
    let mut copy = conn.copy_in_raw(statement).await?;
    copy.send(rows.0.as_bytes()).await?;
    copy.finish().await?;
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
async fn reserve(conn: &mut PgConnection, n: usize) -> Result<(i64, DateTime<Utc>)> {
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
/// recording `origin_site`, and clear any deletion of them. New canonicals are COPYed
/// straight into the table; changed ones go through a COPYed staging table and one
/// UPDATE. Returns the change numbers taken.
pub async fn write_canonicals(
    conn: &mut PgConnection,
    canonicals: &[CanonicalAdvisory],
    origin_site: Option<&str>,
) -> Result<Option<ChangeRange>> {
    if canonicals.is_empty() {
        return Ok(None);
    }
    let started = std::time::Instant::now();
    let hashes: Vec<&str> = canonicals.iter().map(|c| c.merge_hash.as_str()).collect();
    let existing: std::collections::HashSet<String> = sqlx::query_scalar(
        "SELECT merge_hash FROM canonical_advisories WHERE merge_hash = ANY($1)",
    )
    .bind(&hashes)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    let (first, now) = reserve(conn, canonicals.len()).await?;
    let changed_at = now.to_rfc3339();
    let (mut new_rows, mut changed_rows) = (CopyRows::new(), CopyRows::new());
    let mut new_hashes = Vec::new();
    // New canonicals take the first numbers, replaced ones the rest (each group in input
    // order), so readers can tell them apart by number alone.
    let new_count = canonicals
        .iter()
        .filter(|c| !existing.contains(&c.merge_hash))
        .count() as i64;
    let (mut next_new, mut next_changed) = (first, first + new_count);
    for c in canonicals {
        let document = serde_json::to_string(c).expect("canonicals serialize");
        let ranges = if c.ranges.is_null() {
            "[]".to_string()
        } else {
            c.ranges.to_string()
        };
        let (rows, seq) = if existing.contains(&c.merge_hash) {
            next_changed += 1;
            (&mut changed_rows, next_changed - 1)
        } else {
            new_hashes.push(c.merge_hash.as_str());
            next_new += 1;
            (&mut new_rows, next_new - 1)
        };
        rows.field(Some(&c.merge_hash))
            .field(Some(&c.vuln_id))
            .field(c.cve.as_deref())
            .array(&c.aliases)
            .field(Some(&c.affects_key))
            .field(Some(&c.ecosystem))
            .field(Some(&ranges))
            .array(&c.versions)
            .field(c.severity.as_deref())
            .field(c.cvss.as_ref().map(Value::to_string).as_deref())
            .field(c.summary.as_deref())
            .field(timestamp(&c.published).as_deref())
            .field(timestamp(&c.modified).as_deref())
            .field(timestamp(&c.withdrawn).as_deref())
            .field(Some(&sha256_hex(document.as_bytes())))
            .field(Some(&document))
            .field(origin_site)
            .field(Some(&seq.to_string()))
            .field(Some(&changed_at))
            .end_row();
    }
    const COLUMNS: &str = "merge_hash, vuln_id, cve, aliases, affects_key, ecosystem, ranges, versions, severity, cvss, \
        summary, published, modified, withdrawn, content_hash, document, origin_site, change_seq, changed_at";
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "canonical COPY rows built"
    );
    if !new_rows.0.is_empty() {
        copy_in(
            conn,
            &format!("COPY canonical_advisories ({COLUMNS}) FROM STDIN"),
            &new_rows,
        )
        .await?;
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "canonicals copied"
        );
        sqlx::query("DELETE FROM advisory_deletions WHERE merge_hash = ANY($1)")
            .bind(&new_hashes)
            .execute(&mut *conn)
            .await?;
    }
    if !changed_rows.0.is_empty() {
        sqlx::query("CREATE TEMP TABLE IF NOT EXISTS staged_canonicals (LIKE canonical_advisories) ON COMMIT DELETE ROWS")
            .execute(&mut *conn)
            .await?;
        sqlx::query("TRUNCATE staged_canonicals")
            .execute(&mut *conn)
            .await?;
        copy_in(
            conn,
            &format!("COPY staged_canonicals ({COLUMNS}) FROM STDIN"),
            &changed_rows,
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
    }
    Ok(Some(ChangeRange {
        first,
        last_created: first + new_count - 1,
        last: ChangePoint {
            seq: first + canonicals.len() as i64 - 1,
            at: now,
        },
    }))
}

/// Insert or replace `edges` whose canonical exists; returns how many were written
/// (an edge to the same document, by hash, is left alone and not counted).
pub async fn write_edges(conn: &mut PgConnection, edges: &[SourceEdge]) -> Result<u64> {
    if edges.is_empty() {
        return Ok(0);
    }
    let hashes: Vec<&str> = edges.iter().map(|e| e.merge_hash.as_str()).collect();
    let canonicals: std::collections::HashSet<String> = sqlx::query_scalar(
        "SELECT merge_hash FROM canonical_advisories WHERE merge_hash = ANY($1)",
    )
    .bind(&hashes)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    let stored: HashMap<(String, String, String), String> = sqlx::query_as::<_, (String, String, String, String)>(
        "SELECT merge_hash, source, source_advisory_id, document_hash FROM advisory_source_edges WHERE merge_hash = ANY($1)",
    )
    .bind(&hashes)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|(m, s, i, d)| ((m, s, i), d))
    .collect();
    let wanted: Vec<(&SourceEdge, bool)> = edges
        .iter()
        .filter(|e| canonicals.contains(&e.merge_hash))
        .filter_map(|e| {
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
    let (first, now) = reserve(conn, wanted.len()).await?;
    let changed_at = now.to_rfc3339();
    let (mut new_rows, mut changed_rows) = (CopyRows::new(), CopyRows::new());
    for (i, (e, is_new)) in wanted.iter().enumerate() {
        let rows = if *is_new {
            &mut new_rows
        } else {
            &mut changed_rows
        };
        rows.field(Some(&e.merge_hash))
            .field(Some(&e.source))
            .field(Some(&e.source_advisory_id))
            .field(Some(&e.document_hash))
            .field(Some(&e.fetched_at.to_rfc3339()))
            .field(Some(&serde_json::to_string(e).expect("edges serialize")))
            .field(Some(&(first + i as i64).to_string()))
            .field(Some(&changed_at))
            .end_row();
    }
    const COLUMNS: &str = "merge_hash, source, source_advisory_id, document_hash, fetched_at, document, change_seq, changed_at";
    if !new_rows.0.is_empty() {
        copy_in(
            conn,
            &format!("COPY advisory_source_edges ({COLUMNS}) FROM STDIN"),
            &new_rows,
        )
        .await?;
    }
    if !changed_rows.0.is_empty() {
        sqlx::query("CREATE TEMP TABLE IF NOT EXISTS staged_edges (LIKE advisory_source_edges) ON COMMIT DELETE ROWS")
            .execute(&mut *conn)
            .await?;
        sqlx::query("TRUNCATE staged_edges")
            .execute(&mut *conn)
            .await?;
        copy_in(
            conn,
            &format!("COPY staged_edges ({COLUMNS}) FROM STDIN"),
            &changed_rows,
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

/// Up to `limit` changes after sequence number `after`, in sequence order, each as its
/// exported JSON line. Run it in a `REPEATABLE READ` transaction so the three tables are
/// read from one snapshot.
pub async fn changes_after(
    conn: &mut PgConnection,
    after: i64,
    limit: i64,
) -> Result<Vec<(ChangePoint, Change)>> {
    let rows: Vec<(i16, i64, DateTime<Utc>, String)> = sqlx::query_as(
        r#"(SELECT 0::int2, change_seq, changed_at, document FROM canonical_advisories
              WHERE change_seq > $1 ORDER BY change_seq LIMIT $2)
         UNION ALL
         (SELECT 1::int2, change_seq, changed_at, document FROM advisory_source_edges
              WHERE change_seq > $1 ORDER BY change_seq LIMIT $2)
         UNION ALL
         (SELECT 2::int2, change_seq, changed_at,
                 '{"merge_hash":' || to_json(merge_hash)::text || ',"reason":' || to_json(reason)::text || '}'
              FROM advisory_deletions WHERE change_seq > $1 ORDER BY change_seq LIMIT $2)
         ORDER BY 2 LIMIT $2"#,
    )
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(kind, seq, at, line)| {
            let change = match kind {
                0 => Change::Canonical(line),
                1 => Change::Edge(line),
                _ => Change::Deletion(line),
            };
            (ChangePoint { seq, at }, change)
        })
        .collect())
}

/// The newest change, if any.
pub async fn latest_change(pool: &PgPool) -> Result<Option<ChangePoint>> {
    let row: Option<(i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT change_seq, changed_at FROM (
             SELECT change_seq, changed_at FROM canonical_advisories
             UNION ALL SELECT change_seq, changed_at FROM advisory_source_edges
             UNION ALL SELECT change_seq, changed_at FROM advisory_deletions) c
         ORDER BY change_seq DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(seq, at)| ChangePoint { seq, at }))
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
