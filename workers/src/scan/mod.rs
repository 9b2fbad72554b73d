//! `stellaops-worker scan IMAGE`: registry → layers (cached per layer digest in S3) →
//! inventory with package URLs → CycloneDX SBOM in S3 → findings against the canonical
//! advisories → verdict, all recorded in PostgreSQL with a `report.ready` event.

pub mod analyze;
pub mod attach;
pub mod diff;
pub mod elf;
pub mod judge;
pub mod license;
pub mod purl;
pub mod rpmdb;
pub mod shell;
pub mod usage;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::{PgPool, Row};
use stellaops_scanner::versions::{Scheme, affected};

use crate::registry::{ImageReference, Manifest, RegistryClient, RegistryError};
use analyze::{FoundPackage, Fragment, OsRelease};

/// A key advisories are looked up by, and the version to compare with their ranges.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MatchKey {
    /// Package URL without version, as the advisory store keys advisories
    /// ([`stellaops_federation::osv::affects_key`]).
    pub key: String,
    /// The version compared under this key: the binary package's, or its source
    /// package's for keys that name the source.
    pub version: String,
}

impl MatchKey {
    /// `key` matched at `version`.
    pub fn new(key: String, version: &str) -> Self {
        MatchKey {
            key,
            version: version.to_string(),
        }
    }
}

/// One component of an image, with where it came from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Component {
    /// Package URL with version.
    pub purl: String,
    /// Keys advisories are stored under, each with the version to match (package URL
    /// without version; with and without the distro qualifier; the source package's for
    /// distributions whose advisories name source packages).
    pub affects_keys: Vec<MatchKey>,
    /// Package URL type.
    pub kind: String,
    /// Name (with namespace for Maven: `group/artifact`).
    pub name: String,
    /// Version.
    pub version: String,
    /// The source package it was built from, when it differs from the package itself
    /// (name empty otherwise).
    pub source: String,
    /// The source package's version, when `source` is set or the version differs.
    pub source_version: String,
    /// Digest of the layer that introduced it.
    pub layer: String,
    /// File it was found in.
    pub path: String,
    /// Whether the image's entrypoint uses it (the Usage view); `None`: not known.
    #[serde(default)]
    pub used_by_entrypoint: Option<bool>,
    /// The license it declares (`None`: not known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<stellaops_policy::license::Declared>,
}

impl Component {
    /// The source package (name, version) when it is not the component itself.
    pub fn source_package(&self) -> Option<(&str, &str)> {
        if self.source.is_empty() && self.source_version.is_empty() {
            return None;
        }
        let name = if self.source.is_empty() {
            self.name.as_str()
        } else {
            self.source.as_str()
        };
        let version = if self.source_version.is_empty() {
            self.version.as_str()
        } else {
            self.source_version.as_str()
        };
        Some((name, version))
    }
}

/// The major release (`12` of `12.5`) of the image's OS, if known.
fn major_version(os: Option<&OsRelease>) -> Option<String> {
    os.map(|o| {
        o.version_id
            .split('.')
            .next()
            .unwrap_or_default()
            .to_string()
    })
    .filter(|m| !m.is_empty())
}

/// The `major.minor` release of an Alpine image (`3.19` of `3.19.1`), if known.
fn alpine_release(os: Option<&OsRelease>) -> Option<String> {
    let o = os?;
    let mut parts = o.version_id.split('.');
    let (major, minor) = (parts.next()?, parts.next()?);
    (!major.is_empty() && !minor.is_empty()).then(|| format!("{major}.{minor}"))
}

/// The RPM vendor (purl namespace) of an `os-release` `ID`.
fn rpm_vendor(id: &str) -> &str {
    match id {
        "rhel" | "" => "redhat",
        "rocky" => "rocky-linux",
        "opensuse-leap" | "opensuse-tumbleweed" | "opensuse" => "opensuse",
        "sles" => "suse",
        "ol" => "oracle",
        "amzn" => "amazon",
        other => other,
    }
}

/// Keys `pkg:<base>` with and without `?<qualifier>` (the qualified one first).
fn keys(base: String, qualifier: Option<String>, version: &str) -> Vec<MatchKey> {
    let mut out = Vec::new();
    if let Some(q) = qualifier {
        out.push(MatchKey::new(format!("{base}?{q}"), version));
    }
    out.push(MatchKey::new(base, version));
    out
}

/// The package URL of a found package (canonical form of the purl specification) and the
/// keys to look its advisories up by.
///
/// Debian, Ubuntu and Alpine advisories name *source* packages (OSV's `Debian:12`
/// `glibc`, not `libc6`): their packages are looked up by their source package and its
/// version only. RPM advisories come both ways (Red Hat's name binary RPMs, others the
/// source RPM): RPMs are looked up by both. The purl names the binary package; a Debian
/// package's source rides in the `upstream` qualifier (`upstream=glibc`, or
/// `upstream=bash%405.2.15-2` when the source version differs), as Syft and Trivy write it.
pub fn purl_of(p: &FoundPackage, os: Option<&OsRelease>) -> (String, Vec<MatchKey>) {
    use purl::PackageUrl;
    let v = p.version.as_str();
    let (src, src_version) = p.source_package();
    match p.kind.as_str() {
        "deb" => {
            let ubuntu = os.is_some_and(|o| o.id == "ubuntu");
            let vendor = if ubuntu { "ubuntu" } else { "debian" };
            let distro = (!ubuntu)
                .then(|| major_version(os).map(|m| format!("debian-{m}")))
                .flatten();
            let upstream = if p.source_version.is_empty() {
                p.source.clone()
            } else {
                format!("{src}@{src_version}")
            };
            let purl = PackageUrl::new("deb", &p.name.to_ascii_lowercase())
                .namespace(vendor)
                .version(v)
                .qualifier("distro", distro.as_deref().unwrap_or_default())
                .qualifier("upstream", &upstream);
            let base = format!("pkg:deb/{vendor}/{src}");
            (
                purl.to_string(),
                keys(base, distro.map(|d| format!("distro={d}")), src_version),
            )
        }
        "apk" => {
            let release = alpine_release(os);
            let distro = release.as_ref().map(|r| format!("alpine-{r}"));
            let purl = PackageUrl::new("apk", &p.name.to_ascii_lowercase())
                .namespace("alpine")
                .version(v)
                .qualifier("distro", distro.as_deref().unwrap_or_default());
            let base = format!("pkg:apk/alpine/{src}");
            (
                purl.to_string(),
                keys(base, distro.map(|d| format!("distro={d}")), src_version),
            )
        }
        "rpm" => {
            let id = os.map(|o| o.id.as_str()).unwrap_or("");
            let vendor = rpm_vendor(id);
            let distro = major_version(os)
                .filter(|_| !id.is_empty())
                .map(|m| format!("{id}-{m}"));
            // The purl carries the epoch as a qualifier, the version is version-release.
            let (epoch, evr) = match v.split_once(':') {
                Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
                    (e, rest)
                }
                _ => ("", v),
            };
            let purl = PackageUrl::new("rpm", &p.name)
                .namespace(vendor)
                .version(evr)
                .qualifier("arch", &p.namespace)
                .qualifier("distro", distro.as_deref().unwrap_or_default())
                .qualifier("epoch", epoch);
            let qualifier = distro.map(|d| format!("distro={d}"));
            let mut all = keys(format!("pkg:rpm/{vendor}/{}", p.name), qualifier.clone(), v);
            for key in keys(format!("pkg:rpm/{vendor}/{src}"), qualifier, src_version) {
                if !all.iter().any(|k| k.key == key.key) {
                    all.push(key);
                }
            }
            (purl.to_string(), all)
        }
        "npm" => {
            let (scope, name) = match p.name.split_once('/') {
                Some((scope, name)) if scope.starts_with('@') => (scope, name),
                _ => ("", p.name.as_str()),
            };
            let purl = PackageUrl::new("npm", name).namespace(scope).version(v);
            (
                purl.to_string(),
                vec![MatchKey::new(
                    format!("pkg:npm/{}", p.name.replace('@', "%40")),
                    v,
                )],
            )
        }
        "pypi" => {
            // The purl spec: lower case, `_` as `-`; advisories are keyed by the PEP 503
            // form (`.` as `-` too), as the advisory store makes it.
            let name = p.name.to_ascii_lowercase().replace('_', "-");
            let purl = PackageUrl::new("pypi", &name).version(v);
            (
                purl.to_string(),
                vec![MatchKey::new(
                    format!("pkg:pypi/{}", name.replace('.', "-")),
                    v,
                )],
            )
        }
        "maven" => {
            let purl = PackageUrl::new("maven", &p.name)
                .namespace(&p.namespace)
                .version(v);
            (
                purl.to_string(),
                vec![MatchKey::new(
                    format!("pkg:maven/{}/{}", p.namespace, p.name),
                    v,
                )],
            )
        }
        "golang" => {
            let (namespace, name) = p.name.rsplit_once('/').unwrap_or(("", p.name.as_str()));
            let purl = PackageUrl::new("golang", name)
                .namespace(namespace)
                .version(v);
            (
                purl.to_string(),
                vec![MatchKey::new(format!("pkg:golang/{}", p.name), v)],
            )
        }
        other => {
            let purl = PackageUrl::new(other, &p.name).version(v);
            (
                purl.to_string(),
                vec![MatchKey::new(format!("pkg:{other}/{}", p.name), v)],
            )
        }
    }
}

/// Stack the layers' fragments as the container's filesystem would: whiteouts and opaque
/// directories hide earlier layers' files, a later file replaces an earlier one. Each
/// surviving package keeps the earliest layer it appeared in at that path.
pub fn merge(fragments: &[(String, Fragment)]) -> (Vec<Component>, Option<OsRelease>) {
    let mut files: BTreeMap<String, Vec<FoundPackage>> = BTreeMap::new();
    let mut copyrights: BTreeMap<String, String> = BTreeMap::new();
    let mut os = None;
    let hidden = |path: &str, dir: &str| {
        dir.is_empty() || path == dir || path.starts_with(&format!("{dir}/"))
    };
    for (_, fragment) in fragments {
        for dir in &fragment.opaque {
            files.retain(|p, _| !(p.starts_with(&format!("{dir}/")) || (dir.is_empty())));
            copyrights.retain(|p, _| !(p.starts_with(&format!("{dir}/")) || (dir.is_empty())));
        }
        for gone in &fragment.whiteouts {
            files.retain(|p, _| !hidden(p, gone));
            copyrights.retain(|p, _| !hidden(p, gone));
        }
        for (path, packages) in &fragment.files {
            files.insert(path.clone(), packages.clone());
        }
        for (path, license) in &fragment.copyrights {
            copyrights.insert(path.clone(), license.clone());
        }
        if fragment.os.is_some() {
            os = fragment.os.clone();
        }
    }
    let mut components = BTreeSet::new();
    for (path, packages) in &files {
        for p in packages {
            let layer = fragments
                .iter()
                .find(|(_, f)| f.files.get(path).is_some_and(|ps| ps.contains(p)))
                .map(|(d, _)| d.clone())
                .unwrap_or_default();
            let (purl, affects_keys) = purl_of(p, os.as_ref());
            components.insert(Component {
                purl,
                affects_keys,
                kind: p.kind.clone(),
                name: if p.namespace.is_empty() {
                    p.name.clone()
                } else {
                    format!("{}/{}", p.namespace, p.name)
                },
                version: p.version.clone(),
                source: p.source.clone(),
                source_version: if p.has_distinct_source() {
                    p.source_package().1.to_string()
                } else {
                    String::new()
                },
                layer,
                path: path.clone(),
                used_by_entrypoint: None,
                license: declared_license(p, &copyrights),
            });
        }
    }
    // One entry per package URL (the same package can sit in several files).
    let mut seen = BTreeSet::new();
    let unique = components
        .into_iter()
        .filter(|c| seen.insert(c.purl.clone()))
        .collect();
    (unique, os)
}

/// What a package declares: its own metadata's license, or for a Debian package the
/// licenses of its machine-readable `copyright` file.
fn declared_license(
    p: &FoundPackage,
    copyrights: &BTreeMap<String, String>,
) -> Option<stellaops_policy::license::Declared> {
    let text = if p.kind == "deb" {
        copyrights.get(&format!("usr/share/doc/{}/copyright", p.name))?
    } else {
        &p.license
    };
    stellaops_policy::license::Declared::of(text)
}

/// A CycloneDX 1.6 JSON SBOM. Deterministic: no timestamp, serial number derived from the
/// image digest, components sorted by package URL.
pub fn cyclonedx(
    image: &str,
    digest: &str,
    components: &[Component],
    os: Option<&OsRelease>,
) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(digest.as_bytes());
    let h = hex::encode(&hash[..16]);
    let serial = format!(
        "urn:uuid:{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    );
    let mut list: Vec<Value> = components
        .iter()
        .map(|c| {
            let mut properties = vec![
                json!({"name": "stellaops:layer.digest", "value": c.layer}),
                json!({"name": "stellaops:file.path", "value": c.path}),
            ];
            if let Some(used) = c.used_by_entrypoint {
                properties
                    .push(json!({"name": "stellaops:usedByEntrypoint", "value": used.to_string()}));
            }
            let mut component = json!({
                "type": "library",
                "bom-ref": c.purl,
                "name": c.name,
                "version": c.version,
                "purl": c.purl,
            });
            if let Some(declared) = &c.license {
                component["licenses"] = license::cyclonedx(declared);
            }
            if let Some((name, version)) = c.source_package() {
                properties.push(json!({"name": "stellaops:source.name", "value": name}));
                properties.push(json!({"name": "stellaops:source.version", "value": version}));
                // The source package is what the binary package descends from.
                let mut ancestor = json!({"type": "library", "name": name, "version": version});
                if let Some(purl) = source_purl(c, name, version) {
                    ancestor["purl"] = json!(purl);
                }
                component["pedigree"] = json!({"ancestors": [ancestor]});
            }
            component["properties"] = Value::Array(properties);
            component
        })
        .collect();
    if let Some(os) = os {
        list.push(
            json!({"type": "operating-system", "bom-ref": format!("os:{}@{}", os.id, os.version_id),
                         "name": os.id, "version": os.version_id, "description": os.pretty_name}),
        );
    }
    let bom = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": serial,
        "version": 1,
        "metadata": {
            "tools": {"components": [{"type": "application", "name": "stellaops-worker", "version": env!("CARGO_PKG_VERSION")}]},
            "component": {"type": "container", "bom-ref": digest, "name": image, "version": digest}
        },
        "components": list,
    });
    let mut out = serde_json::to_vec_pretty(&bom).expect("SBOM serializes");
    out.push(b'\n');
    out
}

/// The Usage view as CycloneDX 1.6 JSON: the components the entrypoint uses, and in the
/// metadata how it was followed (the chain, as `path (where from)` with `FILE:LINE` for
/// script lines) and the config it started from. Deterministic like the inventory.
pub fn usage_cyclonedx(
    image: &str,
    digest: &str,
    components: &[Component],
    os: Option<&OsRelease>,
    view: &usage::UsageView,
) -> Vec<u8> {
    let used: Vec<Component> = components
        .iter()
        .filter(|c| c.used_by_entrypoint == Some(true))
        .cloned()
        .collect();
    let inventory = cyclonedx(image, digest, &used, os);
    let mut bom: Value = serde_json::from_slice(&inventory).expect("our own SBOM parses");
    // Its own serial number: the usage view is another BOM of the same image.
    use sha2::{Digest, Sha256};
    let h = hex::encode(&Sha256::digest(format!("usage:{digest}").as_bytes())[..16]);
    bom["serialNumber"] = json!(format!(
        "urn:uuid:{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    ));
    let mut properties = vec![json!({"name": "stellaops:view", "value": "usage"})];
    for (i, step) in view.trace.chain.iter().enumerate() {
        properties.push(json!({"name": format!("stellaops:entrypoint.chain.{i}"),
                               "value": format!("{} ({})", step.path, step.from)}));
    }
    for step in &view.trace.also_run {
        properties.push(json!({"name": "stellaops:entrypoint.alsoRun",
                               "value": format!("{} ({})", step.path, step.from)}));
    }
    for note in &view.trace.notes {
        properties.push(json!({"name": "stellaops:entrypoint.note", "value": note}));
    }
    for missing in &view.closure.missing {
        properties.push(json!({"name": "stellaops:closure.missing", "value": missing}));
    }
    properties.push(json!({"name": "stellaops:closure.files",
                           "value": view.closure.files.len().to_string()}));
    bom["metadata"]["properties"] = Value::Array(properties);
    let mut out = serde_json::to_vec_pretty(&bom).expect("SBOM serializes");
    out.push(b'\n');
    out
}

/// The package URL of a component's source package, where the purl type has a way to say
/// "source": Debian's `arch=source`, RPM's `arch=src`.
fn source_purl(c: &Component, name: &str, version: &str) -> Option<String> {
    use purl::PackageUrl;
    let parsed = PackageUrlParts::of(&c.purl)?;
    let arch = match c.kind.as_str() {
        "deb" => "source",
        "rpm" => "src",
        _ => return None,
    };
    let mut p = PackageUrl::new(&c.kind, name)
        .namespace(&parsed.namespace)
        .qualifier("arch", arch)
        .qualifier("distro", &parsed.distro);
    p = if c.kind == "rpm" {
        match version.split_once(':') {
            Some((epoch, rest)) => p.version(rest).qualifier("epoch", epoch),
            None => p.version(version),
        }
    } else {
        p.version(version)
    };
    Some(p.to_string())
}

/// The namespace and `distro` qualifier of a package URL we made.
struct PackageUrlParts {
    namespace: String,
    distro: String,
}

impl PackageUrlParts {
    fn of(purl: &str) -> Option<Self> {
        let rest = purl.strip_prefix("pkg:")?;
        let (path, qualifiers) = rest.split_once('?').unwrap_or((rest, ""));
        let mut segments = path.split('/');
        let _type = segments.next()?;
        let namespace = segments.next()?.to_string();
        let distro = qualifiers
            .split('&')
            .find_map(|q| q.strip_prefix("distro="))
            .unwrap_or_default()
            .to_string();
        Some(PackageUrlParts { namespace, distro })
    }
}

/// An advisory row as matching needs it.
#[derive(Clone, Debug)]
pub struct AdvisoryRow {
    /// Identity.
    pub merge_hash: String,
    /// CVE or source id.
    pub vuln_id: String,
    /// Package URL without version.
    pub affects_key: String,
    /// OSV ecosystem.
    pub ecosystem: String,
    /// OSV ranges.
    pub ranges: Value,
    /// Explicit versions.
    pub versions: Vec<String>,
    /// Severity.
    pub severity: Option<String>,
}

/// A component affected by an advisory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Finding {
    /// Advisory identity.
    pub merge_hash: String,
    /// CVE or source id.
    pub vuln_id: String,
    /// Component.
    pub purl: String,
    /// Severity, if rated.
    pub severity: Option<String>,
    /// First fixed version, if any.
    pub fixed_version: Option<String>,
    /// Layer of the component.
    pub layer: String,
    /// Whether the image's entrypoint uses the component (`None`: not known).
    #[serde(default)]
    pub used_by_entrypoint: Option<bool>,
}

/// Advisory rows by affects key, built once for many images.
pub fn index_rows(rows: &[AdvisoryRow]) -> BTreeMap<&str, Vec<&AdvisoryRow>> {
    let mut by_key: BTreeMap<&str, Vec<&AdvisoryRow>> = BTreeMap::new();
    for row in rows {
        by_key
            .entry(row.affects_key.as_str())
            .or_default()
            .push(row);
    }
    by_key
}

/// Match components against advisory rows. Pure.
pub fn match_components(components: &[Component], rows: &[AdvisoryRow]) -> Vec<Finding> {
    match_indexed(components, &index_rows(rows))
}

/// Match components against rows indexed by [`index_rows`]. Pure.
pub fn match_indexed(
    components: &[Component],
    by_key: &BTreeMap<&str, Vec<&AdvisoryRow>>,
) -> Vec<Finding> {
    let mut findings = BTreeSet::new();
    for c in components {
        for key in &c.affects_keys {
            for row in by_key.get(key.key.as_str()).into_iter().flatten() {
                if let Some(hit) = affected(
                    Scheme::of(&row.ecosystem),
                    &key.version,
                    &row.ranges,
                    &row.versions,
                ) {
                    findings.insert(Finding {
                        merge_hash: row.merge_hash.clone(),
                        vuln_id: row.vuln_id.clone(),
                        purl: c.purl.clone(),
                        severity: row.severity.clone(),
                        fixed_version: hit.fixed,
                        layer: c.layer.clone(),
                        used_by_entrypoint: c.used_by_entrypoint,
                    });
                }
            }
        }
    }
    findings.into_iter().collect()
}

/// The policy a verdict is decided under: the Scan's inline thresholds, or a ScanPolicy's
/// rules and thresholds (`policyRef` names it). Stored with each result (the `policy`
/// column), so a re-evaluation decides under the same policy; results from before rules
/// existed read back with none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// Fail at or above this severity.
    pub fail_on: String,
    /// Warn at or above this severity.
    pub warn_on: Option<String>,
    /// Findings without a fixed version do not count.
    pub ignore_unfixed: bool,
    /// The ScanPolicy's rules, in order (the evaluator's own type: one evaluator).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<stellaops_policy::evaluate::Rule>,
    /// The ScanPolicy these came from: when it changes or one of its waivers expires, the
    /// results decided under it are evaluated again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_ref: Option<String>,
    /// Which components the thresholds count (`usage`: those the entrypoint uses).
    #[serde(
        default,
        skip_serializing_if = "stellaops_policy::evaluate::Scope::is_inventory"
    )]
    pub scope: stellaops_policy::evaluate::Scope,
    /// The ScanPolicy's VEX trust: provider weights and accepted justifications (`None`:
    /// the consensus's defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vex: Option<stellaops_policy::vex::consensus::Trust>,
    /// The ScanPolicy's license rules, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<stellaops_policy::license::LicenseRule>,
}

impl Default for Policy {
    /// The Scan kind's default: fail on critical, nothing else.
    fn default() -> Self {
        Policy {
            fail_on: "critical".into(),
            warn_on: None,
            ignore_unfixed: false,
            rules: Vec::new(),
            policy_ref: None,
            scope: Default::default(),
            vex: None,
            licenses: Vec::new(),
        }
    }
}

impl Policy {
    /// A ScanPolicy's policy as the evaluator has it (`stellaops_policy::evaluate::Policy`,
    /// the form the controller computes the digest of), named `name`.
    pub fn from_evaluator(
        name: Option<String>,
        policy: stellaops_policy::evaluate::Policy,
    ) -> Policy {
        Policy {
            fail_on: policy.fail_on.unwrap_or_default(),
            warn_on: policy.warn_on,
            ignore_unfixed: policy.ignore_unfixed,
            rules: policy.rules,
            policy_ref: name,
            scope: policy.scope,
            vex: policy.vex,
            licenses: policy.licenses,
        }
    }
}

/// Order of severities (unknown is 0).
pub fn rank(severity: &str) -> u8 {
    stellaops_policy::evaluate::rank(severity)
}

/// `Pass`, `Warn` or `Fail` under `policy` with no VEX statement or exploitation signal
/// known: the decider's thresholds ([`judge::judge`] is what scans and re-evaluations use).
pub fn verdict(findings: &[Finding], policy: &Policy) -> &'static str {
    judge::judge(
        &judge::Evidence::default(),
        "",
        None,
        "",
        findings,
        &[],
        policy,
        jiff::Timestamp::now(),
    )
    .verdict
}

/// Read the advisory rows for `components` and the snapshot they were read at.
pub async fn advisories_for(
    pool: &PgPool,
    components: &[Component],
) -> anyhow::Result<(Vec<AdvisoryRow>, i64)> {
    let keys: Vec<String> = components
        .iter()
        .flat_map(|c| c.affects_keys.iter().map(|k| k.key.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    advisories_for_keys(pool, &keys).await
}

/// Read the advisory rows stored under `keys` and the snapshot they were read at.
pub async fn advisories_for_keys(
    pool: &PgPool,
    keys: &[String],
) -> anyhow::Result<(Vec<AdvisoryRow>, i64)> {
    let mut tx = pool.begin().await?;
    // One snapshot: the rows and the sequence value agree.
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let snapshot = stellaops_store::advisories::snapshot(&mut *tx).await?;
    let rows = sqlx::query(
        "SELECT merge_hash, vuln_id, affects_key, ecosystem, ranges, versions, severity
         FROM canonical_advisories WHERE affects_key = ANY($1) AND withdrawn IS NULL",
    )
    .bind(keys)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|r| AdvisoryRow {
        merge_hash: r.get("merge_hash"),
        vuln_id: r.get("vuln_id"),
        affects_key: r.get("affects_key"),
        ecosystem: r.get("ecosystem"),
        ranges: r.get("ranges"),
        versions: r.get("versions"),
        severity: r.get("severity"),
    })
    .collect();
    tx.commit().await?;
    Ok((rows, snapshot))
}

/// What a finished scan records.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanSummary {
    /// Row id in `scan_results`.
    pub scan_id: i64,
    /// Image as asked.
    pub image: String,
    /// Digest scanned.
    pub image_digest: String,
    /// SBOM location.
    pub sbom_uri: String,
    /// `sha256:` of the SBOM bytes.
    pub sbom_sha256: String,
    /// Components in the SBOM.
    pub components: i64,
    /// Findings by severity.
    pub findings: BTreeMap<&'static str, i64>,
    /// Verdict.
    pub verdict: &'static str,
    /// Advisory snapshot matched against.
    pub advisory_snapshot: i64,
    /// Layers analysed now / taken from the cache.
    pub layers_analysed: usize,
    /// Layers taken from the cache.
    pub layers_cached: usize,
    /// Cached fragments refused by their seal (forged, changed, another key or layer) and
    /// analysed again.
    pub layers_refused: usize,
    /// Compressed size of the image's layers, as the manifest gives it (the operator files
    /// scan latency by it); 0 when the result was reused without reading the manifest.
    pub image_bytes: u64,
    /// The Usage SBOM (used components only), when the entrypoint could be followed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_sbom_uri: Option<String>,
    /// `sha256:` of the Usage SBOM bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_sbom_sha256: Option<String>,
    /// Components the entrypoint uses (`None`: not known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_components: Option<i64>,
    /// The entrypoint chain, `path (where it came from)` per step.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    /// Time the Usage view took (trace, closure, ownership), in microseconds.
    pub usage_micros: u64,
}

/// Who asked (the Scan), for the record.
#[derive(Clone, Debug, Default)]
pub struct Requester {
    /// Namespace.
    pub namespace: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// UID.
    pub uid: Option<String>,
}

/// What [`record`] stored.
pub struct Recorded {
    /// Row id in `scan_results`.
    pub id: i64,
    /// The verdict.
    pub verdict: &'static str,
    /// Findings that count, by severity (VEX and waivers taken out).
    pub counts: BTreeMap<&'static str, i64>,
}

/// Record a scan, its findings (with what decided each: VEX, a rule, the thresholds) and
/// package index, and the `report.ready` event, in one transaction.
#[allow(clippy::too_many_arguments)]
pub async fn record(
    pool: &PgPool,
    requester: &Requester,
    image: &str,
    digest: &str,
    snapshot: i64,
    sbom: (&str, &str),
    components: &[Component],
    findings: &[Finding],
    policy: &Policy,
    started: chrono::DateTime<chrono::Utc>,
    attest: Option<&Attest<'_>>,
) -> anyhow::Result<Recorded> {
    let evidence = judge::Evidence::load(pool, findings).await?;
    let judged = judge::judge(
        &evidence,
        digest,
        requester.namespace.as_deref(),
        judge::repository_of(image),
        findings,
        components,
        policy,
        jiff::Timestamp::now(),
    );
    let verdict = judged.verdict;
    let c = judged.counts.clone();
    // The signed verdict, in S3 before the row that references it.
    let attestation = match attest {
        Some(a) => {
            let predicate = stellaops_store::attestation::VerdictPredicate {
                image: image.to_string(),
                verdict: verdict.to_string(),
                findings: stellaops_store::attestation::FindingCounts {
                    critical: c["critical"],
                    high: c["high"],
                    medium: c["medium"],
                    low: c["low"],
                },
                sbom: stellaops_store::attestation::SbomRef {
                    uri: sbom.0.to_string(),
                    sha256: sbom.1.to_string(),
                },
                advisory_snapshot: snapshot,
                policy_digest: judged.policy_digest.to_string(),
                scanned_at: chrono::Utc::now(),
            };
            let envelope = a.signer.sign(digest, &predicate);
            let key = stellaops_store::attestation::object_key(&envelope);
            put_object(
                a.s3,
                a.bucket,
                &key,
                envelope.clone(),
                "application/vnd.dsse.envelope.v1+json",
            )
            .await?;
            Some((key, envelope))
        }
        None => None,
    };
    let mut tx = pool.begin().await?;
    let new_findings: Vec<_> = findings
        .iter()
        .zip(&judged.decided)
        .map(|(f, d)| stellaops_store::scans::NewFinding {
            merge_hash: f.merge_hash.clone(),
            vuln_id: f.vuln_id.clone(),
            purl: f.purl.clone(),
            severity: f.severity.clone(),
            fixed_version: f.fixed_version.clone(),
            layer_digest: f.layer.clone(),
            outcome: serde_json::to_value(d.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            decided_by: d.decided_by.clone(),
            reason: d.reason.clone(),
        })
        .collect();
    let packages: Vec<_> = components
        .iter()
        .flat_map(|comp| {
            comp.affects_keys
                .iter()
                .map(|key| stellaops_store::scans::NewPackage {
                    affects_key: key.key.clone(),
                    purl: comp.purl.clone(),
                    version: key.version.clone(),
                    layer_digest: comp.layer.clone(),
                    used_by_entrypoint: comp.used_by_entrypoint,
                })
        })
        .collect();
    let id = stellaops_store::scans::insert_result(
        &mut tx,
        &stellaops_store::scans::NewResult {
            image_digest: digest,
            image_ref: image,
            advisory_snapshot: snapshot,
            scan_namespace: requester.namespace.as_deref(),
            scan_name: requester.name.as_deref(),
            scan_uid: requester.uid.as_deref(),
            sbom_uri: sbom.0,
            sbom_sha256: sbom.1,
            components: components.len() as i32,
            counts: ["critical", "high", "medium", "low"].map(|s| c[s] as i32),
            verdict,
            policy: serde_json::to_value(policy)?,
            policy_digest: Some(&judged.policy_digest),
            started_at: started,
            attestation: attestation
                .as_ref()
                .map(|(key, envelope)| (key.as_str(), envelope.as_slice())),
        },
        &new_findings,
        &packages,
    )
    .await?;
    let licenses: Vec<_> = components
        .iter()
        .filter_map(|c| {
            let d = c.license.as_ref()?;
            Some(stellaops_store::scans::NewLicense {
                purl: c.purl.clone(),
                declared: d.expression.clone(),
                ids: d.ids.clone(),
            })
        })
        .collect();
    stellaops_store::scans::insert_licenses(
        &mut tx,
        id,
        digest,
        &licenses,
        &license_decisions(&judged.licenses),
    )
    .await?;
    let highest = ["critical", "high", "medium", "low"]
        .into_iter()
        .find(|s| c[s] > 0)
        .map(str::to_string);
    stellaops_store::outbox::publish(
        &mut *tx,
        &stellaops_store::outbox::NewEvent {
            kind: "report.ready".into(),
            namespace: requester.namespace.clone(),
            subject: format!("{image}@{digest}"),
            severity: highest,
            payload: json!({"scanId": id, "image": image, "imageDigest": digest, "verdict": verdict,
                            "findings": c, "sbom": {"uri": sbom.0, "sha256": sbom.1, "components": components.len()},
                            "scan": {"namespace": requester.namespace, "name": requester.name}}),
            idempotency_key: format!("report.ready/{id}"),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Recorded {
        id,
        verdict,
        counts: c,
    })
}

/// The license decisions of a judgement as the store keeps them.
pub fn license_decisions(
    judged: &[judge::JudgedLicense],
) -> Vec<stellaops_store::scans::LicenseDecision> {
    judged
        .iter()
        .map(|l| stellaops_store::scans::LicenseDecision {
            purl: l.purl.clone(),
            license: l.license.clone(),
            outcome: l.outcome.to_string(),
            decided_by: l.decided_by.clone(),
            reason: l.reason.clone(),
        })
        .collect()
}

/// The components of `digest`'s stored inventory that declare a license, as license
/// rules need them (package URL and license only): what judging without the image uses.
pub async fn stored_licenses(pool: &PgPool, digest: &str) -> anyhow::Result<Vec<Component>> {
    let stored = stellaops_store::scans::licenses_of(pool, &[digest.to_string()]).await?;
    Ok(stored
        .into_values()
        .flatten()
        .map(|(purl, (declared, ids))| licensed_component(purl, declared, ids))
        .collect())
}

/// A component known only by its package URL and declared license.
pub fn licensed_component(purl: String, expression: String, ids: Vec<String>) -> Component {
    Component {
        purl,
        affects_keys: Vec::new(),
        kind: String::new(),
        name: String::new(),
        version: String::new(),
        source: String::new(),
        source_version: String::new(),
        layer: String::new(),
        path: String::new(),
        used_by_entrypoint: None,
        license: Some(stellaops_policy::license::Declared { expression, ids }),
    }
}

/// The verdict signing key and the bucket its envelopes go to.
pub struct Attest<'a> {
    /// The key (from the platform namespace's signing Secret).
    pub signer: &'a stellaops_store::attestation::VerdictSigner,
    /// S3 client.
    pub s3: &'a aws_sdk_s3::Client,
    /// Bucket (`attest/<sha256>.dsse.json`).
    pub bucket: &'a str,
}

/// The job's signing key with its bucket, when it has one.
fn attest<'a>(job: &ScanJob<'a>) -> Option<Attest<'a>> {
    job.signer.map(|signer| Attest {
        signer,
        s3: job.s3,
        bucket: job.bucket,
    })
}

/// Settings of one scan run.
pub struct ScanJob<'a> {
    /// Signs each verdict (none: results are recorded unsigned, and nothing trusts them).
    pub signer: Option<&'a stellaops_store::attestation::VerdictSigner>,
    /// Registry client (with the pull secrets).
    pub registry: &'a RegistryClient,
    /// S3 client and bucket for SBOMs and the layer cache.
    pub s3: &'a aws_sdk_s3::Client,
    /// Bucket.
    pub bucket: &'a str,
    /// Database.
    pub pool: &'a PgPool,
    /// `os/arch[/variant]` chosen from an index.
    pub platform: &'a str,
    /// Policy.
    pub policy: Policy,
    /// Who asked.
    pub requester: Requester,
    /// Also write an SPDX 2.3 document.
    pub spdx: bool,
    /// Scratch directory for layer blobs.
    pub scratch: &'a std::path::Path,
    /// Scan even when this digest has a result at the current advisory snapshot.
    pub force: bool,
}

/// When `digest` was already scanned at the current advisory snapshot: record that
/// result again for this requester (findings copied, verdict under this policy) without
/// touching the registry's layers.
async fn reuse(
    job: &ScanJob<'_>,
    image: &str,
    digest: &str,
) -> anyhow::Result<Option<ScanSummary>> {
    let mut tx = job.pool.begin().await?;
    let snapshot = stellaops_store::advisories::snapshot(&mut *tx).await?;
    let Some(row) = sqlx::query(
        "SELECT id, sbom_uri, sbom_sha256, components, verdict, attestation_key, attestation,
                usage_sbom_uri, usage_sbom_sha256, used_components
         FROM scan_results
         WHERE image_digest = $1 AND advisory_snapshot = $2 ORDER BY id DESC LIMIT 1",
    )
    .bind(digest)
    .bind(snapshot)
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    // A result is reused (and signed again) only when this key's signature on it verifies:
    // a row written by anything else is scanned afresh, never laundered into a signed one.
    if let Some(signer) = job.signer {
        let keys = stellaops_store::attestation::VerdictKeys::of(signer);
        if let Err(reason) = stellaops_store::attestation::check_row(
            &keys,
            digest,
            row.get::<String, _>("verdict").as_str(),
            row.get::<Option<String>, _>("attestation_key").as_deref(),
            row.get::<Option<Vec<u8>>, _>("attestation").as_deref(),
        ) {
            eprintln!("not reusing the earlier result of {digest}: {reason}");
            return Ok(None);
        }
    }
    let earlier: i64 = row.get("id");
    let mut findings: Vec<Finding> = sqlx::query(
        "SELECT merge_hash, vuln_id, purl, severity, fixed_version, layer_digest FROM scan_findings WHERE scan_id = $1",
    )
    .bind(earlier)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|r| Finding {
        merge_hash: r.get("merge_hash"),
        vuln_id: r.get("vuln_id"),
        purl: r.get("purl"),
        severity: r.get("severity"),
        fixed_version: r.get("fixed_version"),
        layer: r.get::<Option<String>, _>("layer_digest").unwrap_or_default(),
        used_by_entrypoint: None,
    })
    .collect();
    tx.commit().await?;
    let used = stellaops_store::scans::usage_of(job.pool, digest).await?;
    for f in &mut findings {
        f.used_by_entrypoint = used.get(&f.purl).copied();
    }
    let usage: (Option<String>, Option<String>, Option<i32>) = (
        row.get("usage_sbom_uri"),
        row.get("usage_sbom_sha256"),
        row.get("used_components"),
    );
    let sbom_uri: String = row.get("sbom_uri");
    let sbom_sha: String = row.get("sbom_sha256");
    let components: i32 = row.get("components");
    // License rules judge the stored inventory's declared licenses.
    let licensed = stored_licenses(job.pool, digest).await?;
    let Recorded {
        id: scan_id,
        verdict,
        counts: counted,
    } = record(
        job.pool,
        &job.requester,
        image,
        digest,
        snapshot,
        (&sbom_uri, &sbom_sha),
        &licensed,
        &findings,
        &job.policy,
        chrono::Utc::now(),
        attest(job).as_ref(),
    )
    .await?;
    sqlx::query("UPDATE scan_results SET components = $2 WHERE id = $1")
        .bind(scan_id)
        .bind(components)
        .execute(job.pool)
        .await?;
    if let (Some(uri), Some(sha), Some(used)) = (&usage.0, &usage.1, usage.2) {
        let mut tx = job.pool.begin().await?;
        stellaops_store::scans::set_usage(&mut tx, scan_id, uri, sha, used).await?;
        tx.commit().await?;
    }
    Ok(Some(ScanSummary {
        scan_id,
        image: image.to_string(),
        image_digest: digest.to_string(),
        sbom_uri,
        sbom_sha256: sbom_sha,
        components: i64::from(components),
        findings: counted,
        verdict,
        advisory_snapshot: snapshot,
        layers_analysed: 0,
        layers_cached: 0,
        layers_refused: 0,
        image_bytes: 0,
        usage_sbom_uri: usage.0,
        usage_sbom_sha256: usage.1,
        used_components: usage.2.map(i64::from),
        entrypoint: Vec::new(),
        usage_micros: 0,
    }))
}

/// Choose the platform's manifest from an index.
pub fn select_platform(index: &Value, platform: &str) -> Option<String> {
    let mut want = platform.split('/');
    let (os, arch, variant) = (want.next()?, want.next()?, want.next());
    index["manifests"].as_array()?.iter().find_map(|m| {
        let p = &m["platform"];
        (p["os"].as_str() == Some(os)
            && p["architecture"].as_str() == Some(arch)
            && variant.is_none_or(|v| p["variant"].as_str() == Some(v)))
        .then(|| m["digest"].as_str().map(str::to_string))
        .flatten()
    })
}

fn is_index(manifest: &Manifest, json: &Value) -> bool {
    manifest.media_type.contains("index")
        || manifest.media_type.contains("manifest.list")
        || json.get("manifests").is_some()
}

/// Largest cached fragment object read (compressed), and the most it may decompress to.
const MAX_FRAGMENT_OBJECT: usize = 64 << 20;
const MAX_FRAGMENT_BYTES: u64 = 512 << 20;

/// What the layer cache holds for a layer.
enum Cached {
    /// Nothing usable and nothing wrong: no object, or one of another analyzer version.
    Miss,
    /// A fragment the scanner sealed for this layer and analyzer.
    Hit(Fragment),
    /// An object that fails its check: why (the message continues "it …").
    Refused(String),
}

/// The cached fragment of `layer` at `key`, checked against its seal.
async fn cached_fragment(
    job: &ScanJob<'_>,
    fragment_key: &stellaops_store::layer_cache::FragmentKey,
    key: &str,
    layer: &str,
) -> anyhow::Result<Cached> {
    use std::io::Read as _;
    let bytes = match get_object_capped(job.s3, job.bucket, key, MAX_FRAGMENT_OBJECT).await? {
        Capped::Missing => return Ok(Cached::Miss),
        Capped::TooLarge => {
            return Ok(Cached::Refused(format!(
                "is larger than {MAX_FRAGMENT_OBJECT} bytes"
            )));
        }
        Capped::Bytes(bytes) => bytes,
    };
    let mut object = Vec::new();
    let decoded = zstd::stream::read::Decoder::new(bytes.as_slice())
        .and_then(|d| d.take(MAX_FRAGMENT_BYTES + 1).read_to_end(&mut object));
    if decoded.is_err() {
        return Ok(Cached::Refused("is not zstd".into()));
    }
    if object.len() as u64 > MAX_FRAGMENT_BYTES {
        return Ok(Cached::Refused(format!(
            "decompresses to more than {MAX_FRAGMENT_BYTES} bytes"
        )));
    }
    use stellaops_store::layer_cache::FragmentRefusal;
    match fragment_key.open(layer, analyze::ANALYZER_VERSION, &object) {
        Ok(body) => match serde_json::from_slice::<Fragment>(body) {
            Ok(fragment) if fragment.analyzer == analyze::ANALYZER_VERSION => {
                Ok(Cached::Hit(fragment))
            }
            Ok(_) => Ok(Cached::Refused(
                "names another analyzer version inside than its seal".into(),
            )),
            Err(e) => Ok(Cached::Refused(format!(
                "is sealed but not a fragment: {e}"
            ))),
        },
        Err(FragmentRefusal::Stale(_)) => Ok(Cached::Miss),
        Err(FragmentRefusal::Refused(why)) => Ok(Cached::Refused(why)),
    }
}

/// An object read with a size cap.
enum Capped {
    Missing,
    TooLarge,
    Bytes(Vec<u8>),
}

async fn get_object_capped(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    cap: usize,
) -> anyhow::Result<Capped> {
    let mut object = match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(object) => object,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
            return Ok(Capped::Missing);
        }
        Err(e) => {
            return Err(anyhow::anyhow!(
                "reading s3://{bucket}/{key}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            ));
        }
    };
    if object
        .content_length()
        .is_some_and(|n| n < 0 || n as u64 > cap as u64)
    {
        return Ok(Capped::TooLarge);
    }
    let mut out = Vec::new();
    while let Some(chunk) = object
        .body
        .try_next()
        .await
        .with_context(|| format!("reading s3://{bucket}/{key}"))?
    {
        if out.len() + chunk.len() > cap {
            return Ok(Capped::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Capped::Bytes(out))
}

/// Write `bytes` to `s3://bucket/key`.
pub(crate) async fn put_object(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
    content_type: &str,
) -> anyhow::Result<()> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .content_type(content_type)
        .body(bytes.into())
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "writing s3://{bucket}/{key}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            )
        })?;
    Ok(())
}

/// Scan `image`: everything from the registry to the recorded verdict. Each stage is a span
/// (`scan.pull` for the manifest and each layer, `scan.analyze` per layer, `scan.match`,
/// `scan.store`), children of the current one; the layers' progress is shown as it goes.
pub async fn scan(job: &ScanJob<'_>, image: &str) -> anyhow::Result<ScanSummary> {
    use stellaops_telemetry::{Attribute, in_span};
    let started = chrono::Utc::now();
    let reference: ImageReference = image
        .parse()
        .map_err(|e: RegistryError| anyhow::anyhow!("{e}"))?;
    let top = in_span(
        "scan.pull",
        vec![
            Attribute::new("scan.image", image.to_string()),
            Attribute::new("scan.object", "manifest"),
        ],
        job.registry.fetch_manifest(&reference),
    )
    .await?;
    let digest = top.digest.clone();
    if !job.force
        && let Some(summary) = reuse(job, image, &digest).await?
    {
        return Ok(summary);
    }
    let mut json: Value = serde_json::from_slice(&top.bytes).context("the manifest is not JSON")?;
    if is_index(&top, &json) {
        let chosen = select_platform(&json, job.platform).ok_or_else(|| {
            anyhow::anyhow!("{image} has no manifest for platform {}", job.platform)
        })?;
        let mut by_digest = reference.clone();
        by_digest.reference = crate::registry::Reference::Digest(chosen);
        let manifest = in_span(
            "scan.pull",
            vec![
                Attribute::new("scan.image", image.to_string()),
                Attribute::new("scan.object", "platform manifest"),
            ],
            job.registry.fetch_manifest(&by_digest),
        )
        .await?;
        json = serde_json::from_slice(&manifest.bytes).context("the manifest is not JSON")?;
    }
    let layers: Vec<(String, String, Option<u64>)> = json["layers"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("{image}: the manifest lists no layers"))?
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap_or_default().to_string(),
                l["mediaType"].as_str().unwrap_or_default().to_string(),
                l["size"].as_u64(),
            )
        })
        .collect();
    let image_bytes: u64 = layers.iter().filter_map(|(_, _, size)| *size).sum();
    let progress = crate::progress::Progress::start(
        "scan",
        "layers",
        Some(layers.len() as u64),
        Some(image_bytes),
    );
    let mut fragments = Vec::new();
    let (mut analysed, mut cached, mut refused) = (0, 0, 0);
    // Fragments are reused only when sealed by the key only platform scan workers hold
    // (derived from the verdict key); without it the cache is neither read nor written.
    let fragment_key = job
        .signer
        .map(stellaops_store::layer_cache::FragmentKey::derive);
    for (layer, media_type, size) in &layers {
        if !layer.starts_with("sha256:") {
            anyhow::bail!("{image}: layer digest {layer:?} is not sha256");
        }
        if media_type.contains("foreign") || media_type.contains("nondistributable") {
            progress.advance(1, size.unwrap_or(0));
            continue;
        }
        let key = stellaops_store::s3::layout::layer_fragment(layer);
        if let Some(fragment_key) = &fragment_key {
            match cached_fragment(job, fragment_key, &key, layer).await? {
                Cached::Hit(fragment) => {
                    cached += 1;
                    fragments.push((layer.clone(), fragment));
                    progress.advance(1, size.unwrap_or(0));
                    continue;
                }
                Cached::Refused(why) => {
                    refused += 1;
                    tracing::warn!(
                        object = %format!("s3://{}/{key}", job.bucket),
                        %layer,
                        key = fragment_key.id(),
                        "layer-cache fragment s3://{}/{key} refused (checked with the fragment key of verdict key {}): it {why}; analysing layer {layer} again",
                        job.bucket,
                        fragment_key.id()
                    );
                }
                Cached::Miss => {}
            }
        }
        let file = job.scratch.join(layer.replace(':', "-"));
        // The descriptor's size bounds the download: a registry cannot fill the disk.
        let size = size
            .ok_or_else(|| anyhow::anyhow!("{image}: layer {layer} has no size in the manifest"))?;
        let layer_attributes = || {
            vec![
                Attribute::new("scan.layer", layer.clone()),
                Attribute::new("scan.layer_bytes", size as i64),
            ]
        };
        in_span(
            "scan.pull",
            layer_attributes(),
            job.registry.download_blob(&reference, layer, size, &file),
        )
        .await
        .with_context(|| format!("downloading layer {layer}"))?;
        let path = file.clone();
        let fragment = in_span("scan.analyze", layer_attributes(), async {
            tokio::task::spawn_blocking(move || analyze::analyse_layer(&path))
                .await
                .map_err(anyhow::Error::from)?
                .with_context(|| {
                    format!("layer {layer} is not a readable (gzip, zstd or plain) tar")
                })
        })
        .await?;
        let _ = std::fs::remove_file(&file);
        if let Some(fragment_key) = &fragment_key {
            let sealed = fragment_key.seal(
                layer,
                analyze::ANALYZER_VERSION,
                &serde_json::to_vec(&fragment)?,
            );
            let encoded = zstd::encode_all(sealed.as_slice(), 3)?;
            put_object(job.s3, job.bucket, &key, encoded, "application/zstd").await?;
        }
        analysed += 1;
        fragments.push((layer.clone(), fragment));
        progress.advance(1, size);
    }
    progress.finish();
    let (mut components, os) = merge(&fragments);
    // The Usage view: what the config's entrypoint runs, over all layers.
    let run_config = match json["config"]["digest"].as_str() {
        Some(config_digest) => {
            let bytes = job
                .registry
                .fetch_blob(&reference, config_digest)
                .await
                .with_context(|| format!("reading the image config {config_digest}"))?;
            let config: Value =
                serde_json::from_slice(&bytes).context("the image config is not JSON")?;
            usage::RunConfig::from_image_config(&config)
        }
        None => usage::RunConfig::default(),
    };
    let usage_started = std::time::Instant::now();
    let view = usage::analyse(&fragments, &run_config, &mut components);
    let usage_micros = usage_started.elapsed().as_micros() as u64;
    let sbom = cyclonedx(image, &digest, &components, os.as_ref());
    let sbom_sha = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&sbom))
    );
    // Content-addressed: the key names the bytes, so no later scan of this digest (other
    // reference, other advisories, forced) can replace an SBOM a result points to.
    let sbom_key = stellaops_store::s3::layout::image_inventory(&sbom_sha);
    in_span(
        "scan.store",
        vec![Attribute::new("scan.object", "sbom")],
        async {
            put_object(
                job.s3,
                job.bucket,
                &sbom_key,
                sbom,
                "application/vnd.cyclonedx+json",
            )
            .await?;
            if job.spdx {
                let spdx = spdx(image, &digest, &components);
                put_object(
                    job.s3,
                    job.bucket,
                    &stellaops_store::s3::layout::image_inventory_spdx(&sbom_sha),
                    spdx,
                    "application/spdx+json",
                )
                .await?;
            }
            anyhow::Ok(())
        },
    )
    .await?;
    let (findings, snapshot) = in_span(
        "scan.match",
        vec![Attribute::new("scan.components", components.len() as i64)],
        async {
            let (rows, snapshot) = advisories_for(job.pool, &components).await?;
            anyhow::Ok((match_components(&components, &rows), snapshot))
        },
    )
    .await?;
    // The Usage SBOM beside it: the used components and how the entrypoint was followed
    // (content-addressed too). None when nothing is known about use.
    let usage_sbom = if view.known() {
        let bytes = usage_cyclonedx(image, &digest, &components, os.as_ref(), &view);
        let sha = format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
        );
        let key = stellaops_store::s3::layout::image_usage(&sha);
        put_object(
            job.s3,
            job.bucket,
            &key,
            bytes,
            "application/vnd.cyclonedx+json",
        )
        .await?;
        Some((format!("s3://{}/{key}", job.bucket), sha))
    } else {
        None
    };
    let sbom_uri = format!("s3://{}/{sbom_key}", job.bucket);
    // The verdict and its `report.ready` event: the event carries this span's trace context.
    let Recorded {
        id: scan_id,
        verdict,
        counts: counted,
    } = in_span(
        "scan.store",
        vec![
            Attribute::new("scan.object", "verdict"),
            Attribute::new("scan.findings", findings.len() as i64),
        ],
        record(
            job.pool,
            &job.requester,
            image,
            &digest,
            snapshot,
            (&sbom_uri, &sbom_sha),
            &components,
            &findings,
            &job.policy,
            started,
            attest(job).as_ref(),
        ),
    )
    .await?;
    let used_components = view.known().then_some(view.used as i64);
    if let (Some((uri, sha)), Some(used)) = (&usage_sbom, used_components) {
        let mut tx = job.pool.begin().await?;
        stellaops_store::scans::set_usage(&mut tx, scan_id, uri, sha, used as i32).await?;
        tx.commit().await?;
    }
    Ok(ScanSummary {
        scan_id,
        image: image.to_string(),
        image_digest: digest,
        sbom_uri,
        sbom_sha256: sbom_sha,
        components: components.len() as i64,
        findings: counted,
        verdict,
        advisory_snapshot: snapshot,
        layers_analysed: analysed,
        layers_cached: cached,
        layers_refused: refused,
        image_bytes,
        usage_sbom_uri: usage_sbom.as_ref().map(|(u, _)| u.clone()),
        usage_sbom_sha256: usage_sbom.map(|(_, s)| s),
        used_components,
        entrypoint: view
            .trace
            .chain
            .iter()
            .map(|s| format!("{} ({})", s.path, s.from))
            .collect(),
        usage_micros,
    })
}

/// An SPDX 2.3 JSON document of the same inventory (deterministic, like the CycloneDX one):
/// the document DESCRIBES the image (a package of purpose CONTAINER), the image CONTAINS
/// every component; a component built from another source package says so in
/// `sourceInfo`.
pub fn spdx(image: &str, digest: &str, components: &[Component]) -> Vec<u8> {
    const IMAGE: &str = "SPDXRef-Image";
    let mut packages = vec![json!({
        "SPDXID": IMAGE, "name": image, "versionInfo": digest,
        "downloadLocation": "NOASSERTION", "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "checksums": digest.strip_prefix("sha256:").map(|hex| vec![json!({"algorithm": "SHA256", "checksumValue": hex})]).unwrap_or_default(),
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": IMAGE,
    })];
    // Licenses not on the SPDX list, as the document declares them.
    let mut extracted: BTreeMap<String, String> = BTreeMap::new();
    for (i, c) in components.iter().enumerate() {
        let id = format!("SPDXRef-Package-{i}");
        let mut package = json!({
            "SPDXID": id, "name": c.name, "versionInfo": c.version,
            "downloadLocation": "NOASSERTION", "filesAnalyzed": false,
            "primaryPackagePurpose": "LIBRARY",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": c.purl}],
            "comment": format!("layer {}, {}", c.layer, c.path),
        });
        if let Some((name, version)) = c.source_package() {
            package["sourceInfo"] = json!(format!("built package from: {name} {version}"));
        }
        match c
            .license
            .as_ref()
            .map(|d| (d, license::spdx_document_form(d)))
        {
            Some((_, Some((expression, refs)))) => {
                package["licenseDeclared"] = json!(expression);
                extracted.extend(refs);
            }
            Some((declared, None)) => {
                package["licenseDeclared"] = json!("NOASSERTION");
                package["licenseComments"] = json!(format!(
                    "declared, not an SPDX expression: {}",
                    declared.expression
                ));
            }
            None => package["licenseDeclared"] = json!("NOASSERTION"),
        }
        packages.push(package);
        relationships.push(json!({
            "spdxElementId": IMAGE, "relationshipType": "CONTAINS", "relatedSpdxElement": id,
        }));
    }
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": image, "documentNamespace": format!("https://stella-ops.org/spdx/{}", digest.replace(':', "-")),
        "creationInfo": {"creators": [format!("Tool: stellaops-worker-{}", env!("CARGO_PKG_VERSION"))], "created": "1970-01-01T00:00:00Z"},
        "packages": packages,
        "relationships": relationships,
    });
    if !extracted.is_empty() {
        doc["hasExtractedLicensingInfos"] = extracted
            .into_iter()
            .map(|(id, text)| {
                json!({"licenseId": id, "name": text,
                       "extractedText": format!("The license the package metadata names {text:?}; not on the SPDX license list.")})
            })
            .collect();
    }
    let mut out = serde_json::to_vec_pretty(&doc).expect("SPDX serializes");
    out.push(b'\n');
    out
}

/// Run a scan and report it as JSON on stdout and as the Pod's termination message.
pub async fn run(job: &ScanJob<'_>, image: &str) -> anyhow::Result<ScanSummary> {
    run_and_attach(job, image, None).await
}

/// [`run`], then with `pusher` (`--attach`) attach what was recorded to the image as OCI
/// referrers. A failure to attach is reported (`attachError`) but does not undo the
/// recorded result: the verdict stands whether or not the registry took the artifacts.
pub async fn run_and_attach(
    job: &ScanJob<'_>,
    image: &str,
    pusher: Option<&RegistryClient>,
) -> anyhow::Result<ScanSummary> {
    let outcome = scan(job, image).await;
    let summary = match &outcome {
        Ok(s) => {
            let mut v = serde_json::to_value(s)?;
            v["success"] = json!(true);
            if let Some(pusher) = pusher {
                match attach::attach(job, pusher, image, s).await {
                    Ok(attached) => v["attached"] = serde_json::to_value(attached)?,
                    Err(e) => {
                        tracing::warn!(image, error = %format!("{e:#}"), "attaching failed");
                        v["attachError"] = json!(format!("{e:#}"));
                    }
                }
            }
            v
        }
        Err(e) => json!({"success": false, "image": image, "error": format!("{e:#}")}),
    };
    let text = summary.to_string();
    println!("{text}");
    crate::termination::write(&text);
    let _ = std::io::stdout().flush();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(kind: &str, name: &str, version: &str) -> FoundPackage {
        FoundPackage::new(kind, "", name, version)
    }

    #[test]
    fn layers_stack_with_whiteouts_and_replacements() {
        let base = Fragment {
            files: BTreeMap::from([
                (
                    "var/lib/dpkg/status".into(),
                    vec![
                        pkg("deb", "openssl", "3.0.11-1~deb12u1"),
                        pkg("deb", "libc6", "2.36-9"),
                    ],
                ),
                (
                    "app/node_modules/left-pad/package.json".into(),
                    vec![pkg("npm", "left-pad", "1.3.0")],
                ),
            ]),
            os: Some(OsRelease {
                id: "debian".into(),
                version_id: "12".into(),
                pretty_name: String::new(),
            }),
            ..Fragment::default()
        };
        let upgrade = Fragment {
            files: BTreeMap::from([(
                "var/lib/dpkg/status".into(),
                vec![
                    pkg("deb", "openssl", "3.0.11-1~deb12u2"),
                    pkg("deb", "libc6", "2.36-9"),
                ],
            )]),
            whiteouts: vec!["app/node_modules/left-pad".into()],
            ..Fragment::default()
        };
        let (components, os) = merge(&[("sha256:a".into(), base), ("sha256:b".into(), upgrade)]);
        assert_eq!(os.unwrap().version_id, "12");
        let got: Vec<(&str, &str)> = components
            .iter()
            .map(|c| (c.purl.as_str(), c.layer.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("pkg:deb/debian/libc6@2.36-9?distro=debian-12", "sha256:a"),
                (
                    "pkg:deb/debian/openssl@3.0.11-1~deb12u2?distro=debian-12",
                    "sha256:b"
                ),
            ],
            "the upgraded openssl came with layer b; left-pad was deleted"
        );
        let keys: Vec<(&str, &str)> = components[1]
            .affects_keys
            .iter()
            .map(|k| (k.key.as_str(), k.version.as_str()))
            .collect();
        assert_eq!(
            keys,
            vec![
                (
                    "pkg:deb/debian/openssl?distro=debian-12",
                    "3.0.11-1~deb12u2"
                ),
                ("pkg:deb/debian/openssl", "3.0.11-1~deb12u2")
            ]
        );
    }

    #[test]
    fn the_fix_reported_and_ignore_unfixed_follow_the_range_holding_the_version() {
        let component = |version: &str| Component {
            purl: format!("pkg:npm/lib@{version}"),
            affects_keys: vec![MatchKey::new("pkg:npm/lib".into(), version)],
            kind: "npm".into(),
            name: "lib".into(),
            version: version.into(),
            source: String::new(),
            source_version: String::new(),
            layer: "sha256:l".into(),
            path: String::new(),
            used_by_entrypoint: None,
            license: None,
        };
        let row = |id: &str, ranges: Value| AdvisoryRow {
            merge_hash: format!("m-{id}"),
            vuln_id: id.into(),
            affects_key: "pkg:npm/lib".into(),
            ecosystem: "npm".into(),
            ranges,
            versions: vec![],
            severity: Some("critical".into()),
        };
        // The example: 1.2.0 in ranges 0–0.2.1 and 1.0.0–1.2.3.
        let two = row(
            "GHSA-two",
            json!([{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "0.2.1"}]},
                   {"type": "SEMVER", "events": [{"introduced": "1.0.0"}, {"fixed": "1.2.3"}]}]),
        );
        // A fixed early stretch, and an open one holding 2.1.0.
        let open = row(
            "GHSA-open",
            json!([{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "0.2.1"}]},
                   {"type": "SEMVER", "events": [{"introduced": "2.0.0"}, {"last_affected": "2.9.9"}]}]),
        );
        let rows = [two, open];
        let found = match_components(&[component("1.2.0")], &rows);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].fixed_version.as_deref(), Some("1.2.3"));
        let found = match_components(&[component("2.1.0")], &rows);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].vuln_id, "GHSA-open");
        assert_eq!(found[0].fixed_version, None, "not the other range's 0.2.1");
        let policy = Policy {
            fail_on: "high".into(),
            warn_on: None,
            ignore_unfixed: true,
            ..Default::default()
        };
        assert_eq!(verdict(&found, &policy), "Pass", "unfixed for 2.1.0");
        let strict = Policy {
            ignore_unfixed: false,
            ..policy
        };
        assert_eq!(verdict(&found, &strict), "Fail");
    }

    #[test]
    fn verdicts_follow_the_policy() {
        let f = |sev: &str, fixed: Option<&str>| Finding {
            merge_hash: format!("m{sev}"),
            vuln_id: "CVE-1".into(),
            purl: "p".into(),
            severity: Some(sev.into()),
            fixed_version: fixed.map(Into::into),
            layer: String::new(),
            used_by_entrypoint: None,
        };
        let policy = Policy {
            fail_on: "high".into(),
            warn_on: Some("medium".into()),
            ignore_unfixed: false,
            ..Default::default()
        };
        assert_eq!(verdict(&[], &policy), "Pass");
        assert_eq!(verdict(&[f("low", None)], &policy), "Pass");
        assert_eq!(verdict(&[f("medium", None)], &policy), "Warn");
        assert_eq!(verdict(&[f("critical", None)], &policy), "Fail");
        let lenient = Policy {
            ignore_unfixed: true,
            ..policy
        };
        assert_eq!(verdict(&[f("critical", None)], &lenient), "Pass");
        assert_eq!(verdict(&[f("critical", Some("2.0"))], &lenient), "Fail");
    }

    #[test]
    fn platform_selection() {
        let index = json!({"manifests": [
            {"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}}]});
        assert_eq!(
            select_platform(&index, "linux/amd64").as_deref(),
            Some("sha256:amd")
        );
        assert_eq!(
            select_platform(&index, "linux/arm64/v8").as_deref(),
            Some("sha256:arm")
        );
        assert_eq!(select_platform(&index, "windows/amd64"), None);
    }
}
