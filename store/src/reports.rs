//! What the reports API (`reports.stella-ops.org`) reads: the latest result per Scan and
//! per image digest as of a resourceVersion, their findings, the stored inventory.
//!
//! A resourceVersion is a result id: the state "as of" `rv` is, for each Scan (or digest),
//! its newest result with `id <= rv`. Pages of one LIST all read at the LIST's `rv`, so a
//! result written between two pages shows up in neither (as with the API server's
//! consistent continue). Result ids commit in order (migration 0021: every INSERT into
//! `scan_results` takes a transaction-level lock before drawing its ids), so once an id is
//! visible no lower one can still appear, and reading on with `id > rv` misses nothing.

use sqlx::{PgPool, Row};

/// The newest result id: the resourceVersion of a LIST started now (0 when empty).
pub const CURRENT_VERSION_SQL: &str = "SELECT COALESCE(max(id), 0) FROM scan_results";

/// Columns of a [`ResultRow`].
const RESULT_COLUMNS: &str = "id, scan_namespace, scan_name, scan_uid, image_ref, image_digest, verdict,
    critical, high, medium, low, policy_digest, advisory_snapshot, finished_at, components, sbom_uri,
    sbom_sha256";

/// The latest result of each Scan as of `$1`, and of the digest each running workload
/// container runs (`running_images`, named by its report name), merged in (namespace, name)
/// order after the key (`$2`, `$3`), optionally in one namespace (`$4`) or of one name
/// (`$5`); at most `$6`. Results written for something other than a Scan (a Schedule's
/// re-evaluation records `schedule/<name>`) are not a Scan's. A workload whose digest has no
/// result yet has no row. Served by indexes `scan_results_report`, `running_images_pkey`
/// and `scan_results_digest_id`.
pub fn latest_per_scan_sql() -> String {
    format!(
        "SELECT * FROM (
           (SELECT DISTINCT ON (scan_namespace, scan_name) {RESULT_COLUMNS},
                   NULL::text AS workload_kind, NULL::text AS workload_name, NULL::text AS container
            FROM scan_results
            WHERE scan_namespace IS NOT NULL AND scan_name IS NOT NULL AND strpos(scan_name, '/') = 0
              AND id <= $1 AND (scan_namespace, scan_name) > ($2, $3)
              AND ($4::text IS NULL OR scan_namespace = $4) AND ($5::text IS NULL OR scan_name = $5)
            ORDER BY scan_namespace, scan_name, id DESC
            LIMIT $6)
           UNION ALL
           (SELECT r.id, w.namespace, w.report_name, NULL, w.image_ref, r.image_digest, r.verdict,
                   r.critical, r.high, r.medium, r.low, r.policy_digest, r.advisory_snapshot,
                   r.finished_at, r.components, r.sbom_uri, r.sbom_sha256,
                   w.workload_kind, w.workload_name, w.container
            FROM running_images w
            CROSS JOIN LATERAL (SELECT * FROM scan_results s
                                WHERE s.image_digest = w.image_digest AND s.id <= $1
                                ORDER BY s.id DESC LIMIT 1) r
            WHERE (w.namespace, w.report_name) > ($2, $3)
              AND ($4::text IS NULL OR w.namespace = $4) AND ($5::text IS NULL OR w.report_name = $5)
            ORDER BY w.namespace, w.report_name
            LIMIT $6)
         ) merged
         ORDER BY scan_namespace, scan_name, workload_kind NULLS FIRST
         LIMIT $6"
    )
}

/// The latest result of each image digest as of `$1`, in digest order after `$2`,
/// optionally of one digest (`$3`); at most `$4`. Served by index `scan_results_digest_id`.
pub fn latest_per_digest_sql() -> String {
    format!(
        "SELECT DISTINCT ON (image_digest) {RESULT_COLUMNS}
         FROM scan_results
         WHERE id <= $1 AND image_digest > $2 AND ($3::text IS NULL OR image_digest = $3)
         ORDER BY image_digest, id DESC
         LIMIT $4"
    )
}

/// One stored result, without its findings.
#[derive(Clone, Debug, PartialEq)]
pub struct ResultRow {
    /// Result id (its resourceVersion).
    pub id: i64,
    /// The Scan's namespace, name and uid (when a Scan asked).
    pub scan_namespace: Option<String>,
    /// See `scan_namespace`.
    pub scan_name: Option<String>,
    /// See `scan_namespace`.
    pub scan_uid: Option<String>,
    /// Image as asked.
    pub image_ref: String,
    /// Digest scanned.
    pub image_digest: String,
    /// `Pass`, `Warn` or `Fail`.
    pub verdict: String,
    /// Counted findings: critical, high, medium, low.
    pub counts: [i32; 4],
    /// Digest of the policy (none before the decider).
    pub policy_digest: Option<String>,
    /// Advisory change sequence matched against.
    pub advisory_snapshot: i64,
    /// When it was recorded.
    pub finished_at: chrono::DateTime<chrono::Utc>,
    /// Components in the SBOM.
    pub components: i32,
    /// `s3://bucket/key` of the CycloneDX SBOM.
    pub sbom_uri: String,
    /// `sha256:` of the SBOM bytes.
    pub sbom_sha256: String,
    /// The running workload container this row reports on (none: a Scan's result).
    pub workload: Option<WorkloadRef>,
}

/// A workload container a report is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadRef {
    /// `Deployment`, `StatefulSet`, … or `Pod`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// The container.
    pub container: String,
}

fn result_row(r: &sqlx::postgres::PgRow) -> ResultRow {
    ResultRow {
        id: r.get("id"),
        scan_namespace: r.get("scan_namespace"),
        scan_name: r.get("scan_name"),
        scan_uid: r.get("scan_uid"),
        image_ref: r.get("image_ref"),
        image_digest: r.get("image_digest"),
        verdict: r.get("verdict"),
        counts: [
            r.get("critical"),
            r.get("high"),
            r.get("medium"),
            r.get("low"),
        ],
        policy_digest: r.get("policy_digest"),
        advisory_snapshot: r.get("advisory_snapshot"),
        finished_at: r.get("finished_at"),
        components: r.get("components"),
        sbom_uri: r.get("sbom_uri"),
        sbom_sha256: r.get("sbom_sha256"),
        workload: r
            .try_get::<Option<String>, _>("workload_kind")
            .ok()
            .flatten()
            .map(|kind| WorkloadRef {
                kind,
                name: r.get("workload_name"),
                container: r.get("container"),
            }),
    }
}

/// The newest result id (see [`CURRENT_VERSION_SQL`]).
pub async fn current_version(pool: &PgPool) -> crate::Result<i64> {
    Ok(sqlx::query_scalar(CURRENT_VERSION_SQL)
        .fetch_one(pool)
        .await?)
}

/// Which Scans [`latest_per_scan`] reads.
#[derive(Clone, Debug, Default)]
pub struct ScanQuery<'a> {
    /// As of this result id.
    pub version: i64,
    /// Only this namespace.
    pub namespace: Option<&'a str>,
    /// Only this name.
    pub name: Option<&'a str>,
    /// Strictly after this (namespace, name); `("", "")` from the start.
    pub after: (&'a str, &'a str),
    /// At most this many.
    pub limit: i64,
}

/// The latest result of each Scan (see [`latest_per_scan_sql`]).
pub async fn latest_per_scan(pool: &PgPool, q: &ScanQuery<'_>) -> crate::Result<Vec<ResultRow>> {
    Ok(sqlx::query(&latest_per_scan_sql())
        .bind(q.version)
        .bind(q.after.0)
        .bind(q.after.1)
        .bind(q.namespace)
        .bind(q.name)
        .bind(q.limit)
        .fetch_all(pool)
        .await?
        .iter()
        .map(result_row)
        .collect())
}

/// The latest result of each digest as of `version`, after `after`, optionally only
/// `digest`; at most `limit` (see [`latest_per_digest_sql`]).
pub async fn latest_per_digest(
    pool: &PgPool,
    version: i64,
    after: &str,
    digest: Option<&str>,
    limit: i64,
) -> crate::Result<Vec<ResultRow>> {
    Ok(sqlx::query(&latest_per_digest_sql())
        .bind(version)
        .bind(after)
        .bind(digest)
        .bind(limit)
        .fetch_all(pool)
        .await?
        .iter()
        .map(result_row)
        .collect())
}

/// One finding of a result, with the advisory's aliases and CVSS.
#[derive(Clone, Debug, PartialEq)]
pub struct FindingRow {
    /// The result it belongs to.
    pub scan_id: i64,
    /// Vulnerability id.
    pub vuln_id: String,
    /// The advisory's other ids.
    pub aliases: Vec<String>,
    /// Component (package URL with version).
    pub purl: String,
    /// Severity.
    pub severity: Option<String>,
    /// CVSS as stored with the advisory (`version`, `vector`, `score`).
    pub cvss: Option<serde_json::Value>,
    /// Fixed version.
    pub fixed_version: Option<String>,
    /// Layer that introduced the component.
    pub layer_digest: Option<String>,
    /// `fails`, `warns`, `counted` or `ignored`.
    pub outcome: Option<String>,
    /// `vex:<providers>`, `rule:<name>` or `threshold`.
    pub decided_by: Option<String>,
    /// For a person.
    pub reason: Option<String>,
    /// Whether the image's entrypoint uses the component (the Usage view; `None`: not
    /// known).
    pub used_by_entrypoint: Option<bool>,
}

/// The findings of results `ids` (any order), each result's in decision order (what fails
/// first, then by severity, id and component). At most `per_result` of each.
pub async fn findings(
    pool: &PgPool,
    ids: &[i64],
    per_result: i64,
) -> crate::Result<Vec<FindingRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query(
        "SELECT * FROM (
             SELECT f.scan_id, f.vuln_id, COALESCE(a.aliases, '{}') AS aliases, f.purl, f.severity, a.cvss,
                    f.fixed_version, f.layer_digest, f.outcome, f.decided_by, f.reason,
                    (SELECT bool_or(p.used_by_entrypoint) FROM image_packages p
                     WHERE p.image_digest = r.image_digest AND p.purl = f.purl) AS used_by_entrypoint,
                    row_number() OVER (PARTITION BY f.scan_id ORDER BY
                        CASE f.outcome WHEN 'fails' THEN 0 WHEN 'warns' THEN 1 WHEN 'counted' THEN 2 ELSE 3 END,
                        CASE f.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 WHEN 'low' THEN 3 ELSE 4 END,
                        f.vuln_id, f.purl) AS n
             FROM scan_findings f
             JOIN scan_results r ON r.id = f.scan_id
             LEFT JOIN canonical_advisories a ON a.merge_hash = f.merge_hash
             WHERE f.scan_id = ANY($1)) t
         WHERE n <= $2
         ORDER BY scan_id, n",
    )
    .bind(ids)
    .bind(per_result)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| FindingRow {
        scan_id: r.get("scan_id"),
        vuln_id: r.get("vuln_id"),
        aliases: r.get("aliases"),
        purl: r.get("purl"),
        severity: r.get("severity"),
        cvss: r.get("cvss"),
        fixed_version: r.get("fixed_version"),
        layer_digest: r.get("layer_digest"),
        outcome: r.get("outcome"),
        decided_by: r.get("decided_by"),
        reason: r.get("reason"),
        used_by_entrypoint: r.get("used_by_entrypoint"),
    })
    .collect())
}

/// One component of an image's stored inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentRow {
    /// Package URL.
    pub purl: String,
    /// Version.
    pub version: String,
    /// Layer that introduced it.
    pub layer_digest: String,
}

/// The components of `digest` (each package URL once), in package URL order after
/// `after`; at most `limit`.
pub async fn components(
    pool: &PgPool,
    digest: &str,
    after: &str,
    limit: i64,
) -> crate::Result<Vec<ComponentRow>> {
    Ok(sqlx::query(
        "SELECT DISTINCT ON (purl) purl, version, layer_digest FROM image_packages
         WHERE image_digest = $1 AND purl > $2 ORDER BY purl, affects_key LIMIT $3",
    )
    .bind(digest)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| ComponentRow {
        purl: r.get("purl"),
        version: r.get("version"),
        layer_digest: r.get("layer_digest"),
    })
    .collect())
}

/// Components of each of `digests` by ecosystem (the package URL type): (digest, type, count).
pub async fn ecosystems(
    pool: &PgPool,
    digests: &[&str],
) -> crate::Result<Vec<(String, String, i64)>> {
    if digests.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_as(
        "SELECT image_digest, split_part(substr(purl, 5), '/', 1) AS ecosystem, count(DISTINCT purl)
         FROM image_packages WHERE image_digest = ANY($1)
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(digests)
    .fetch_all(pool)
    .await?)
}

/// The Scans (namespace, name) that have a result of each of `digests` as of `version`:
/// (digest, namespace, name), at most `per_digest` of each.
pub async fn scans_of(
    pool: &PgPool,
    digests: &[&str],
    version: i64,
    per_digest: i64,
) -> crate::Result<Vec<(String, String, String)>> {
    if digests.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_as(
        "SELECT image_digest, scan_namespace, scan_name FROM (
             SELECT image_digest, scan_namespace, scan_name,
                    row_number() OVER (PARTITION BY image_digest ORDER BY scan_namespace, scan_name) AS n
             FROM (SELECT DISTINCT image_digest, scan_namespace, scan_name FROM scan_results
                   WHERE image_digest = ANY($1) AND id <= $2 AND scan_namespace IS NOT NULL
                     AND scan_name IS NOT NULL AND strpos(scan_name, '/') = 0) d) t
         WHERE n <= $3 ORDER BY 1, 2, 3",
    )
    .bind(digests)
    .bind(version)
    .bind(per_digest)
    .fetch_all(pool)
    .await?)
}

/// A result recorded after a resourceVersion, and whether it is the first of its Scan and
/// of its digest (a watch's `ADDED`) or replaces an earlier one (`MODIFIED`).
#[derive(Clone, Debug, PartialEq)]
pub struct NewerResult {
    /// The result.
    pub row: ResultRow,
    /// No earlier result of the same Scan (namespace and name).
    pub first_of_scan: bool,
    /// No earlier result of the same digest.
    pub first_of_digest: bool,
}

/// Results with `id > after`, oldest first, at most `limit`: what a watch sends next.
pub async fn results_after(
    pool: &PgPool,
    after: i64,
    limit: i64,
) -> crate::Result<Vec<NewerResult>> {
    let sql = format!(
        "SELECT {RESULT_COLUMNS},
            NOT EXISTS (SELECT 1 FROM scan_results p WHERE p.scan_namespace = r.scan_namespace
                        AND p.scan_name = r.scan_name AND p.id < r.id) AS first_of_scan,
            NOT EXISTS (SELECT 1 FROM scan_results p WHERE p.image_digest = r.image_digest
                        AND p.id < r.id) AS first_of_digest
         FROM scan_results r WHERE id > $1 ORDER BY id LIMIT $2"
    );
    Ok(sqlx::query(&sql)
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| NewerResult {
            row: result_row(r),
            first_of_scan: r.get("first_of_scan"),
            first_of_digest: r.get("first_of_digest"),
        })
        .collect())
}
