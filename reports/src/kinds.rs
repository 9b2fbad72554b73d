//! The three kinds served, as clients see them, built from stored rows. Pure.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;
use stellaops_store::reports::{ComponentRow, FindingRow, ResultRow};

use crate::{API_VERSION, GROUP};

/// Label with the verdict (`Pass`, `Warn`, `Fail`).
pub const LABEL_VERDICT: &str = "verdict";
/// Label with the highest severity among counted findings (`critical` … `low`, or `none`).
pub const LABEL_SEVERITY: &str = "severity";
/// Label with the image repository, `/` and `:` written as `_` (label values allow
/// neither), cut to 63 characters.
pub const LABEL_REPOSITORY: &str = "repository";
/// Label with what a report is about: `scan` (a Scan's result) or `workload` (a running
/// workload container's image, from the latest result of its digest).
pub const LABEL_SOURCE: &str = "source";
/// Label with the workload's kind, lower-case (workload reports only).
pub const LABEL_WORKLOAD_KIND: &str = "workload-kind";
/// Label with the workload's name (workload reports only).
pub const LABEL_WORKLOAD_NAME: &str = "workload-name";
/// Label with the container's name (workload reports only).
pub const LABEL_CONTAINER: &str = "container";

/// Which kind a request is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `vulnerabilityreports`.
    VulnerabilityReport,
    /// `sbomreports`.
    SbomReport,
    /// `imageverdicts` (cluster-scoped).
    ImageVerdict,
}

impl Kind {
    /// Every kind, in discovery order.
    pub const ALL: [Kind; 3] = [
        Kind::VulnerabilityReport,
        Kind::SbomReport,
        Kind::ImageVerdict,
    ];

    /// The kind by its plural resource name.
    pub fn from_plural(plural: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.plural() == plural)
    }

    /// `Kind` as in `kind:`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::VulnerabilityReport => "VulnerabilityReport",
            Kind::SbomReport => "SbomReport",
            Kind::ImageVerdict => "ImageVerdict",
        }
    }

    /// Plural resource.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::VulnerabilityReport => "vulnerabilityreports",
            Kind::SbomReport => "sbomreports",
            Kind::ImageVerdict => "imageverdicts",
        }
    }

    /// Singular resource.
    pub fn singular(self) -> &'static str {
        match self {
            Kind::VulnerabilityReport => "vulnerabilityreport",
            Kind::SbomReport => "sbomreport",
            Kind::ImageVerdict => "imageverdict",
        }
    }

    /// Short names for kubectl.
    pub fn short_names(self) -> &'static [&'static str] {
        match self {
            Kind::VulnerabilityReport => &["vulns", "vuln"],
            Kind::SbomReport => &["sbom", "sboms"],
            Kind::ImageVerdict => &["iv"],
        }
    }

    /// Namespaced (one per Scan) or cluster-scoped (one per digest).
    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::ImageVerdict)
    }

    /// `vulnerabilityreports.reports.stella-ops.org`.
    pub fn group_resource(self) -> String {
        format!("{}.{GROUP}", self.plural())
    }
}

/// Object metadata, as much of `ObjectMeta` as these read-only objects have.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// Name: the Scan's name, or `sha256-<hex>` for an image verdict.
    pub name: String,
    /// The Scan's namespace (none for an image verdict).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The Scan's uid (none for an image verdict).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The id of the result shown; a LIST's resourceVersion is the newest result id.
    pub resource_version: String,
    /// When the result was recorded.
    pub creation_timestamp: String,
    /// `verdict`, `severity` and `repository`, for label selectors.
    pub labels: BTreeMap<String, String>,
}

/// Counted findings by severity (VEX and waivers taken out).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Critical.
    pub critical: i64,
    /// High.
    pub high: i64,
    /// Medium.
    pub medium: i64,
    /// Low.
    pub low: i64,
}

/// The Scan a result belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// A package as its package URL names it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Package {
    /// Package URL, with version.
    pub purl: String,
    /// Ecosystem (the package URL type: `deb`, `apk`, `npm`, `pypi`, …).
    #[serde(rename = "type")]
    pub type_: String,
    /// Name (with its namespace, e.g. `debian/openssl`, `@babel/core`).
    pub name: String,
}

/// CVSS of the advisory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cvss {
    /// `3.1`, `3.0`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The vector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<String>,
    /// Base score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

/// One matched vulnerability and what decided it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Vulnerability id (the CVE when there is one).
    pub id: String,
    /// The advisory's other ids (GHSA, distribution advisories…).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The affected package.
    pub package: Package,
    /// Version installed in the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installed_version: Option<String>,
    /// First version with the fix (none: no fix yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed_version: Option<String>,
    /// `critical`, `high`, `medium` or `low`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// CVSS of the advisory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cvss: Option<Cvss>,
    /// What it does to the verdict: `fails`, `warns`, `counted` or `ignored`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// What decided the outcome: `vex:<providers>` (VEX), `rule:<name>` (a ScanPolicy rule), `threshold` (failOn).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// Why, for a person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether the image's entrypoint uses the package (absent: not known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_by_entrypoint: Option<bool>,
    /// Layer that introduced the package.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_digest: Option<String>,
}

/// A running workload container a report is about.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    /// Namespace.
    pub namespace: String,
    /// `Deployment`, `StatefulSet`, `DaemonSet`, `Job`, `CronJob`, `ReplicaSet` or `Pod`.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Container.
    pub container: String,
}

/// A vulnerability report, never stored in etcd: one per Scan (same namespace and name,
/// from its latest result in PostgreSQL), and one per running workload container (named
/// `<kind>-<name>-<container>`, from the latest result of the digest it runs).
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VulnerabilityReport {
    /// `reports.stella-ops.org/v1alpha1`.
    pub api_version: String,
    /// `VulnerabilityReport`.
    pub kind: String,
    /// Standard object metadata.
    pub metadata: Meta,
    /// The image as the Scan asked for it.
    pub image: String,
    /// Digest scanned.
    pub image_digest: String,
    /// `Pass`, `Warn` or `Fail`.
    pub verdict: String,
    /// SHA-256 of the policy the verdict was decided by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_digest: Option<String>,
    /// Advisory change sequence the findings were matched at.
    pub advisory_snapshot: i64,
    /// When the result was recorded.
    pub scanned_at: String,
    /// The Scan (a Scan's report).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan: Option<ScanRef>,
    /// The running workload container (a workload's report).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadRef>,
    /// Counted findings by severity.
    pub summary: Summary,
    /// Every matched finding, what fails first.
    pub findings: Vec<Finding>,
    /// True when `findings` was cut at the server's bound.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub findings_truncated: bool,
}

/// Where an SBOM is stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SbomLocation {
    /// `s3://bucket/key` of the CycloneDX JSON.
    pub uri: String,
    /// `sha256:` of its bytes.
    pub sha256: String,
    /// `cyclonedx-json` (the SPDX rendering sits beside it); both are served by the
    /// `document` subresource (`?format=cyclonedx|spdx`).
    pub format: String,
}

/// One component of the inventory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    /// Package URL.
    pub purl: String,
    /// Version.
    pub version: String,
    /// Layer that introduced it.
    pub layer_digest: String,
}

/// An SBOM: one per Scan (same namespace and name) and one per running workload container
/// (named like its VulnerabilityReport).
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SbomReport {
    /// `reports.stella-ops.org/v1alpha1`.
    pub api_version: String,
    /// `SbomReport`.
    pub kind: String,
    /// Standard object metadata.
    pub metadata: Meta,
    /// The image as the Scan asked for it.
    pub image: String,
    /// Digest scanned.
    pub image_digest: String,
    /// The Scan (a Scan's SBOM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan: Option<ScanRef>,
    /// The running workload container (a workload's SBOM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadRef>,
    /// The SBOM document.
    pub sbom: SbomLocation,
    /// Components in the SBOM.
    pub component_count: i64,
    /// Components by ecosystem (package URL type).
    pub ecosystems: BTreeMap<String, i64>,
    /// The components (GET only; a LIST leaves them out), in package URL order, at most
    /// the server's bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<Component>>,
    /// True when `components` was cut at the bound.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub components_truncated: bool,
}

/// The latest verdict of an image digest, cluster-wide.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageVerdict {
    /// `reports.stella-ops.org/v1alpha1`.
    pub api_version: String,
    /// `ImageVerdict`.
    pub kind: String,
    /// Standard object metadata.
    pub metadata: Meta,
    /// The image as last scanned.
    pub image: String,
    /// The digest.
    pub image_digest: String,
    /// `Pass`, `Warn` or `Fail`.
    pub verdict: String,
    /// SHA-256 of the policy the verdict was decided by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_digest: Option<String>,
    /// When the verdict was recorded.
    pub scanned_at: String,
    /// Counted findings by severity.
    pub summary: Summary,
    /// The Scans (in their namespaces) with a result for this digest.
    pub scans: Vec<ScanRef>,
    /// Where it runs: the workload containers running this digest now (at most the
    /// server's bound; `runningTruncated` says when there are more).
    pub running_in: Vec<WorkloadRef>,
    /// True when `runningIn` was cut at the bound.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub running_truncated: bool,
}

/// `sha256:<hex>` → `sha256-<hex>` (a valid object name).
pub fn digest_to_name(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// The digest an image verdict's name stands for, when it is one.
pub fn name_to_digest(name: &str) -> Option<String> {
    let (algorithm, hex) = name.split_once('-')?;
    let valid = !algorithm.is_empty()
        && algorithm
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && hex.len() >= 32
        && hex.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then(|| format!("{algorithm}:{hex}"))
}

/// The repository of an image reference (no tag, no digest).
pub fn repository_of(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(colon) if !image[colon..].contains('/') => &image[..colon],
        _ => image,
    }
}

/// A label value for `value`: characters outside `[A-Za-z0-9._-]` become `_`, at most 63,
/// starting and ending alphanumeric.
pub fn label_value(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// The highest severity with a counted finding, or `none`.
pub fn highest_severity(counts: &[i32; 4]) -> &'static str {
    ["critical", "high", "medium", "low"]
        .into_iter()
        .zip(counts)
        .find(|(_, n)| **n > 0)
        .map_or("none", |(s, _)| s)
}

/// The labels of a result.
pub fn labels(row: &ResultRow) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (LABEL_VERDICT.to_string(), row.verdict.clone()),
        (
            LABEL_SEVERITY.to_string(),
            highest_severity(&row.counts).to_string(),
        ),
        (
            LABEL_REPOSITORY.to_string(),
            label_value(repository_of(&row.image_ref)),
        ),
    ]);
    let source = match &row.workload {
        Some(w) => {
            labels.insert(
                LABEL_WORKLOAD_KIND.into(),
                label_value(&w.kind.to_lowercase()),
            );
            labels.insert(LABEL_WORKLOAD_NAME.into(), label_value(&w.name));
            labels.insert(LABEL_CONTAINER.into(), label_value(&w.container));
            "workload"
        }
        None => "scan",
    };
    labels.insert(LABEL_SOURCE.into(), source.into());
    labels
}

/// RFC 3339 with seconds, as Kubernetes writes times.
pub fn rfc3339(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The metadata of `row` shown as `kind`.
pub fn meta(kind: Kind, row: &ResultRow) -> Meta {
    let (name, namespace, uid) = match kind {
        Kind::ImageVerdict => (digest_to_name(&row.image_digest), None, None),
        _ => (
            row.scan_name.clone().unwrap_or_default(),
            row.scan_namespace.clone(),
            row.scan_uid.clone(),
        ),
    };
    Meta {
        name,
        namespace,
        uid,
        resource_version: row.id.to_string(),
        creation_timestamp: rfc3339(&row.finished_at),
        labels: labels(row),
    }
}

fn summary(row: &ResultRow) -> Summary {
    Summary {
        critical: row.counts[0].into(),
        high: row.counts[1].into(),
        medium: row.counts[2].into(),
        low: row.counts[3].into(),
    }
}

/// The Scan a Scan's row belongs to (none for a workload's row).
fn scan_ref(row: &ResultRow) -> Option<ScanRef> {
    row.workload.is_none().then(|| ScanRef {
        namespace: row.scan_namespace.clone().unwrap_or_default(),
        name: row.scan_name.clone().unwrap_or_default(),
    })
}

/// The workload container a workload's row reports on.
fn workload_ref(row: &ResultRow) -> Option<WorkloadRef> {
    row.workload.as_ref().map(|w| WorkloadRef {
        namespace: row.scan_namespace.clone().unwrap_or_default(),
        kind: w.kind.clone(),
        name: w.name.clone(),
        container: w.container.clone(),
    })
}

/// Type, name and version of a package URL (`pkg:type/namespace/name@version?q#s`), the
/// name and version percent-decoded.
pub fn parse_purl(purl: &str) -> (String, String, Option<String>) {
    let rest = purl.strip_prefix("pkg:").unwrap_or(purl);
    let rest = rest.split('#').next().unwrap_or(rest);
    let rest = rest.split('?').next().unwrap_or(rest);
    let (path, version) = match rest.rfind('@') {
        // `@` in the first segment after the type is an npm scope, not a version.
        Some(at) if rest[at..].find('/').is_none() && rest[..at].contains('/') => {
            (&rest[..at], Some(percent_decode(&rest[at + 1..])))
        }
        _ => (rest, None),
    };
    let (type_, name) = path.split_once('/').unwrap_or((path, ""));
    (
        type_.to_ascii_lowercase(),
        percent_decode(name.trim_matches('/')),
        version,
    )
}

/// `%XX` escapes decoded (others kept as they are); not UTF-8 afterwards: lossy.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match decoded {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A stored finding as shown.
pub fn finding(row: &FindingRow) -> Finding {
    let (type_, name, version) = parse_purl(&row.purl);
    let cvss = row.cvss.as_ref().map(|c| Cvss {
        version: c.get("version").and_then(|v| v.as_str()).map(Into::into),
        vector: c.get("vector").and_then(|v| v.as_str()).map(Into::into),
        score: c.get("score").and_then(|v| v.as_f64()),
    });
    Finding {
        id: row.vuln_id.clone(),
        aliases: row
            .aliases
            .iter()
            .filter(|a| **a != row.vuln_id)
            .cloned()
            .collect(),
        package: Package {
            purl: row.purl.clone(),
            type_,
            name,
        },
        installed_version: version,
        fixed_version: row.fixed_version.clone().filter(|v| !v.is_empty()),
        severity: row.severity.clone(),
        cvss,
        outcome: row.outcome.clone().filter(|v| !v.is_empty()),
        decided_by: row.decided_by.clone().filter(|v| !v.is_empty()),
        reason: row.reason.clone().filter(|v| !v.is_empty()),
        used_by_entrypoint: row.used_by_entrypoint,
        layer_digest: row.layer_digest.clone().filter(|v| !v.is_empty()),
    }
}

/// The vulnerability report of `row` with `findings` (at most `bound` were read: one more
/// means it was cut).
pub fn vulnerability_report(
    row: &ResultRow,
    findings: &[FindingRow],
    truncated: bool,
) -> VulnerabilityReport {
    VulnerabilityReport {
        api_version: API_VERSION.into(),
        kind: Kind::VulnerabilityReport.name().into(),
        metadata: meta(Kind::VulnerabilityReport, row),
        image: row.image_ref.clone(),
        image_digest: row.image_digest.clone(),
        verdict: row.verdict.clone(),
        policy_digest: row.policy_digest.clone().filter(|p| !p.is_empty()),
        advisory_snapshot: row.advisory_snapshot,
        scanned_at: rfc3339(&row.finished_at),
        scan: scan_ref(row),
        workload: workload_ref(row),
        summary: summary(row),
        findings: findings.iter().map(finding).collect(),
        findings_truncated: truncated,
    }
}

/// The SBOM report of `row`; `components` only for a GET.
pub fn sbom_report(
    row: &ResultRow,
    ecosystems: BTreeMap<String, i64>,
    components: Option<(&[ComponentRow], bool)>,
) -> SbomReport {
    SbomReport {
        api_version: API_VERSION.into(),
        kind: Kind::SbomReport.name().into(),
        metadata: meta(Kind::SbomReport, row),
        image: row.image_ref.clone(),
        image_digest: row.image_digest.clone(),
        scan: scan_ref(row),
        workload: workload_ref(row),
        sbom: SbomLocation {
            uri: row.sbom_uri.clone(),
            sha256: row.sbom_sha256.clone(),
            format: "cyclonedx-json".into(),
        },
        component_count: row.components.into(),
        ecosystems,
        components: components.map(|(c, _)| {
            c.iter()
                .map(|c| Component {
                    purl: c.purl.clone(),
                    version: c.version.clone(),
                    layer_digest: c.layer_digest.clone(),
                })
                .collect()
        }),
        components_truncated: components.is_some_and(|(_, t)| t),
    }
}

/// The image verdict of `row` with the Scans that have a result of its digest and the
/// workload containers running it (`running.1`: more were left out).
pub fn image_verdict(
    row: &ResultRow,
    scans: Vec<ScanRef>,
    running: (Vec<WorkloadRef>, bool),
) -> ImageVerdict {
    ImageVerdict {
        api_version: API_VERSION.into(),
        kind: Kind::ImageVerdict.name().into(),
        metadata: meta(Kind::ImageVerdict, row),
        image: row.image_ref.clone(),
        image_digest: row.image_digest.clone(),
        verdict: row.verdict.clone(),
        policy_digest: row.policy_digest.clone().filter(|p| !p.is_empty()),
        scanned_at: rfc3339(&row.finished_at),
        summary: summary(row),
        scans,
        running_in: running.0,
        running_truncated: running.1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_urls_split_into_type_name_and_version() {
        assert_eq!(
            parse_purl("pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=amd64&distro=debian-12"),
            (
                "deb".into(),
                "debian/openssl".into(),
                Some("3.0.11-1~deb12u2".into())
            )
        );
        assert_eq!(
            parse_purl("pkg:npm/%40babel/core@7.22.0"),
            ("npm".into(), "@babel/core".into(), Some("7.22.0".into()))
        );
        assert_eq!(
            parse_purl("pkg:golang/golang.org/x/net"),
            ("golang".into(), "golang.org/x/net".into(), None)
        );
        assert_eq!(parse_purl("garbage"), ("garbage".into(), "".into(), None));
    }

    #[test]
    fn repositories_and_label_values() {
        assert_eq!(
            repository_of("registry:5000/acme/api:1.2"),
            "registry:5000/acme/api"
        );
        assert_eq!(repository_of("nginx@sha256:abcd"), "nginx");
        assert_eq!(
            repository_of("registry:5000/acme/api"),
            "registry:5000/acme/api"
        );
        assert_eq!(
            label_value("registry:5000/acme/api"),
            "registry_5000_acme_api"
        );
        assert_eq!(label_value(&"a/".repeat(40)).len(), 63);
        assert_eq!(label_value("/x/"), "x");
    }

    #[test]
    fn digest_names_round_trip_and_reject_others() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(name_to_digest(&digest_to_name(&digest)), Some(digest));
        assert_eq!(name_to_digest("web-app"), None);
        assert_eq!(name_to_digest("sha256-xyz"), None);
    }

    #[test]
    fn highest_severity_is_the_first_counted() {
        assert_eq!(highest_severity(&[0, 2, 1, 0]), "high");
        assert_eq!(highest_severity(&[0, 0, 0, 0]), "none");
    }
}
