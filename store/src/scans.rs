//! Scan results: every statement on them — results, findings, stored inventories,
//! licenses and their decisions — for the scan worker, `evaluate`, the Scan controller,
//! the webhook and the reports API.

/// The newest verdict of a digest (`$1`) with its signed envelope: what the webhook checks.
const LATEST_VERDICT_SQL: &str =
    "SELECT verdict, finished_at, attestation_key, attestation FROM scan_results
     WHERE image_digest = $1 ORDER BY finished_at DESC, id DESC LIMIT 1";

/// The latest result of a digest (`$1`) decided under the policy digest `$2` (a Scan
/// naming that ScanPolicy or a re-evaluation under it): what a ZastavaPolicy with a
/// `policyRef` judges.
const LATEST_VERDICT_UNDER_POLICY_SQL: &str =
    "SELECT verdict, finished_at, attestation_key, attestation FROM scan_results
     WHERE image_digest = $1 AND policy_digest = $2 ORDER BY finished_at DESC, id DESC LIMIT 1";

/// This build's analyzer version, as results record it (PostgreSQL `integer`).
pub const ANALYZER: i32 = stellaops_scanner::analyze::ANALYZER_VERSION as i32;

/// The latest result recorded for a Scan, by its uid (`$1`).
const BY_SCAN_SQL: &str =
    "SELECT id, image_digest, sbom_uri, sbom_sha256, components, critical, high, medium, low, verdict,
            attestation_key, attestation, usage_sbom_uri, usage_sbom_sha256, used_components
     FROM scan_results WHERE scan_uid = $1 ORDER BY id DESC LIMIT 1";

/// The latest result of a digest (`$1`) at an advisory snapshot (`$2`) whose inventory
/// this analyzer version (`$3`) made: a Scan of that digest now would find the same, so
/// it is reused. Served by index `scan_results_reuse`.
pub const REUSE_SQL: &str =
    "SELECT id, image_digest, sbom_uri, sbom_sha256, components, critical, high, medium, low, verdict,
            attestation_key, attestation, usage_sbom_uri, usage_sbom_sha256, used_components
     FROM scan_results WHERE image_digest = $1 AND advisory_snapshot = $2 AND analyzer = $3
     ORDER BY id DESC LIMIT 1";

/// Whether a digest (`$1`) has any recorded scan (then its inventory is stored).
const SCANNED_SQL: &str = "SELECT EXISTS (SELECT 1 FROM scan_results WHERE image_digest = $1)";

/// The stored inventory of a digest (`$1`): each package URL once, with its layer.
const INVENTORY_SQL: &str = "SELECT DISTINCT purl, layer_digest FROM image_packages
     WHERE image_digest = $1 ORDER BY purl, layer_digest";

/// The stored inventory of a digest, or `None` when it was never scanned.
pub async fn stored_inventory(
    pool: &sqlx::PgPool,
    digest: &str,
) -> crate::Result<Option<Vec<stellaops_scanner::diff::Installed>>> {
    let scanned: bool = sqlx::query_scalar(SCANNED_SQL)
        .bind(digest)
        .fetch_one(pool)
        .await?;
    if !scanned {
        return Ok(None);
    }
    let rows: Vec<(String, String)> = sqlx::query_as(INVENTORY_SQL)
        .bind(digest)
        .fetch_all(pool)
        .await?;
    Ok(Some(
        rows.into_iter()
            .map(|(purl, layer)| stellaops_scanner::diff::Installed { purl, layer })
            .collect(),
    ))
}

/// Each Scan's latest result of the digests `$1`, of those recorded under the ScanPolicy
/// named `$2`: what a change of that policy (or a waiver's expiry) re-evaluates. A Scan
/// whose latest result came from another policy is left alone.
const LATEST_UNDER_POLICY_SQL: &str = "SELECT * FROM (
         SELECT DISTINCT ON (image_digest, scan_uid) id, image_digest, image_ref, sbom_uri,
                sbom_sha256, components, policy, verdict, scan_namespace, scan_name, scan_uid
         FROM scan_results WHERE image_digest = ANY($1)
         ORDER BY image_digest, scan_uid, finished_at DESC, id DESC) latest
     WHERE policy->>'policyRef' = $2";

/// What a change that is not a policy's (a VEX statement, `evaluate --digest`) re-evaluates
/// of the digests `$1`: of each Scan's latest result (those recorded for no Scan count as
/// one), the latest under each policy — per ScanPolicy name, and one for the inline
/// policies. So the newest verdict under every ScanPolicy (what `requireScan` under its
/// `policyRef` reads) and the image's latest (what it reads otherwise) are both decided
/// again, each for its own Scan, bounded by the policies rather than by every Scan that
/// ever scanned the image; no Scan gets a result for an older one of its results. In id
/// order: recorded in that order, the image's latest result stays the latest.
const LATEST_PER_POLICY_SQL: &str = "SELECT * FROM (
         SELECT DISTINCT ON (image_digest, policy->>'policyRef') * FROM (
             SELECT DISTINCT ON (image_digest, scan_uid) id, image_digest, image_ref, sbom_uri,
                    sbom_sha256, components, policy, verdict, scan_namespace, scan_name,
                    scan_uid, finished_at
             FROM scan_results WHERE image_digest = ANY($1)
             ORDER BY image_digest, scan_uid, finished_at DESC, id DESC) per_scan
         ORDER BY image_digest, policy->>'policyRef', finished_at DESC, id DESC) per_policy
     ORDER BY finished_at, id";

/// The digests with a result recorded under the ScanPolicy `name` (served by the
/// partial index `scan_results_policy_ref`).
pub async fn digests_under_policy(pool: &sqlx::PgPool, name: &str) -> crate::Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT image_digest FROM scan_results
         WHERE policy ? 'policyRef' AND policy->>'policyRef' = $1 ORDER BY image_digest",
    )
    .bind(name)
    .fetch_all(pool)
    .await?)
}

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
    /// The components a license rule decided.
    pub licenses: Vec<LicenseDecision>,
}

/// A component a ScanPolicy license rule decided (stored with the result).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenseDecision {
    /// The component's package URL.
    pub purl: String,
    /// Its declared license expression.
    pub license: String,
    /// `fails` (a deny rule) or `warns`.
    pub outcome: String,
    /// `license:<rule>`.
    pub decided_by: String,
    /// For a person.
    pub reason: String,
}

/// A component's declared license, as the stored inventory keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewLicense {
    /// Package URL.
    pub purl: String,
    /// The SPDX expression (normal form) or the declaration as given.
    pub declared: String,
    /// License ids of the expression (empty: not an SPDX expression).
    pub ids: Vec<String>,
}

/// Record the declared licenses of `image_digest`'s components (the stored inventory's,
/// kept once per image) and the license decisions of result `scan_id`, in `tx`.
pub async fn insert_licenses(
    tx: &mut sqlx::PgConnection,
    scan_id: i64,
    image_digest: &str,
    licenses: &[NewLicense],
    decisions: &[LicenseDecision],
) -> sqlx::Result<()> {
    // License ids never contain spaces: one text per component, split in SQL.
    sqlx::query(
        "INSERT INTO image_licenses (image_digest, purl, declared, license_ids)
         SELECT $1, p, d, CASE WHEN i = '' THEN '{}'::text[] ELSE string_to_array(i, ' ') END
         FROM unnest($2::text[], $3::text[], $4::text[]) AS t(p, d, i)
         ON CONFLICT (image_digest, purl) DO UPDATE
             SET declared = EXCLUDED.declared, license_ids = EXCLUDED.license_ids",
    )
    .bind(image_digest)
    .bind(licenses.iter().map(|l| l.purl.as_str()).collect::<Vec<_>>())
    .bind(
        licenses
            .iter()
            .map(|l| l.declared.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(licenses.iter().map(|l| l.ids.join(" ")).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    insert_license_decisions(tx, &vec![scan_id; decisions.len()], decisions).await
}

/// Record license decisions, the `i`-th for result `scan_ids[i]`, in `tx`.
pub async fn insert_license_decisions(
    tx: &mut sqlx::PgConnection,
    scan_ids: &[i64],
    decisions: &[LicenseDecision],
) -> sqlx::Result<()> {
    if decisions.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&LicenseDecision) -> &str| decisions.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO scan_license_decisions (scan_id, purl, license, outcome, decided_by, reason)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
         ON CONFLICT (scan_id, purl) DO NOTHING",
    )
    .bind(scan_ids)
    .bind(col(|d| d.purl.as_str()))
    .bind(col(|d| d.license.as_str()))
    .bind(col(|d| d.outcome.as_str()))
    .bind(col(|d| d.decided_by.as_str()))
    .bind(col(|d| d.reason.as_str()))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The declared licenses stored for `digests`: digest → package URL → (declared, ids).
pub async fn licenses_of(
    pool: &sqlx::PgPool,
    digests: &[String],
) -> sqlx::Result<
    std::collections::HashMap<String, std::collections::BTreeMap<String, (String, Vec<String>)>>,
> {
    let rows: Vec<(String, String, String, Vec<String>)> = sqlx::query_as(
        "SELECT image_digest, purl, declared, license_ids FROM image_licenses
         WHERE image_digest = ANY($1)",
    )
    .bind(digests)
    .fetch_all(pool)
    .await?;
    let mut out: std::collections::HashMap<String, std::collections::BTreeMap<_, _>> =
        Default::default();
    for (digest, purl, declared, ids) in rows {
        out.entry(digest).or_default().insert(purl, (declared, ids));
    }
    Ok(out)
}

/// The license decisions of result `scan_id`, failing ones first.
pub async fn license_decisions(
    pool: &sqlx::PgPool,
    scan_id: i64,
) -> sqlx::Result<Vec<LicenseDecision>> {
    let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
        "SELECT purl, license, outcome, decided_by, reason FROM scan_license_decisions
         WHERE scan_id = $1 ORDER BY CASE outcome WHEN 'fails' THEN 0 ELSE 1 END, purl",
    )
    .bind(scan_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(purl, license, outcome, decided_by, reason)| LicenseDecision {
                purl,
                license,
                outcome,
                decided_by,
                reason,
            },
        )
        .collect())
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
    let licenses = license_decisions(pool, scan_id).await?;
    Ok(Some(Explanation {
        scan_id,
        image: row.get("image_ref"),
        image_digest: row.get("image_digest"),
        verdict: row.get("verdict"),
        policy: row.get("policy"),
        policy_digest: row.get("policy_digest"),
        finished_at: row.get("finished_at"),
        findings,
        licenses,
    }))
}

/// What a Scan's status says about a result besides its counts: the findings that made
/// the verdict (most severe first) and how many counted findings are known exploited.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResultReasons {
    /// `<id> in <purl> (<severity>; <decider>: <reason>)` for each failing, then warning,
    /// finding, at most the limit asked for.
    pub top: Vec<String>,
    /// Failing and warning findings in all (of which `top` shows the first).
    pub deciding: i64,
    /// Counted (not ignored) findings in the CISA KEV catalog.
    pub kev: i64,
    /// Counted findings with an EPSS probability of at least [`HIGH_EPSS`].
    pub high_epss: i64,
}

/// The EPSS probability from which a finding counts as likely exploited on a Scan's
/// status (10 %: EPSS scores are heavily skewed, well under 10 % of CVEs reach it).
pub const HIGH_EPSS: f64 = 0.1;

/// [`ResultReasons`] of result `scan_id`, with at most `limit` top reasons.
pub async fn reasons(
    pool: &sqlx::PgPool,
    scan_id: i64,
    limit: usize,
) -> crate::Result<ResultReasons> {
    use sqlx::Row;
    let rows = sqlx::query(
        "SELECT f.vuln_id, f.purl, f.severity, f.outcome, f.decided_by, f.reason,
                k.cve IS NOT NULL AS kev, e.epss
         FROM scan_findings f
         LEFT JOIN canonical_advisories a ON a.merge_hash = f.merge_hash
         LEFT JOIN kev_entries k ON k.cve = COALESCE(a.cve, f.vuln_id)
         LEFT JOIN epss_scores e ON e.cve = COALESCE(a.cve, f.vuln_id)
         WHERE f.scan_id = $1 AND COALESCE(f.outcome, 'counted') <> 'ignored'
         ORDER BY CASE f.outcome WHEN 'fails' THEN 0 WHEN 'warns' THEN 1 ELSE 2 END,
                  CASE f.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 WHEN 'low' THEN 3 ELSE 4 END,
                  f.vuln_id, f.purl",
    )
    .bind(scan_id)
    .fetch_all(pool)
    .await?;
    let mut out = ResultReasons::default();
    // Components a license rule decided count among the deciding reasons: denied ones
    // before the findings, warned-about ones after them.
    let (denied, warned): (Vec<_>, Vec<_>) = license_decisions(pool, scan_id)
        .await?
        .into_iter()
        .partition(|d| d.outcome == "fails");
    let license_reason = |out: &mut ResultReasons, d: &LicenseDecision| {
        out.deciding += 1;
        if out.top.len() < limit {
            out.top.push(format!(
                "license {} of {} ({}: {})",
                d.license, d.purl, d.decided_by, d.reason
            ));
        }
    };
    for d in &denied {
        license_reason(&mut out, d);
    }
    for r in rows {
        let epss: Option<f64> = r.get("epss");
        out.kev += i64::from(r.get::<bool, _>("kev"));
        out.high_epss += i64::from(epss.is_some_and(|e| e >= HIGH_EPSS));
        let outcome: Option<String> = r.get("outcome");
        if !matches!(outcome.as_deref(), Some("fails" | "warns")) {
            continue;
        }
        let (vuln, purl): (String, String) = (r.get("vuln_id"), r.get("purl"));
        let severity: Option<String> = r.get("severity");
        let decided_by: Option<String> = r.get("decided_by");
        let reason: Option<String> = r.get("reason");
        out.deciding += 1;
        if out.top.len() < limit {
            out.top.push(format!(
                "{vuln} in {purl} ({}; {}: {})",
                severity.as_deref().unwrap_or("unrated"),
                decided_by.as_deref().unwrap_or("threshold"),
                reason.as_deref().unwrap_or("")
            ));
        }
    }
    for d in &warned {
        license_reason(&mut out, d);
    }
    Ok(out)
}

/// A result to record (the scan worker's and the tests' one way in).
#[derive(Clone, Debug)]
pub struct NewResult<'a> {
    /// `sha256:…` scanned.
    pub image_digest: &'a str,
    /// The image as asked.
    pub image_ref: &'a str,
    /// Advisory change sequence matched against.
    pub advisory_snapshot: i64,
    /// The Scan that asked (namespace, name, uid), when one did.
    pub scan_namespace: Option<&'a str>,
    /// See `scan_namespace`.
    pub scan_name: Option<&'a str>,
    /// See `scan_namespace`.
    pub scan_uid: Option<&'a str>,
    /// `s3://bucket/key` of the CycloneDX SBOM.
    pub sbom_uri: &'a str,
    /// `sha256:` of the SBOM bytes.
    pub sbom_sha256: &'a str,
    /// Components in the SBOM.
    pub components: i32,
    /// Counted findings: critical, high, medium, low.
    pub counts: [i32; 4],
    /// `Pass`, `Warn` or `Fail`.
    pub verdict: &'a str,
    /// The policy as evaluated (JSON).
    pub policy: serde_json::Value,
    /// Its digest.
    pub policy_digest: Option<&'a str>,
    /// When the scan started.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// S3 key of the signed verdict, and the envelope bytes.
    pub attestation: Option<(&'a str, &'a [u8])>,
}

/// Point result `id` at its Usage SBOM (`s3://…` and `sha256:`) with the number of
/// components the entrypoint uses.
pub async fn set_usage(
    tx: &mut sqlx::PgConnection,
    id: i64,
    usage_sbom_uri: &str,
    usage_sbom_sha256: &str,
    used_components: i32,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE scan_results SET usage_sbom_uri = $2, usage_sbom_sha256 = $3, used_components = $4
         WHERE id = $1",
    )
    .bind(id)
    .bind(usage_sbom_uri)
    .bind(usage_sbom_sha256)
    .bind(used_components)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The signed verdict envelope of result `id` (`None`: recorded unsigned).
pub async fn attestation_of(pool: &sqlx::PgPool, id: i64) -> sqlx::Result<Option<Vec<u8>>> {
    let row: Option<(Option<Vec<u8>>,)> =
        sqlx::query_as("SELECT attestation FROM scan_results WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(row.and_then(|(envelope,)| envelope))
}

/// Which package URLs of `image_digest`'s stored inventory its entrypoint uses (`true`),
/// does not use (`false`); URLs not known either way are absent.
pub async fn usage_of(
    pool: &sqlx::PgPool,
    image_digest: &str,
) -> sqlx::Result<std::collections::BTreeMap<String, bool>> {
    let rows: Vec<(String, bool)> = sqlx::query_as(
        "SELECT purl, bool_or(used_by_entrypoint) FROM image_packages
         WHERE image_digest = $1 AND used_by_entrypoint IS NOT NULL GROUP BY purl",
    )
    .bind(image_digest)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// One finding of a [`NewResult`], with what decided it.
#[derive(Clone, Debug, Default)]
pub struct NewFinding {
    /// Canonical advisory it matched.
    pub merge_hash: String,
    /// Vulnerability id.
    pub vuln_id: String,
    /// Component (package URL with version).
    pub purl: String,
    /// Severity.
    pub severity: Option<String>,
    /// Fixed version.
    pub fixed_version: Option<String>,
    /// Layer that introduced the component.
    pub layer_digest: String,
    /// `fails`, `warns`, `counted` or `ignored`.
    pub outcome: String,
    /// `vex:<providers>`, `rule:<name>` or `threshold`.
    pub decided_by: String,
    /// For a person.
    pub reason: String,
}

/// One row of an image's stored inventory (per affects key).
#[derive(Clone, Debug, Default)]
pub struct NewPackage {
    /// Package URL without version (with or without the distro qualifier).
    pub affects_key: String,
    /// Package URL.
    pub purl: String,
    /// Version under the affects key's ordering.
    pub version: String,
    /// Layer that introduced it.
    pub layer_digest: String,
    /// Whether the image's entrypoint uses it (`None`: not known).
    pub used_by_entrypoint: Option<bool>,
}

/// Record a result with its findings and the image's inventory, in `tx` (the caller adds
/// its events and commits); returns the result id. From here to its end `tx` holds the lock
/// that makes result ids commit in order (migration 0021): keep uploads and other waits
/// before it.
pub async fn insert_result(
    tx: &mut sqlx::PgConnection,
    result: &NewResult<'_>,
    findings: &[NewFinding],
    packages: &[NewPackage],
) -> crate::Result<i64> {
    let (attestation_key, attestation) = result.attestation.unzip();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO scan_results (image_digest, image_ref, advisory_snapshot, scan_namespace, scan_name, scan_uid,
            sbom_uri, sbom_sha256, components, critical, high, medium, low, verdict, policy, started_at, policy_digest,
            attestation_key, attestation, analyzer)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20) RETURNING id",
    )
    .bind(result.image_digest)
    .bind(result.image_ref)
    .bind(result.advisory_snapshot)
    .bind(result.scan_namespace)
    .bind(result.scan_name)
    .bind(result.scan_uid)
    .bind(result.sbom_uri)
    .bind(result.sbom_sha256)
    .bind(result.components)
    .bind(result.counts[0])
    .bind(result.counts[1])
    .bind(result.counts[2])
    .bind(result.counts[3])
    .bind(result.verdict)
    .bind(&result.policy)
    .bind(result.started_at)
    .bind(result.policy_digest)
    .bind(attestation_key)
    .bind(attestation)
    .bind(ANALYZER)
    .fetch_one(&mut *tx)
    .await?;
    fn col<'a, T, U>(items: &'a [T], f: impl Fn(&'a T) -> U) -> Vec<U> {
        items.iter().map(f).collect()
    }
    sqlx::query(
        "INSERT INTO scan_findings (scan_id, merge_hash, vuln_id, purl, severity, fixed_version, layer_digest,
             outcome, decided_by, reason)
         SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
             $8::text[], $9::text[], $10::text[])",
    )
    .bind(id)
    .bind(col(findings, |f| f.merge_hash.as_str()))
    .bind(col(findings, |f| f.vuln_id.as_str()))
    .bind(col(findings, |f| f.purl.as_str()))
    .bind(col(findings, |f| f.severity.as_deref()))
    .bind(col(findings, |f| f.fixed_version.as_deref()))
    .bind(col(findings, |f| f.layer_digest.as_str()))
    .bind(col(findings, |f| f.outcome.as_str()))
    .bind(col(findings, |f| f.decided_by.as_str()))
    .bind(col(findings, |f| f.reason.as_str()))
    .execute(&mut *tx)
    .await?;
    // The stored inventory: what a later analysis-only run re-matches without the image.
    sqlx::query(
        "INSERT INTO image_packages (image_digest, affects_key, purl, version, layer_digest,
             used_by_entrypoint)
         SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::boolean[])
         ON CONFLICT (image_digest, purl, affects_key) DO UPDATE
             SET used_by_entrypoint = EXCLUDED.used_by_entrypoint
             WHERE EXCLUDED.used_by_entrypoint IS NOT NULL
               AND image_packages.used_by_entrypoint IS DISTINCT FROM EXCLUDED.used_by_entrypoint",
    )
    .bind(result.image_digest)
    .bind(col(packages, |p| p.affects_key.as_str()))
    .bind(col(packages, |p| p.purl.as_str()))
    .bind(col(packages, |p| p.version.as_str()))
    .bind(col(packages, |p| p.layer_digest.as_str()))
    .bind(col(packages, |p| p.used_by_entrypoint))
    .execute(&mut *tx)
    .await?;
    Ok(id)
}

/// A result's verdict with its signed envelope, as the webhook checks it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct VerdictRow {
    /// `Pass`, `Warn` or `Fail` (as the row says; the envelope decides what is trusted).
    pub verdict: String,
    /// When the result was recorded.
    pub finished_at: chrono::DateTime<chrono::Utc>,
    /// S3 key of the signed verdict.
    pub attestation_key: Option<String>,
    /// The DSSE envelope.
    pub attestation: Option<Vec<u8>>,
}

/// The newest verdict of `digest` (`LATEST_VERDICT_SQL`).
pub async fn latest_verdict(pool: &sqlx::PgPool, digest: &str) -> sqlx::Result<Option<VerdictRow>> {
    sqlx::query_as(LATEST_VERDICT_SQL)
        .bind(digest)
        .fetch_optional(pool)
        .await
}

/// The newest verdict of `digest` decided under `policy_digest`
/// (`LATEST_VERDICT_UNDER_POLICY_SQL`).
pub async fn latest_verdict_under_policy(
    pool: &sqlx::PgPool,
    digest: &str,
    policy_digest: &str,
) -> sqlx::Result<Option<VerdictRow>> {
    sqlx::query_as(LATEST_VERDICT_UNDER_POLICY_SQL)
        .bind(digest)
        .bind(policy_digest)
        .fetch_optional(pool)
        .await
}

/// A recorded result as the Scan controller reports it and a scan reuses it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredResult {
    /// Row id.
    pub id: i64,
    /// The digest scanned.
    pub image_digest: String,
    /// `s3://…` of the CycloneDX SBOM.
    pub sbom_uri: String,
    /// `sha256:` of the SBOM bytes.
    pub sbom_sha256: String,
    /// Components in the SBOM.
    pub components: i32,
    /// Counted findings by severity.
    pub critical: i32,
    /// See `critical`.
    pub high: i32,
    /// See `critical`.
    pub medium: i32,
    /// See `critical`.
    pub low: i32,
    /// `Pass`, `Warn` or `Fail`.
    pub verdict: String,
    /// S3 key of the signed verdict.
    pub attestation_key: Option<String>,
    /// The DSSE envelope.
    pub attestation: Option<Vec<u8>>,
    /// The Usage SBOM, when the entrypoint could be followed.
    pub usage_sbom_uri: Option<String>,
    /// `sha256:` of the Usage SBOM bytes.
    pub usage_sbom_sha256: Option<String>,
    /// Components the entrypoint uses.
    pub used_components: Option<i32>,
}

/// The latest result recorded for the Scan with uid `uid` (`BY_SCAN_SQL`).
pub async fn latest_of_scan(pool: &sqlx::PgPool, uid: &str) -> sqlx::Result<Option<StoredResult>> {
    sqlx::query_as(BY_SCAN_SQL)
        .bind(uid)
        .fetch_optional(pool)
        .await
}

/// What a Scan's latest result says, as its columns hold it (unverified: enough to tell
/// whether a Scan's status already shows it, not to report it).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct LatestSummary {
    /// The Scan's uid.
    pub scan_uid: String,
    /// The digest scanned.
    pub image_digest: String,
    /// `Pass`, `Warn` or `Fail`.
    pub verdict: String,
    /// Counted findings by severity.
    pub critical: i32,
    /// See `critical`.
    pub high: i32,
    /// See `critical`.
    pub medium: i32,
    /// See `critical`.
    pub low: i32,
    /// The policy digest the verdict was decided under.
    pub policy_digest: Option<String>,
}

/// The latest result of every Scan that has one, in one query: read once when the
/// operator starts, so the reconcile of a finished Scan whose status already shows its
/// latest result costs no query of its own.
pub async fn latest_summaries(
    pool: &sqlx::PgPool,
) -> sqlx::Result<std::collections::HashMap<String, LatestSummary>> {
    let rows: Vec<LatestSummary> = sqlx::query_as(
        "SELECT DISTINCT ON (scan_uid) scan_uid, image_digest, verdict, critical, high, medium,
                low, policy_digest
         FROM scan_results WHERE scan_uid IS NOT NULL ORDER BY scan_uid, id DESC",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.scan_uid.clone(), r)).collect())
}

/// The latest result of `digest` at advisory snapshot `snapshot` whose inventory this
/// build's analyzer made ([`REUSE_SQL`]): a scan of that digest now would find the same.
pub async fn reusable<'e>(
    db: impl sqlx::PgExecutor<'e>,
    digest: &str,
    snapshot: i64,
) -> sqlx::Result<Option<StoredResult>> {
    sqlx::query_as(REUSE_SQL)
        .bind(digest)
        .bind(snapshot)
        .bind(ANALYZER)
        .fetch_optional(db)
        .await
}

/// Set the component count of result `id` (a reused result counts its inventory's).
pub async fn set_components<'e>(
    db: impl sqlx::PgExecutor<'e>,
    id: i64,
    components: i32,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE scan_results SET components = $2 WHERE id = $1")
        .bind(id)
        .bind(components)
        .execute(db)
        .await?;
    Ok(())
}

/// The findings recorded with result `scan_id` (whether the entrypoint uses each is
/// not stored with them: `None`).
pub async fn findings_of<'e>(
    db: impl sqlx::PgExecutor<'e>,
    scan_id: i64,
) -> sqlx::Result<Vec<stellaops_scanner::Finding>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        merge_hash: String,
        vuln_id: String,
        purl: String,
        severity: Option<String>,
        fixed_version: Option<String>,
        layer_digest: Option<String>,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT merge_hash, vuln_id, purl, severity, fixed_version, layer_digest
         FROM scan_findings WHERE scan_id = $1",
    )
    .bind(scan_id)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| stellaops_scanner::Finding {
            merge_hash: r.merge_hash,
            vuln_id: r.vuln_id,
            purl: r.purl,
            severity: r.severity,
            fixed_version: r.fixed_version,
            layer: r.layer_digest.unwrap_or_default(),
            used_by_entrypoint: None,
        })
        .collect())
}

/// The newest result of `digest` other than `scan_id`, if any.
pub async fn previous_result(
    pool: &sqlx::PgPool,
    digest: &str,
    scan_id: i64,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "SELECT id FROM scan_results WHERE image_digest = $1 AND id <> $2
         ORDER BY finished_at DESC, id DESC LIMIT 1",
    )
    .bind(digest)
    .bind(scan_id)
    .fetch_optional(pool)
    .await
}

/// What a `rescan.delta` event names of a result.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ResultHead {
    /// The image as scanned.
    pub image_ref: String,
    /// `Pass`, `Warn` or `Fail`.
    pub verdict: String,
    /// The advisory snapshot it was matched at.
    pub advisory_snapshot: i64,
    /// The Scan it was recorded for (namespace, name, uid), when one asked.
    pub scan_namespace: Option<String>,
    /// See `scan_namespace`.
    pub scan_name: Option<String>,
    /// See `scan_namespace`.
    pub scan_uid: Option<String>,
}

/// The image, verdict, advisory snapshot and Scan of result `id`.
pub async fn result_head(pool: &sqlx::PgPool, id: i64) -> sqlx::Result<ResultHead> {
    sqlx::query_as(
        "SELECT image_ref, verdict, advisory_snapshot, scan_namespace, scan_name, scan_uid
         FROM scan_results WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
}

/// A result as a re-evaluation starts from: what it keeps (image, SBOM, who asked) and
/// what it decides again (under the stored policy or another).
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct LatestResult {
    /// Row id.
    pub id: i64,
    /// The digest.
    pub image_digest: String,
    /// The image as scanned.
    pub image_ref: String,
    /// `s3://…` of the SBOM.
    pub sbom_uri: String,
    /// `sha256:` of the SBOM bytes.
    pub sbom_sha256: String,
    /// Components in the SBOM.
    pub components: i32,
    /// The policy it was decided under (JSON).
    pub policy: serde_json::Value,
    /// `Pass`, `Warn` or `Fail`.
    pub verdict: String,
    /// The Scan that asked (namespace, name, uid), when one did.
    pub scan_namespace: Option<String>,
    /// See `scan_namespace`.
    pub scan_name: Option<String>,
    /// See `scan_namespace`.
    pub scan_uid: Option<String>,
}

/// The latest result of each of `digests`.
pub async fn latest_results(
    pool: &sqlx::PgPool,
    digests: &[String],
) -> sqlx::Result<Vec<LatestResult>> {
    sqlx::query_as(
        "SELECT DISTINCT ON (image_digest) id, image_digest, image_ref, sbom_uri, sbom_sha256,
                components, policy, verdict, scan_namespace, scan_name, scan_uid
         FROM scan_results WHERE image_digest = ANY($1)
         ORDER BY image_digest, finished_at DESC, id DESC",
    )
    .bind(digests)
    .fetch_all(pool)
    .await
}

/// Each Scan's latest result of `digests`, of those recorded under the ScanPolicy `name`
/// (`LATEST_UNDER_POLICY_SQL`).
pub async fn latest_results_under_policy(
    pool: &sqlx::PgPool,
    digests: &[String],
    name: &str,
) -> sqlx::Result<Vec<LatestResult>> {
    sqlx::query_as(LATEST_UNDER_POLICY_SQL)
        .bind(digests)
        .bind(name)
        .fetch_all(pool)
        .await
}

/// Of `digests`, the latest result under each policy they were decided under
/// (`LATEST_PER_POLICY_SQL`): what a VEX change or `evaluate --digest` re-evaluates.
pub async fn latest_results_per_policy(
    pool: &sqlx::PgPool,
    digests: &[String],
) -> sqlx::Result<Vec<LatestResult>> {
    sqlx::query_as(LATEST_PER_POLICY_SQL)
        .bind(digests)
        .fetch_all(pool)
        .await
}

/// One row of a stored inventory (per affects key).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredPackage {
    /// The image.
    pub image_digest: String,
    /// Package URL with version.
    pub purl: String,
    /// Key its advisories are stored under.
    pub affects_key: String,
    /// The version matched under that key.
    pub version: String,
    /// The layer that introduced it.
    pub layer_digest: String,
    /// Whether the entrypoint uses it (`None`: not known).
    pub used_by_entrypoint: Option<bool>,
}

/// The stored inventories of `digests`, row by row.
pub async fn packages_of(
    pool: &sqlx::PgPool,
    digests: &[String],
) -> sqlx::Result<Vec<StoredPackage>> {
    sqlx::query_as(
        "SELECT image_digest, purl, affects_key, version, layer_digest, used_by_entrypoint FROM image_packages
         WHERE image_digest = ANY($1)",
    )
    .bind(digests)
    .fetch_all(pool)
    .await
}

/// A recorded license decision, as a re-evaluation compares it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct LicenseOutcome {
    /// The result it belongs to.
    pub scan_id: i64,
    /// The component.
    pub purl: String,
    /// `fails` or `warns`.
    pub outcome: String,
}

/// The license decisions of results `ids`.
pub async fn license_outcomes(
    pool: &sqlx::PgPool,
    ids: &[i64],
) -> sqlx::Result<Vec<LicenseOutcome>> {
    sqlx::query_as(
        "SELECT scan_id, purl, outcome FROM scan_license_decisions WHERE scan_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// A recorded finding and what it came to.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct FindingOutcome {
    /// The result it belongs to.
    pub scan_id: i64,
    /// The advisory.
    pub merge_hash: String,
    /// The component.
    pub purl: String,
    /// `fails`, `warns`, `counted` or `ignored` (`None`: recorded before the decider).
    pub outcome: Option<String>,
}

/// The findings of results `ids` with their outcomes.
pub async fn finding_outcomes(
    pool: &sqlx::PgPool,
    ids: &[i64],
) -> sqlx::Result<Vec<FindingOutcome>> {
    sqlx::query_as(
        "SELECT scan_id, merge_hash, purl, outcome FROM scan_findings WHERE scan_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// A re-evaluated result: a new row that keeps the image, SBOM and asker of an earlier
/// one with a new decision.
#[derive(Clone, Debug)]
pub struct Reevaluated<'a> {
    /// The digest.
    pub image_digest: &'a str,
    /// The image as scanned.
    pub image_ref: &'a str,
    /// Who it is recorded for (namespace, name, uid).
    pub scan_namespace: Option<&'a str>,
    /// See `scan_namespace`.
    pub scan_name: Option<String>,
    /// See `scan_namespace`.
    pub scan_uid: Option<&'a str>,
    /// `s3://…` of the SBOM.
    pub sbom_uri: &'a str,
    /// `sha256:` of the SBOM bytes.
    pub sbom_sha256: &'a str,
    /// Components in the SBOM.
    pub components: i32,
    /// Counted findings: critical, high, medium, low.
    pub counts: [i32; 4],
    /// `Pass`, `Warn` or `Fail`.
    pub verdict: &'a str,
    /// The policy decided under (JSON).
    pub policy: serde_json::Value,
    /// Its digest.
    pub policy_digest: &'a str,
    /// S3 key of the signed verdict.
    pub attestation_key: Option<String>,
    /// The DSSE envelope.
    pub attestation: Option<Vec<u8>>,
}

/// Insert re-evaluated results matched at `snapshot`, in one statement; returns each new
/// row's (digest, Scan uid, id). Like [`insert_result`], `tx` holds the results'
/// commit-order lock from here to its end.
pub async fn insert_reevaluated(
    tx: &mut sqlx::PgConnection,
    snapshot: i64,
    results: &[Reevaluated<'_>],
) -> sqlx::Result<Vec<(String, Option<String>, i64)>> {
    fn col<'a, T, U>(items: &'a [T], f: impl Fn(&'a T) -> U) -> Vec<U> {
        items.iter().map(f).collect()
    }
    sqlx::query_as(
        "INSERT INTO scan_results (image_digest, image_ref, advisory_snapshot, scan_namespace, scan_name,
             sbom_uri, sbom_sha256, components, critical, high, medium, low, verdict, policy, started_at,
             policy_digest, attestation_key, attestation, scan_uid, analyzer)
         SELECT d, r, $3, ns, n, u, s, c, cr, hi, me, lo, v, p, now(), pd, ak, a, uid,
             -- The inventory judged is the one the digest's latest result judged.
             COALESCE((SELECT x.analyzer FROM scan_results x WHERE x.image_digest = d
                       ORDER BY x.id DESC LIMIT 1), 0)
         FROM unnest($1::text[], $2::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[],
                     $9::int[], $10::int[], $11::int[], $12::int[], $13::text[], $14::jsonb[],
                     $15::text[], $16::text[], $17::bytea[], $18::text[])
              AS t(d, r, ns, n, u, s, c, cr, hi, me, lo, v, p, pd, ak, a, uid)
         RETURNING image_digest, scan_uid, id",
    )
    .bind(col(results, |r| r.image_digest))
    .bind(col(results, |r| r.image_ref))
    .bind(snapshot)
    .bind(col(results, |r| r.scan_namespace))
    .bind(col(results, |r| r.scan_name.as_deref()))
    .bind(col(results, |r| r.sbom_uri))
    .bind(col(results, |r| r.sbom_sha256))
    .bind(col(results, |r| r.components))
    .bind(col(results, |r| r.counts[0]))
    .bind(col(results, |r| r.counts[1]))
    .bind(col(results, |r| r.counts[2]))
    .bind(col(results, |r| r.counts[3]))
    .bind(col(results, |r| r.verdict))
    .bind(col(results, |r| &r.policy))
    .bind(col(results, |r| r.policy_digest))
    .bind(col(results, |r| r.attestation_key.as_deref()))
    .bind(col(results, |r| r.attestation.as_deref()))
    .bind(col(results, |r| r.scan_uid))
    .fetch_all(&mut *tx)
    .await
}

/// A finding of a re-evaluated result, borrowed from the caller's.
#[derive(Clone, Debug)]
pub struct DecidedFinding<'a> {
    /// The result it belongs to.
    pub scan_id: i64,
    /// Canonical advisory it matched.
    pub merge_hash: &'a str,
    /// Vulnerability id.
    pub vuln_id: &'a str,
    /// Component (package URL with version).
    pub purl: &'a str,
    /// Severity.
    pub severity: Option<&'a str>,
    /// Fixed version.
    pub fixed_version: Option<&'a str>,
    /// Layer that introduced the component.
    pub layer_digest: &'a str,
    /// `fails`, `warns`, `counted` or `ignored`.
    pub outcome: String,
    /// `vex:<providers>`, `rule:<name>` or `threshold`.
    pub decided_by: &'a str,
    /// For a person.
    pub reason: &'a str,
}

/// Insert findings of several results, in one statement.
pub async fn insert_decided_findings(
    tx: &mut sqlx::PgConnection,
    findings: &[DecidedFinding<'_>],
) -> sqlx::Result<()> {
    fn col<'a, T, U>(items: &'a [T], f: impl Fn(&'a T) -> U) -> Vec<U> {
        items.iter().map(f).collect()
    }
    sqlx::query(
        "INSERT INTO scan_findings (scan_id, merge_hash, vuln_id, purl, severity, fixed_version, layer_digest,
             outcome, decided_by, reason)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
             $8::text[], $9::text[], $10::text[])",
    )
    .bind(col(findings, |f| f.scan_id))
    .bind(col(findings, |f| f.merge_hash))
    .bind(col(findings, |f| f.vuln_id))
    .bind(col(findings, |f| f.purl))
    .bind(col(findings, |f| f.severity))
    .bind(col(findings, |f| f.fixed_version))
    .bind(col(findings, |f| f.layer_digest))
    .bind(col(findings, |f| f.outcome.as_str()))
    .bind(col(findings, |f| f.decided_by))
    .bind(col(findings, |f| f.reason))
    .execute(&mut *tx)
    .await?;
    Ok(())
}
