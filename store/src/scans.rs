//! Scan results: the lookups the Scan controller makes (the worker writes the rows).

/// The newest verdict of a digest (`$1`) with its signed envelope: what the webhook checks.
pub const LATEST_VERDICT_SQL: &str =
    "SELECT verdict, finished_at, attestation_key, attestation FROM scan_results
     WHERE image_digest = $1 ORDER BY finished_at DESC, id DESC LIMIT 1";

/// The latest result recorded for a Scan, by its uid (`$1`).
pub const BY_SCAN_SQL: &str =
    "SELECT image_digest, sbom_uri, sbom_sha256, components, critical, high, medium, low, verdict,
            attestation_key, attestation
     FROM scan_results WHERE scan_uid = $1 ORDER BY id DESC LIMIT 1";

/// The latest result of a digest (`$1`) at an advisory snapshot (`$2`): a Scan of that
/// digest now would find the same, so it is reused. Served by index `scan_results_reuse`.
pub const REUSE_SQL: &str =
    "SELECT image_digest, sbom_uri, sbom_sha256, components, critical, high, medium, low, verdict,
            attestation_key, attestation
     FROM scan_results WHERE image_digest = $1 AND advisory_snapshot = $2 ORDER BY id DESC LIMIT 1";

/// Whether a digest (`$1`) has any recorded scan (then its inventory is stored).
pub const SCANNED_SQL: &str = "SELECT EXISTS (SELECT 1 FROM scan_results WHERE image_digest = $1)";

/// The stored inventory of a digest (`$1`): each package URL once, with its layer.
pub const INVENTORY_SQL: &str = "SELECT DISTINCT purl, layer_digest FROM image_packages
     WHERE image_digest = $1 ORDER BY purl, layer_digest";

/// Why a result is what it is: the result and every finding with what decided it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// Result id.
    pub scan_id: i64,
    /// Image as scanned.
    pub image: String,
    /// Its digest.
    pub image_digest: String,
    /// The verdict.
    pub verdict: String,
    /// The policy (JSON) and its digest.
    pub policy: serde_json::Value,
    /// Digest of the policy (results from before the decider have none).
    pub policy_digest: Option<String>,
    /// When it was recorded.
    pub finished_at: chrono::DateTime<chrono::Utc>,
    /// Every matched finding.
    pub findings: Vec<ExplainedFinding>,
}

/// One finding of an [`Explanation`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExplainedFinding {
    /// Vulnerability id.
    pub vuln_id: String,
    /// Component.
    pub purl: String,
    /// Severity.
    pub severity: Option<String>,
    /// Fixed version.
    pub fixed_version: Option<String>,
    /// `fails`, `warns`, `counted` or `ignored` (`None`: recorded before the decider).
    pub outcome: Option<String>,
    /// `vex:<providers>`, `rule:<name>` or `threshold`.
    pub decided_by: Option<String>,
    /// For a person.
    pub reason: Option<String>,
    /// In CISA's KEV catalog since (its CVE, from the latest feed ingested).
    pub kev_since: Option<chrono::NaiveDate>,
    /// EPSS probability (latest feed).
    pub epss: Option<f64>,
}

/// The latest result of `image` — a digest (`sha256:…`) or the reference it was scanned
/// as — explained; `None` when it was never scanned.
pub async fn explain(pool: &sqlx::PgPool, image: &str) -> crate::Result<Option<Explanation>> {
    use sqlx::Row;
    let Some(row) = sqlx::query(
        "SELECT id, image_ref, image_digest, verdict, policy, policy_digest, finished_at
         FROM scan_results WHERE image_digest = $1 OR image_ref = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(image)
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let scan_id: i64 = row.get("id");
    // KEV and EPSS by the advisory's CVE (the finding's own id when it is one).
    let findings = sqlx::query(
        "SELECT f.vuln_id, f.purl, f.severity, f.fixed_version, f.outcome, f.decided_by, f.reason,
                k.date_added AS kev_since, e.epss
         FROM scan_findings f
         LEFT JOIN canonical_advisories a ON a.merge_hash = f.merge_hash
         LEFT JOIN kev_entries k ON k.cve = COALESCE(a.cve, f.vuln_id)
         LEFT JOIN epss_scores e ON e.cve = COALESCE(a.cve, f.vuln_id)
         WHERE f.scan_id = $1
         ORDER BY CASE f.outcome WHEN 'fails' THEN 0 WHEN 'warns' THEN 1 WHEN 'counted' THEN 2 ELSE 3 END,
                  CASE f.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 WHEN 'low' THEN 3 ELSE 4 END,
                  f.vuln_id, f.purl",
    )
    .bind(scan_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| ExplainedFinding {
        vuln_id: r.get("vuln_id"),
        purl: r.get("purl"),
        severity: r.get("severity"),
        fixed_version: r.get("fixed_version"),
        outcome: r.get("outcome"),
        decided_by: r.get("decided_by"),
        reason: r.get("reason"),
        kev_since: r.get("kev_since"),
        epss: r.get("epss"),
    })
    .collect();
    Ok(Some(Explanation {
        scan_id,
        image: row.get("image_ref"),
        image_digest: row.get("image_digest"),
        verdict: row.get("verdict"),
        policy: row.get("policy"),
        policy_digest: row.get("policy_digest"),
        finished_at: row.get("finished_at"),
        findings,
    }))
}
