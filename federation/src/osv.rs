//! OSV documents (https://ossf.github.io/osv-schema/) to canonical advisories and edges.

use chrono::{DateTime, SubsecRound, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use stellaops_store::advisories::{CanonicalAdvisory, SourceEdge, sha256_hex};

use crate::cvss;

/// A document that is not usable OSV.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct OsvError {
    /// File or document name.
    pub name: String,
    /// What is wrong.
    pub reason: String,
}

#[derive(Deserialize)]
struct Document {
    id: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    published: Option<DateTime<Utc>>,
    #[serde(default)]
    modified: Option<DateTime<Utc>>,
    #[serde(default)]
    withdrawn: Option<DateTime<Utc>>,
    #[serde(default)]
    severity: Vec<Severity>,
    #[serde(default)]
    affected: Vec<Affected>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Deserialize)]
struct Severity {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Deserialize)]
struct Affected {
    package: Option<Package>,
    #[serde(default)]
    ranges: Vec<Value>,
    #[serde(default)]
    versions: Vec<String>,
    #[serde(default)]
    severity: Vec<Severity>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Deserialize)]
struct Package {
    ecosystem: String,
    name: String,
    #[serde(default)]
    purl: Option<String>,
}

/// What one OSV document yields.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The document's id.
    pub id: String,
    /// Source name for its edges.
    pub source: String,
    /// One canonical per affected package.
    pub canonicals: Vec<CanonicalAdvisory>,
    /// One edge per canonical.
    pub edges: Vec<SourceEdge>,
    /// True when upstream withdrew the document.
    pub withdrawn: bool,
}

/// The source an OSV id comes from, by its prefix.
pub fn source_of(id: &str) -> String {
    let prefix = id.split('-').next().unwrap_or(id).to_ascii_uppercase();
    match prefix.as_str() {
        "GHSA" => "ghsa",
        "CVE" => "nvd",
        "PYSEC" => "pypa",
        "RUSTSEC" => "rustsec",
        "GO" => "go",
        "DSA" | "DLA" | "DTSA" | "DEBIAN" => "debian",
        "ALPINE" => "alpine",
        "USN" | "UBUNTU" => "ubuntu",
        _ => return prefix.to_ascii_lowercase(),
    }
    .to_string()
}

/// Precedence of a source when several documents describe the same canonical: the
/// canonical's content comes from the best-ranked one (lower is better), so ingest order
/// does not matter. NVD records rarely carry package ranges, so they rank last.
pub fn source_rank(source: &str) -> u8 {
    if source == "nvd" { 9 } else { 1 }
}

/// The package URL (without version) OSV's ecosystem and name map to.
///
/// For the distribution ecosystems (Debian, Ubuntu, Alpine, Wolfi, Chainguard) the key is
/// made from the ecosystem and name even when OSV gives a purl: their records name the
/// *source* package with a purl like `pkg:deb/debian/glibc?arch=source` that carries no
/// release, while the ecosystem (`Debian:12`) does; the scanner looks such advisories up
/// by the source package of each binary package.
pub fn affects_key(ecosystem: &str, name: &str, purl: Option<&str>) -> String {
    let distro = matches!(
        ecosystem.split(':').next(),
        Some("Debian" | "Ubuntu" | "Alpine" | "Wolfi" | "Chainguard")
    );
    if let Some(purl) = purl.filter(|p| p.starts_with("pkg:") && !distro) {
        // Drop any version, qualifiers stay (they carry the distro).
        let (base, qualifiers) = purl
            .split_once('?')
            .map_or((purl, None), |(b, q)| (b, Some(q)));
        let base = base.split_once('@').map_or(base, |(b, _)| b);
        return match qualifiers {
            Some(q) => format!("{base}?{q}"),
            None => base.to_string(),
        };
    }
    let (eco, release) = ecosystem
        .split_once(':')
        .map_or((ecosystem, None), |(e, r)| (e, Some(r)));
    match eco {
        "npm" => format!("pkg:npm/{}", name.replace('@', "%40")),
        "PyPI" => format!(
            "pkg:pypi/{}",
            name.to_ascii_lowercase().replace(['_', '.'], "-")
        ),
        "Go" => format!("pkg:golang/{name}"),
        "Maven" => format!("pkg:maven/{}", name.replacen(':', "/", 1)),
        "crates.io" => format!("pkg:cargo/{name}"),
        "NuGet" => format!("pkg:nuget/{name}"),
        "RubyGems" => format!("pkg:gem/{name}"),
        // Rolling releases of their own apk packages, named by origin.
        "Wolfi" => format!("pkg:apk/wolfi/{name}"),
        "Chainguard" => format!("pkg:apk/chainguard/{name}"),
        "Packagist" => format!("pkg:composer/{name}"),
        "Debian" => match release {
            Some(r) => format!("pkg:deb/debian/{name}?distro=debian-{r}"),
            None => format!("pkg:deb/debian/{name}"),
        },
        "Ubuntu" => format!("pkg:deb/ubuntu/{name}"),
        "Red Hat" => format!("pkg:rpm/redhat/{name}"),
        "Rocky Linux" => format!("pkg:rpm/rocky-linux/{name}"),
        "AlmaLinux" => format!("pkg:rpm/almalinux/{name}"),
        "openSUSE" => format!("pkg:rpm/opensuse/{name}"),
        "SUSE" => format!("pkg:rpm/suse/{name}"),
        "Alpine" => match release {
            Some(r) => format!(
                "pkg:apk/alpine/{name}?distro=alpine-{}",
                r.trim_start_matches('v')
            ),
            None => format!("pkg:apk/alpine/{name}"),
        },
        other => format!(
            "pkg:generic/{}/{name}",
            other.to_ascii_lowercase().replace(' ', "-")
        ),
    }
}

fn micros(t: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    // PostgreSQL keeps microseconds; truncate so stored and computed hashes agree.
    t.map(|t| t.trunc_subsecs(6))
}

fn severity_of(
    severities: &[Severity],
    database_specific: Option<&Value>,
) -> (Option<String>, Option<Value>) {
    let cvss = severities.iter().find_map(|s| {
        let version = match s.kind.as_str() {
            "CVSS_V3" => s
                .score
                .split('/')
                .next()?
                .strip_prefix("CVSS:")?
                .to_string(),
            _ => return None,
        };
        let score = cvss::base_score_v3(&s.score)?;
        Some((
            json!({"version": version, "vector": s.score, "score": score}),
            score,
        ))
    });
    let from_database = database_specific
        .and_then(|d| d.get("severity"))
        .and_then(Value::as_str)
        .and_then(|s| match s.to_ascii_uppercase().as_str() {
            "CRITICAL" => Some("critical"),
            "HIGH" | "IMPORTANT" => Some("high"),
            "MODERATE" | "MEDIUM" => Some("medium"),
            "LOW" => Some("low"),
            _ => None,
        });
    let severity =
        from_database.or_else(|| cvss.as_ref().and_then(|(_, score)| cvss::rating(*score)));
    (severity.map(str::to_string), cvss.map(|(v, _)| v))
}

/// Parse one OSV document. `source` overrides the source derived from the id.
pub fn parse(
    name: &str,
    bytes: &[u8],
    source: Option<&str>,
    fetched_at: DateTime<Utc>,
) -> Result<Parsed, OsvError> {
    let err = |reason: String| OsvError {
        name: name.to_string(),
        reason,
    };
    let doc: Document =
        serde_json::from_slice(bytes).map_err(|e| err(format!("not an OSV document: {e}")))?;
    if doc.id.trim().is_empty() {
        return Err(err("empty id".into()));
    }
    let source = source
        .map(str::to_string)
        .unwrap_or_else(|| source_of(&doc.id));
    let cve = if doc.id.starts_with("CVE-") {
        Some(doc.id.clone())
    } else {
        doc.aliases
            .iter()
            .filter(|a| a.starts_with("CVE-"))
            .min()
            .cloned()
    };
    let vuln_id = cve.clone().unwrap_or_else(|| doc.id.clone());
    let mut aliases: Vec<String> = doc
        .aliases
        .iter()
        .chain(std::iter::once(&doc.id))
        .filter(|a| **a != vuln_id)
        .cloned()
        .collect();
    aliases.sort();
    aliases.dedup();
    let summary = doc
        .summary
        .clone()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| {
            doc.details
                .as_deref()
                .and_then(|d| d.lines().find(|l| !l.trim().is_empty()))
                .map(str::to_string)
        });
    let document_hash = sha256_hex(bytes);
    let mut parsed = Parsed {
        id: doc.id.clone(),
        source: source.clone(),
        withdrawn: doc.withdrawn.is_some(),
        ..Default::default()
    };
    for affected in &doc.affected {
        let Some(package) = &affected.package else {
            continue;
        };
        let affects_key = affects_key(&package.ecosystem, &package.name, package.purl.as_deref());
        let severities = if affected.severity.is_empty() {
            &doc.severity
        } else {
            &affected.severity
        };
        let database = affected
            .database_specific
            .as_ref()
            .filter(|d| d.get("severity").is_some())
            .or(doc.database_specific.as_ref());
        let (severity, cvss) = severity_of(severities, database);
        let ranges: Vec<Value> = affected
            .ranges
            .iter()
            .map(|r| json!({"type": r.get("type").cloned().unwrap_or(Value::Null), "events": r.get("events").cloned().unwrap_or(json!([]))}))
            .collect();
        let merge_hash = CanonicalAdvisory::merge_hash_of(&vuln_id, &affects_key);
        if parsed.canonicals.iter().any(|c| c.merge_hash == merge_hash) {
            continue; // the same package listed twice: keep the first, as OSV consumers do
        }
        parsed.edges.push(SourceEdge {
            merge_hash: merge_hash.clone(),
            source: source.clone(),
            source_advisory_id: doc.id.clone(),
            document_hash: document_hash.clone(),
            fetched_at,
        });
        parsed.canonicals.push(CanonicalAdvisory {
            merge_hash,
            vuln_id: vuln_id.clone(),
            cve: cve.clone(),
            aliases: aliases.clone(),
            affects_key,
            ecosystem: package.ecosystem.clone(),
            ranges: Value::Array(ranges),
            versions: affected.versions.clone(),
            severity,
            cvss,
            summary: summary.clone(),
            published: micros(doc.published),
            modified: micros(doc.modified),
            withdrawn: micros(doc.withdrawn),
        });
    }
    if parsed.canonicals.is_empty() && !parsed.withdrawn {
        return Err(err("no affected package".into()));
    }
    Ok(parsed)
}
