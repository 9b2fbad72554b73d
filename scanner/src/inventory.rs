//! The inventory: packages found in the layers, stacked as the container sees them
//! ([`merge`]), each with its package URL and the keys its advisories are looked up by
//! ([`purl_of`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::analyze::{FoundPackage, Fragment, OsRelease};

/// A key advisories are looked up by, and the version to compare with their ranges.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MatchKey {
    /// Package URL without version, as the advisory store keys advisories
    /// (`stellaops_federation::osv::affects_key`).
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
    use crate::purl::PackageUrl;
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
        "apk" if os.is_some_and(|o| matches!(o.id.as_str(), "wolfi" | "chainguard")) => {
            // Wolfi and Chainguard OS build their own apk packages from their own origins,
            // in one rolling release: Alpine's advisories say nothing of them, theirs
            // (OSV `Wolfi`, `Chainguard`) are keyed by origin without a release.
            let id = os.map(|o| o.id.as_str()).unwrap_or_default();
            let purl = PackageUrl::new("apk", &p.name.to_ascii_lowercase())
                .namespace(id)
                .version(v);
            (
                purl.to_string(),
                keys(format!("pkg:apk/{id}/{src}"), None, src_version),
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
        "gem" => {
            // A gem built for one platform (`x86_64-linux`) says so; pure Ruby gems
            // (`ruby`, the purl default) carry no qualifier.
            let purl = PackageUrl::new("gem", &p.name)
                .version(v)
                .qualifier("platform", &p.namespace);
            (
                purl.to_string(),
                vec![MatchKey::new(format!("pkg:gem/{}", p.name), v)],
            )
        }
        "composer" => {
            // Packagist names are lower case; the purl spec has both parts in lower case.
            let (vendor, project) = (
                p.namespace.to_ascii_lowercase(),
                p.name.to_ascii_lowercase(),
            );
            let purl = PackageUrl::new("composer", &project)
                .namespace(&vendor)
                .version(v);
            (
                purl.to_string(),
                vec![MatchKey::new(format!("pkg:composer/{vendor}/{project}"), v)],
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
    let merged = merge_leaving_out(fragments, |_| false);
    (merged.components, merged.os)
}

/// What [`merge_leaving_out`] makes of the layers.
#[derive(Clone, Debug, Default)]
pub struct Merged {
    /// The components, one per package URL.
    pub components: Vec<Component>,
    /// The OS release of the stacked layers.
    pub os: Option<OsRelease>,
    /// Language packages left out, one per package URL, and only those found nowhere
    /// else in the image.
    pub left_out: Vec<Component>,
}

/// [`merge`], leaving out the language packages (every kind but deb, apk and rpm) found in
/// a file for which `distro_installed` (given the path) says a package of the
/// distribution installed it (see `usage::Stacked::distro_installed`): that package
/// stands for them. The same package found in another file is still a component.
pub fn merge_leaving_out(
    fragments: &[(String, Fragment)],
    distro_installed: impl Fn(&str) -> bool,
) -> Merged {
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
    let mut left_out = BTreeSet::new();
    for (path, packages) in &files {
        let in_distro_file = packages
            .iter()
            .any(|p| !matches!(p.kind.as_str(), "deb" | "apk" | "rpm"))
            && distro_installed(path);
        for p in packages {
            let layer = fragments
                .iter()
                .find(|(_, f)| f.files.get(path).is_some_and(|ps| ps.contains(p)))
                .map(|(d, _)| d.clone())
                .unwrap_or_default();
            let (purl, affects_keys) = purl_of(p, os.as_ref());
            let language = !matches!(p.kind.as_str(), "deb" | "apk" | "rpm");
            let into = if in_distro_file && language {
                &mut left_out
            } else {
                &mut components
            };
            into.insert(Component {
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
    let components = components
        .into_iter()
        .filter(|c| seen.insert(c.purl.clone()))
        .collect();
    let left_out = left_out
        .into_iter()
        .filter(|c| seen.insert(c.purl.clone()))
        .collect();
    Merged {
        components,
        os,
        left_out,
    }
}

/// What a package declares: its own metadata's license (an RPM tag in Fedora's legacy
/// abbreviations as SPDX), or for a Debian package the licenses of its machine-readable
/// `copyright` file.
fn declared_license(
    p: &FoundPackage,
    copyrights: &BTreeMap<String, String>,
) -> Option<stellaops_policy::license::Declared> {
    if p.kind == "deb" {
        let text = copyrights.get(&format!("usr/share/doc/{}/copyright", p.name))?;
        stellaops_policy::license::Declared::of(text)
    } else if p.kind == "rpm" {
        stellaops_policy::license::Declared::of(&crate::license::rpm(&p.license))
    } else {
        stellaops_policy::license::Declared::of(&p.license)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(kind: &str, name: &str, version: &str) -> FoundPackage {
        FoundPackage::new(kind, "", name, version)
    }

    #[test]
    fn wolfi_packages_are_their_own_and_meet_only_wolfi_advisories() {
        let mut libssl = FoundPackage::new("apk", "", "libssl3", "3.3.2-r0");
        libssl.source = "openssl".into();
        let os = |id: &str, version: &str| OsRelease {
            id: id.into(),
            version_id: version.into(),
            pretty_name: String::new(),
        };
        let wolfi = os("wolfi", "20230201");
        let (purl, keys) = purl_of(&libssl, Some(&wolfi));
        assert_eq!(purl, "pkg:apk/wolfi/libssl3@3.3.2-r0");
        let keys: Vec<(&str, &str)> = keys
            .iter()
            .map(|k| (k.key.as_str(), k.version.as_str()))
            .collect();
        assert_eq!(keys, [("pkg:apk/wolfi/openssl", "3.3.2-r0")]);
        let (purl, _) = purl_of(&libssl, Some(&os("chainguard", "")));
        assert_eq!(purl, "pkg:apk/chainguard/libssl3@3.3.2-r0");
        // On Alpine, as before.
        let (purl, _) = purl_of(&libssl, Some(&os("alpine", "3.20.3")));
        assert_eq!(purl, "pkg:apk/alpine/libssl3@3.3.2-r0?distro=alpine-3.20");

        // An Alpine advisory on openssl no longer meets Wolfi's openssl; Wolfi's does, in
        // apk's ordering (`_rc` before the release).
        let component = Component {
            affects_keys: purl_of(&libssl, Some(&wolfi)).1,
            ..licensed_component(
                "pkg:apk/wolfi/libssl3@3.3.2-r0".into(),
                String::new(),
                vec![],
            )
        };
        let row = |ecosystem: &str, key: &str, fixed: &str| crate::AdvisoryRow {
            merge_hash: format!("{ecosystem}-{fixed}"),
            vuln_id: format!("CVE-{ecosystem}"),
            affects_key: key.into(),
            ecosystem: ecosystem.into(),
            ranges: serde_json::json!([{"type": "ECOSYSTEM",
                "events": [{"introduced": "0"}, {"fixed": fixed}]}]),
            versions: Vec::new(),
            severity: Some("high".into()),
        };
        let findings = crate::match_components(
            &[component],
            &[
                row("Alpine:v3.20", "pkg:apk/alpine/openssl", "3.3.3-r0"),
                row("Wolfi", "pkg:apk/wolfi/openssl", "3.3.2-r1"),
                row("Wolfi", "pkg:apk/wolfi/openssl", "3.3.2_rc1-r0"),
            ],
        );
        let hit: Vec<&str> = findings.iter().map(|f| f.merge_hash.as_str()).collect();
        assert_eq!(hit, ["Wolfi-3.3.2-r1"]);
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
}
