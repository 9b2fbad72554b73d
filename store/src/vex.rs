//! VEX documents and statements (high-level architecture §4.2): one row per provider's
//! document (its current version) and its statements. Ingest is lossless: the same
//! document again changes nothing, an older version is ignored, a newer one replaces the
//! statements of the one it supersedes, all in one transaction.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use stellaops_policy::vex::consensus::{Claim, purl_base};
use stellaops_policy::vex::{Document, Product, Statement, Status, Version};

use crate::{Error, Result};

/// What an ingest did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ingested {
    /// A document not seen before: its statements were stored.
    New {
        /// Statements stored.
        statements: usize,
    },
    /// The same bytes were already stored: nothing changed.
    Unchanged,
    /// A newer version replaced the stored one's statements.
    Superseded {
        /// The version it replaced.
        previous: String,
        /// Statements stored.
        statements: usize,
    },
    /// An older version than the stored one: ignored.
    Older {
        /// The stored version.
        current: String,
    },
}

fn to_chrono(t: Option<jiff::Timestamp>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32))
}

fn from_chrono(t: Option<DateTime<Utc>>) -> Option<jiff::Timestamp> {
    t.and_then(|t| jiff::Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32).ok())
}

fn version_key(version: &Version) -> Vec<i64> {
    version
        .key
        .iter()
        .map(|k| i64::try_from(*k).unwrap_or(i64::MAX))
        .collect()
}

/// The vulnerability ids and package bases a changed document's statements (old and new)
/// speak about: what re-evaluation looks for among stored results.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    /// Vulnerability ids and aliases.
    pub ids: Vec<String>,
    /// `type/namespace/name` of the packages (a statement about a whole image adds none).
    pub purl_bases: Vec<String>,
    /// Images statements are limited to.
    pub images: Vec<String>,
}

impl Touched {
    fn add(&mut self, statements: &[Statement]) {
        for s in statements {
            self.ids.push(s.vulnerability.clone());
            self.ids.extend(s.aliases.iter().cloned());
            self.purl_bases
                .extend(s.product.purl.as_deref().and_then(purl_base));
            self.images.extend(s.product.image_digest.clone());
        }
        for list in [&mut self.ids, &mut self.purl_bases, &mut self.images] {
            list.sort();
            list.dedup();
        }
    }

    /// Nothing to look for.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A superseded statement's vulnerability, aliases, purl and image.
type WithdrawnStatement = (String, Vec<String>, Option<String>, Option<String>);

/// Store `document` as `provider`'s.
pub async fn ingest(pool: &PgPool, provider: &str, document: &Document) -> Result<Ingested> {
    ingest_touching(pool, provider, document)
        .await
        .map(|(i, _)| i)
}

/// [`ingest`], also saying what the change touches (empty when nothing changed).
pub async fn ingest_touching(
    pool: &PgPool,
    provider: &str,
    document: &Document,
) -> Result<(Ingested, Touched)> {
    let mut touched = Touched::default();
    let mut tx = pool.begin().await?;
    let existing = sqlx::query(
        "SELECT id, version, version_key, sha256 FROM vex_documents
         WHERE provider = $1 AND document_id = $2 FOR UPDATE",
    )
    .bind(provider)
    .bind(&document.id)
    .fetch_optional(&mut *tx)
    .await?;
    let new_key = version_key(&document.version);
    let (row_id, outcome) = match existing {
        None => {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO vex_documents (provider, document_id, format, version, version_key, sha256, issued_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(provider)
            .bind(&document.id)
            .bind(document.format.as_str())
            .bind(&document.version.text)
            .bind(&new_key)
            .bind(&document.sha256)
            .bind(to_chrono(document.timestamp))
            .fetch_one(&mut *tx)
            .await?;
            (
                id,
                Ingested::New {
                    statements: document.statements.len(),
                },
            )
        }
        Some(row) => {
            let id: i64 = row.get("id");
            let stored_version: String = row.get("version");
            let stored_key: Vec<i64> = row.get("version_key");
            let stored_sha: String = row.get("sha256");
            if stored_sha == document.sha256 {
                return Ok((Ingested::Unchanged, touched));
            }
            match stored_key.cmp(&new_key) {
                std::cmp::Ordering::Greater => {
                    return Ok((
                        Ingested::Older {
                            current: stored_version,
                        },
                        touched,
                    ));
                }
                std::cmp::Ordering::Equal => {
                    return Err(Error::Refused(format!(
                        "{provider}'s document {} version {} is already stored with other content; a changed document needs a new version",
                        document.id, document.version.text
                    )));
                }
                std::cmp::Ordering::Less => {}
            }
            sqlx::query(
                "UPDATE vex_documents SET format = $2, version = $3, version_key = $4, sha256 = $5,
                        issued_at = $6, ingested_at = now()
                 WHERE id = $1",
            )
            .bind(id)
            .bind(document.format.as_str())
            .bind(&document.version.text)
            .bind(&new_key)
            .bind(&document.sha256)
            .bind(to_chrono(document.timestamp))
            .execute(&mut *tx)
            .await?;
            // What the superseded version said is touched too: a withdrawn statement
            // changes decisions as much as a new one.
            let old: Vec<WithdrawnStatement> = sqlx::query_as(
                "DELETE FROM vex_statements WHERE document = $1
                 RETURNING vulnerability, aliases, purl, image_digest",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            for (vulnerability, aliases, purl, image) in old {
                touched.ids.push(vulnerability);
                touched.ids.extend(aliases);
                touched
                    .purl_bases
                    .extend(purl.as_deref().and_then(purl_base));
                touched.images.extend(image);
            }
            (
                id,
                Ingested::Superseded {
                    previous: stored_version,
                    statements: document.statements.len(),
                },
            )
        }
    };
    insert_statements(&mut tx, row_id, &document.statements).await?;
    tx.commit().await?;
    touched.add(&document.statements);
    Ok((outcome, touched))
}

/// Images whose latest result has a finding a change `touched` may decide differently: an
/// advisory known by one of its ids, on a package of one of its bases (or any package of
/// an image a statement is limited to).
pub async fn affected_images(pool: &PgPool, touched: &Touched) -> Result<Vec<String>> {
    if touched.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT DISTINCT r.image_digest, f.purl
         FROM scan_results r
         JOIN scan_findings f ON f.scan_id = r.id
         LEFT JOIN canonical_advisories a ON a.merge_hash = f.merge_hash
         WHERE r.id = (SELECT max(id) FROM scan_results l WHERE l.image_digest = r.image_digest)
           AND (f.vuln_id = ANY($1) OR a.cve = ANY($1) OR a.aliases && $1)",
    )
    .bind(&touched.ids)
    .fetch_all(pool)
    .await?;
    let mut images: Vec<String> = rows
        .into_iter()
        .filter(|(digest, purl)| {
            touched.images.contains(digest)
                || purl_base(purl).is_some_and(|b| touched.purl_bases.binary_search(&b).is_ok())
        })
        .map(|(digest, _)| digest)
        .collect();
    images.sort();
    images.dedup();
    Ok(images)
}

/// Aliases travel as one string per row, joined by the unit separator (a 2-D array cannot
/// be UNNESTed row by row).
const ALIAS_SEPARATOR: char = '\u{1f}';

/// Statements as columns, for one UNNEST insert.
#[derive(Default)]
struct StatementColumns {
    vulnerability: Vec<String>,
    aliases: Vec<String>,
    purl_base: Vec<Option<String>>,
    purl: Vec<Option<String>>,
    image_digest: Vec<Option<String>>,
    status: Vec<String>,
    justification: Vec<Option<String>>,
    impact: Vec<Option<String>>,
    action: Vec<Option<String>>,
    stated_at: Vec<Option<DateTime<Utc>>>,
}

async fn insert_statements(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    document: i64,
    statements: &[Statement],
) -> Result<()> {
    for chunk in statements.chunks(5000) {
        let mut rows = StatementColumns::default();
        for s in chunk {
            rows.vulnerability.push(s.vulnerability.clone());
            rows.aliases
                .push(s.aliases.join(&ALIAS_SEPARATOR.to_string()));
            rows.purl_base
                .push(s.product.purl.as_deref().and_then(purl_base));
            rows.purl.push(s.product.purl.clone());
            rows.image_digest.push(s.product.image_digest.clone());
            rows.status.push(s.status.as_str().to_string());
            rows.justification.push(s.justification.clone());
            rows.impact.push(s.impact_statement.clone());
            rows.action.push(s.action_statement.clone());
            rows.stated_at.push(to_chrono(s.timestamp));
        }
        sqlx::query(
            "INSERT INTO vex_statements (document, vulnerability, aliases, purl_base, purl, image_digest,
                 status, justification, impact, action, stated_at)
             SELECT $1, v, CASE WHEN a = '' THEN '{}'::text[] ELSE string_to_array(a, chr(31)) END,
                    pb, p, i, s, j, im, ac, t
             FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::text[], $9::text[], $10::text[], $11::timestamptz[])
                  AS x(v, a, pb, p, i, s, j, im, ac, t)",
        )
        .bind(document)
        .bind(&rows.vulnerability)
        .bind(&rows.aliases)
        .bind(&rows.purl_base)
        .bind(&rows.purl)
        .bind(&rows.image_digest)
        .bind(&rows.status)
        .bind(&rows.justification)
        .bind(&rows.impact)
        .bind(&rows.action)
        .bind(&rows.stated_at)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Every stored statement about one of `vulnerability_ids` (by id or alias) for a package
/// of one of `purl_bases` or for whole images, with its provider and document: the input
/// of [`stellaops_policy::vex::consensus::decide`] after
/// [`stellaops_policy::vex::consensus::applies`].
pub async fn claims(
    pool: &PgPool,
    vulnerability_ids: &[String],
    purl_bases: &[String],
) -> Result<Vec<Claim>> {
    let rows = sqlx::query(
        "SELECT d.provider, d.document_id, d.version, s.vulnerability, s.aliases, s.purl,
                s.image_digest, s.status, s.justification, s.impact, s.action, s.stated_at
         FROM vex_statements s JOIN vex_documents d ON d.id = s.document
         WHERE (s.vulnerability = ANY($1) OR s.aliases && $1)
           AND (s.purl_base = ANY($2) OR s.purl IS NULL)
         ORDER BY d.provider, s.id",
    )
    .bind(vulnerability_ids)
    .bind(purl_bases)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let status: String = row.get("status");
            let version: String = row.get("version");
            Ok(Claim {
                provider: row.get("provider"),
                document_id: row.get("document_id"),
                document_version: Version::parse(&version).ok_or_else(|| {
                    Error::Refused(format!("stored VEX version {version:?} does not parse"))
                })?,
                statement: Statement {
                    vulnerability: row.get("vulnerability"),
                    aliases: row.get("aliases"),
                    product: Product {
                        purl: row.get("purl"),
                        image_digest: row.get("image_digest"),
                    },
                    status: Status::parse(&status).ok_or_else(|| {
                        Error::Refused(format!("stored VEX status {status:?} is unknown"))
                    })?,
                    justification: row.get("justification"),
                    impact_statement: row.get("impact"),
                    action_statement: row.get("action"),
                    timestamp: from_chrono(row.get("stated_at")),
                },
            })
        })
        .collect()
}

/// How many statements a provider has stored (for the CLI's summary and tests).
pub async fn statement_count(pool: &PgPool, provider: &str) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM vex_statements s JOIN vex_documents d ON d.id = s.document
         WHERE d.provider = $1",
    )
    .bind(provider)
    .fetch_one(pool)
    .await?)
}
