//! One layer at a time: stream the (gzip, zstd or plain) tar, keep only the files that
//! say what is installed, and turn them into a fragment — packages per file, whiteouts
//! and the OS release — that the layer cache stores under the layer digest.

use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Largest file read into memory for analysis (a jar, a binary).
const MAX_FILE: u64 = 256 << 20;

/// Bumped whenever analysis changes, so cached fragments of older analyzers are redone
/// (and whenever the Usage view does: an image's cached analysis holds it).
pub const ANALYZER_VERSION: u32 = 19;

/// Longest declared license kept.
const MAX_DECLARED: usize = stellaops_policy::license::MAX_EXPRESSION;

/// Largest script, dpkg file list or loader configuration kept for the Usage view.
const MAX_TEXT: u64 = 4 << 20;

/// An entry of a layer's file tree, as the Usage view (EntryTrace) needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub enum Node {
    /// A regular file (a hard link is its target's copy).
    File {
        /// Some execute bit is set.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        exec: bool,
        /// Its dynamic-linking facts, when it is an ELF file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        elf: Option<super::elf::ElfInfo>,
        /// Its text, for scripts (`#!`, `*.sh`), dpkg file lists, `ld.so.conf` and the
        /// apk database.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink {
        /// Its target, as written.
        target: String,
    },
}

/// Largest JSON, YAML or XML file read to see whether it holds a uWSGI section.
const MAX_UWSGI_CONFIG: u64 = 64 << 10;

/// Whether a JSON, YAML or XML file may be uWSGI's configuration under another name
/// (`deploy/site.yaml`): one outside the system's shared data and `node_modules`, read
/// (up to [`MAX_UWSGI_CONFIG`]) and kept when [`holds_uwsgi_section`].
fn uwsgi_config_candidate(path: &str) -> bool {
    [".json", ".yaml", ".yml", ".xml"]
        .iter()
        .any(|extension| path.ends_with(extension))
        && !path.starts_with("usr/share/")
        && !path.contains("node_modules/")
}

/// Whether a file's text holds a `uwsgi` section as uWSGI reads one: a JSON `"uwsgi"`
/// key, a YAML `uwsgi:` line at the top level, an XML `<uwsgi` element.
fn holds_uwsgi_section(text: &str) -> bool {
    text.contains("\"uwsgi\"")
        || text.contains("<uwsgi")
        || text.lines().any(|line| {
            line.strip_prefix("uwsgi")
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
}

/// Whether a file's text is kept for the Usage view whatever its first bytes.
fn text_wanted(path: &str) -> bool {
    let name = path.rsplit_once('/').map_or(path, |(_, name)| name);
    // An application's own `package.json` (not a dependency's): its `scripts` say what
    // `npm start` runs.
    (name == "package.json" && !path.contains("node_modules/"))
        || (path.starts_with("var/lib/dpkg/info/") && path.ends_with(".list"))
        || (path.starts_with("var/lib/dpkg/status.d/") && path.ends_with(".md5sums"))
        || path == "etc/ld.so.conf"
        || path.starts_with("etc/ld.so.conf.d/")
        || path == "lib/apk/db/installed"
        // An application's ini files (uWSGI's configuration), not the system's.
        || (path.ends_with(".ini")
            && !["usr/share/", "usr/lib/", "usr/local/lib/", "usr/local/etc/php", "etc/php"]
                .iter()
                .any(|system| path.starts_with(system)))
        // uWSGI's configuration in its other formats, when the file's name says it is
        // uWSGI's (`uwsgi.yaml`, `app-uwsgi.json`); others are kept by their contents
        // ([`uwsgi_config_candidate`]).
        || (name.contains("uwsgi")
            && [".json", ".js", ".yaml", ".yml", ".xml"]
                .iter()
                .any(|extension| name.ends_with(extension))
            && !path.starts_with("usr/share/"))
        // Tomcat's configuration (`conf/`, Debian's `/etc/tomcat10/`): where its web
        // applications are deployed.
        // Jetty's modules (`modules/http.mod`): what they enable and put on the class path.
        || (name.ends_with(".mod") && path.contains("modules/"))
        || name == "server.xml"
        || name == "catalina.properties"
        || (path.contains("/Catalina/") && path.ends_with(".xml"))
        || path.ends_with(".sh")
}

/// A package as found in a file, before the OS is known.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FoundPackage {
    /// Package URL type: `deb`, `apk`, `rpm`, `npm`, `pypi`, `maven`, `nuget`, `golang`,
    /// `cargo`, `gem`, `composer`.
    pub kind: String,
    /// Namespace part (Maven group id, Composer vendor; for `rpm` the architecture, for
    /// `gem` the platform of a gem built for one; an npm scope is part of the name).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// The source package it was built from (dpkg `Source:`, apk `o:` origin, rpm
    /// `SOURCERPM`); empty when the database names none (then it is its own source).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// The source package's version when the database gives one that differs from
    /// `version` (dpkg `Source: glibc (2.36-9)` of a binNMU, the release of a source RPM).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_version: String,
    /// The license the package declares, as its metadata gives it (apk `L:`, RPM
    /// `License`, npm `license`, Python `License-Expression`, Maven `<licenses>`); empty when it declares none
    /// the analyzer can read. Debian packages get theirs from `copyright` files when the
    /// layers are merged.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub license: String,
    /// An OS package the distribution itself builds and maintains, whose advisories
    /// therefore cover what it installs: every apk; a deb whose `Maintainer:` is at
    /// Debian or Ubuntu ([`distro_maintainer`]). A language package in a file such a
    /// package installed is that package's, not a separate component.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub distro: bool,
    /// The RPM `Vendor` tag (`Red Hat, Inc.`, `Fedora Project`, `SUSE LLC
    /// <https://www.suse.com/>`); whether that is the image's distribution is known only
    /// once its `os-release` is ([`rpm_vendor_of_distro`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vendor: String,
}

/// Whether an RPM's `Vendor` is the distribution `os_id` (`os-release` `ID`) itself, whose
/// advisories then cover the package: Red Hat's for RHEL and UBI, CentOS's, Fedora's,
/// Rocky's, AlmaLinux's, Amazon's, Oracle's, SUSE's and openSUSE's, Microsoft's for Azure
/// Linux and CBL-Mariner. A package of another vendor — EPEL's (`Fedora Project`) on RHEL,
/// NodeSource's, a vendor's own — is not, even when it names a distribution.
pub fn rpm_vendor_of_distro(vendor: &str, os_id: &str) -> bool {
    let vendors: &[&str] = match os_id {
        "rhel" => &["Red Hat"],
        "centos" => &["CentOS"],
        "fedora" => &["Fedora Project"],
        "rocky" => &["Rocky Enterprise Software Foundation"],
        "almalinux" => &["AlmaLinux"],
        "amzn" => &["Amazon"],
        "ol" => &["Oracle America"],
        "sles" | "sled" | "sle-micro" | "opensuse-leap" | "opensuse-tumbleweed" | "opensuse" => {
            &["SUSE", "openSUSE"]
        }
        "mariner" | "azurelinux" => &["Microsoft Corporation"],
        _ => &[],
    };
    vendors.iter().any(|v| vendor.trim_start().starts_with(v))
}

/// Whether a dpkg `Maintainer:` (`Name <address>`) is the distribution's own: an address
/// at `debian.org` or under it (`@debian.org`, `lists.debian.org`, `tracker.debian.org`,
/// `lists.alioth.debian.org`), Debian's `alioth-lists.debian.net`, or Ubuntu's
/// (`lists.ubuntu.com`, `ubuntu.com`, `canonical.com`). A package from another
/// repository (NodeSource's `nodejs`, Docker's, Google Cloud's CLI) names its own, and
/// the distribution's advisories do not cover it.
pub fn distro_maintainer(field: &str) -> bool {
    let address = field
        .rsplit_once('<')
        .map_or(field, |(_, rest)| rest.split('>').next().unwrap_or(rest));
    let Some((_, domain)) = address.trim().rsplit_once('@') else {
        return false;
    };
    let domain = domain.trim().to_ascii_lowercase();
    let within = |zone: &str| domain == zone || domain.ends_with(&format!(".{zone}"));
    within("debian.org")
        || domain == "alioth-lists.debian.net"
        || within("ubuntu.com")
        || domain == "canonical.com"
}

impl FoundPackage {
    /// A package without a separate source.
    pub fn new(kind: &str, namespace: &str, name: &str, version: &str) -> Self {
        FoundPackage {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            version: version.into(),
            ..FoundPackage::default()
        }
    }

    /// The source package's name and version: the package itself when it names none.
    pub fn source_package(&self) -> (&str, &str) {
        let name = if self.source.is_empty() {
            &self.name
        } else {
            &self.source
        };
        let version = if self.source_version.is_empty() {
            &self.version
        } else {
            &self.source_version
        };
        (name, version)
    }

    /// Whether the source differs from the binary package (in name or version).
    pub fn has_distinct_source(&self) -> bool {
        self.source_package() != (self.name.as_str(), self.version.as_str())
    }
}

/// `/etc/os-release`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsRelease {
    /// `ID` (`debian`, `alpine`, `ubuntu`).
    pub id: String,
    /// `VERSION_ID`.
    pub version_id: String,
    /// `PRETTY_NAME`.
    pub pretty_name: String,
}

/// What one layer contributes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fragment {
    /// Analyzer version that made it.
    pub analyzer: u32,
    /// Files of interest (path without leading `/`) and the packages in each; a file
    /// with no packages is kept too, since it hides the same path of earlier layers.
    pub files: BTreeMap<String, Vec<FoundPackage>>,
    /// Paths deleted by whiteouts (`.wh.<name>`).
    pub whiteouts: Vec<String>,
    /// Directories made opaque (`.wh..wh..opq`): earlier layers' content below is hidden.
    pub opaque: Vec<String>,
    /// The OS release file, if the layer has one.
    pub os: Option<OsRelease>,
    /// Every entry of the layer (files, directories, links) with what the Usage view
    /// reads of it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tree: BTreeMap<String, Node>,
    /// For each RPM database in the layer (by path): package name → the files it owns
    /// (absolute paths), for the Usage view's ownership of files.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rpm_files: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// Machine-readable Debian `usr/share/doc/PKG/copyright` files (by path) and the SPDX
    /// expression of their licenses; a copyright file whose licenses are not known maps to
    /// an empty string (it still hides an earlier layer's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub copyrights: BTreeMap<String, String>,
}

/// Parse a dpkg `status` file (or a `status.d/` entry): installed packages only, with the
/// `Source:` field (`glibc`, or `bash (5.2.15-2)` when the source version differs).
pub fn parse_dpkg(text: &str) -> Vec<FoundPackage> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut name = None;
        let mut version = None;
        let mut source = None;
        let mut installed = true;
        let mut distro = false;
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Maintainer:") {
                distro = distro_maintainer(v);
            } else if let Some(v) = line.strip_prefix("Package:") {
                name = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Version:") {
                version = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Source:") {
                source = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Status:") {
                installed = v.trim().ends_with(" installed");
            }
        }
        if let (Some(name), Some(version), true) = (name, version, installed) {
            let (source, source_version) = match source {
                Some(field) => split_dpkg_source(field),
                None => (String::new(), String::new()),
            };
            let mut p = FoundPackage::new("deb", "", &name, &version);
            p.distro = distro;
            if source != name {
                p.source = source;
            }
            if source_version != version {
                p.source_version = source_version;
            }
            out.push(p);
        }
    }
    out
}

/// `glibc` → (`glibc`, ``); `bash (5.2.15-2)` → (`bash`, `5.2.15-2`).
fn split_dpkg_source(field: &str) -> (String, String) {
    match field.split_once('(') {
        Some((name, rest)) => (
            name.trim().to_string(),
            rest.split(')')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string(),
        ),
        None => (field.trim().to_string(), String::new()),
    }
}

/// Parse apk's `lib/apk/db/installed`, with each package's origin (`o:`, the aport it was
/// built from; subpackages share its version).
pub fn parse_apk(text: &str) -> Vec<FoundPackage> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut name = None;
        let mut version = None;
        let mut origin = None;
        let mut license = String::new();
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("P:") {
                name = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("V:") {
                version = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("o:") {
                origin = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("L:") {
                license = v.trim().chars().take(MAX_DECLARED).collect();
            }
        }
        if let (Some(name), Some(version)) = (name, version) {
            let mut p = FoundPackage::new("apk", "", &name, &version);
            p.license = license;
            // The apk database names no vendor; images take their packages from their
            // distribution's own repositories (Alpine's aports, Wolfi's).
            p.distro = true;
            if let Some(origin) = origin.filter(|o| !o.is_empty() && *o != name) {
                p.source = origin;
            }
            out.push(p);
        }
    }
    out
}

/// Parse `os-release`.
pub fn parse_os_release(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"').to_string();
        match key.trim() {
            "ID" => os.id = value,
            "VERSION_ID" => os.version_id = value,
            "PRETTY_NAME" => os.pretty_name = value,
            _ => {}
        }
    }
    os
}

/// `usr/share/doc/<package>/copyright`.
fn is_debian_copyright(path: &str) -> bool {
    path.strip_prefix("usr/share/doc/")
        .and_then(|rest| rest.strip_suffix("/copyright"))
        .is_some_and(|package| !package.is_empty() && !package.contains('/'))
}

/// An npm `package.json` directly under `node_modules/<name>` or
/// `node_modules/@scope/<name>`.
fn is_npm_manifest(path: &str) -> bool {
    let Some(dir) = path.strip_suffix("/package.json") else {
        return false;
    };
    let Some(idx) = dir.rfind("node_modules/") else {
        return false;
    };
    let rest = &dir[idx + "node_modules/".len()..];
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [name] => !name.is_empty() && !name.starts_with('.'),
        [scope, name] => scope.starts_with('@') && !name.is_empty(),
        _ => false,
    }
}

/// Whether a file's name says it is a license (`LICENSE`, `LICENCE.md`, `license-mit`,
/// `COPYING`).
fn is_license_file_name(base: &str) -> bool {
    let upper = base.to_ascii_uppercase();
    ["LICENSE", "LICENCE", "COPYING"]
        .iter()
        .any(|p| upper.starts_with(p))
}

/// A license file directly in an npm package's directory.
fn is_npm_license_file(path: &str) -> bool {
    let Some((dir, base)) = path.rsplit_once('/') else {
        return false;
    };
    is_license_file_name(base) && is_npm_manifest(&format!("{dir}/package.json"))
}

/// The license files a package's license is read from when its metadata leaves it open.
enum LicenseFiles {
    /// The `License-File`s Python metadata lists (each where PEP 639 puts it, or beside
    /// the metadata).
    Listed(Vec<[String; 2]>),
    /// The one file npm's `SEE LICENSE IN` names.
    Named(String),
    /// Every file named like a license directly in this directory (an npm package's, or a
    /// dist-info whose metadata lists none).
    All(String),
}

/// Which license files of an npm package to read its license from when its `package.json`
/// leaves it open: the file `SEE LICENSE IN` names, or (no license at all, or anything but
/// an expression of listed licenses, like `BSD`) every license file in its directory.
fn npm_license_files_wanted(manifest: &str, license: &str) -> Option<LicenseFiles> {
    let dir = manifest.strip_suffix("/package.json")?;
    if let Some(file) = super::license::npm_license_file_named(license) {
        return Some(LicenseFiles::Named(format!("{dir}/{file}")));
    }
    (!super::license::names_listed_licenses(license)).then(|| LicenseFiles::All(format!("{dir}/")))
}

/// The license of a package from its license files: all of them applying (`AND`) when
/// each is there and holds a known license; else not known.
fn license_from_files(
    wanted: &LicenseFiles,
    read: &BTreeMap<String, Option<String>>,
) -> Option<String> {
    // Each file's license, in order; `None` for a file that is missing or not known.
    let found: Vec<Option<&String>> = match wanted {
        LicenseFiles::Listed(paths) => paths
            .iter()
            .map(|candidates| candidates.iter().find_map(|p| read.get(p))?.as_ref())
            .collect(),
        LicenseFiles::Named(path) => vec![read.get(path).and_then(Option::as_ref)],
        LicenseFiles::All(dir) => read
            .range(dir.clone()..)
            .map_while(|(path, license)| Some((path.strip_prefix(dir.as_str())?, license)))
            // A nested package's files (`node_modules/…`) are its own.
            .take_while(|(base, _)| !base.starts_with("node_modules/"))
            .filter(|(base, _)| !base.contains('/') && is_license_file_name(base))
            .map(|(_, license)| license.as_ref())
            .collect(),
    };
    let mut licenses: Vec<&str> = Vec::new();
    for license in found {
        let license = license?.as_str();
        if !licenses.contains(&license) {
            licenses.push(license);
        }
    }
    super::license::all_apply(&licenses)
}

fn parse_npm(text: &str) -> Vec<FoundPackage> {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    match (json["name"].as_str(), json["version"].as_str()) {
        (Some(name), Some(version)) => vec![FoundPackage {
            kind: "npm".into(),
            namespace: String::new(),
            name: name.to_string(),
            version: version.to_string(),
            license: super::license::npm(&json).unwrap_or_default(),
            ..FoundPackage::default()
        }],
        _ => Vec::new(),
    }
}

/// Python `METADATA` / `PKG-INFO`.
pub fn parse_python(text: &str) -> Vec<FoundPackage> {
    python_package(&metadata_headers(text))
}

/// The package that Python metadata headers ([`metadata_headers`]) describe.
fn python_package(headers: &[(&str, String)]) -> Vec<FoundPackage> {
    let mut name = None;
    let mut version = None;
    for (key, value) in headers {
        if *key == "Name" {
            name = Some(value.trim().to_string());
        } else if *key == "Version" {
            version = Some(value.trim().to_string());
        }
    }
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    match (name, version) {
        (Some(name), Some(version)) => vec![FoundPackage {
            kind: "pypi".into(),
            namespace: String::new(),
            name: name.to_ascii_lowercase().replace('_', "-"),
            version,
            license: super::license::python(&headers).unwrap_or_default(),
            ..FoundPackage::default()
        }],
        _ => Vec::new(),
    }
}

/// The header fields of Python core metadata (up to the body), a folded field's
/// continuation lines (a license text in `License:`) joined to it by newlines.
fn metadata_headers(text: &str) -> Vec<(&str, String)> {
    let mut headers: Vec<(&str, String)> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            break; // the body starts
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            headers.push((key.trim(), value.trim().to_string()));
        }
    }
    headers
}

/// The license files of a Python package whose metadata leaves its license open: the
/// `License-File`s a `*.dist-info/METADATA` lists (NOTICE, AUTHORS, README and change logs
/// skipped), or, when it lists none (flit and older setuptools put the file there without
/// saying so), the files named like a license in the dist-info itself.
fn python_license_files(metadata_path: &str, headers: &[(&str, String)]) -> LicenseFiles {
    let Some(dir) = metadata_path.strip_suffix("METADATA") else {
        return LicenseFiles::Listed(Vec::new());
    };
    let listed: Vec<&String> = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("License-File"))
        .map(|(_, v)| v)
        .collect();
    if listed.is_empty() {
        return LicenseFiles::All(dir.to_string());
    }
    LicenseFiles::Listed(
        listed
            .into_iter()
            .filter(|f| {
                let base = f.rsplit('/').next().unwrap_or(f).to_ascii_uppercase();
                ![
                    "NOTICE",
                    "AUTHORS",
                    "README",
                    "CHANGELOG",
                    "CHANGES",
                    "CODE_OF_CONDUCT",
                    "CONTRIBUTORS",
                    "HISTORY",
                ]
                .iter()
                .any(|p| base.starts_with(p))
            })
            .map(|f| [format!("{dir}licenses/{f}"), format!("{dir}{f}")])
            .collect(),
    )
}

/// A file inside a `*.dist-info` directory other than the metadata pip itself reads: a
/// license file it may list as `License-File`.
fn is_dist_info_extra(path: &str) -> bool {
    let Some((_, inside)) = path.split_once(".dist-info/") else {
        return false;
    };
    !matches!(
        inside,
        "METADATA"
            | "RECORD"
            | "WHEEL"
            | "INSTALLER"
            | "REQUESTED"
            | "direct_url.json"
            | "entry_points.txt"
            | "top_level.txt"
    )
}

/// .NET `*.deps.json`: the `libraries` of type `package`.
pub fn parse_deps_json(text: &str) -> Vec<FoundPackage> {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(libraries) = json["libraries"].as_object() {
        for (key, library) in libraries {
            if library["type"].as_str() != Some("package") {
                continue;
            }
            if let Some((name, version)) = key.split_once('/') {
                out.push(FoundPackage {
                    kind: "nuget".into(),
                    namespace: String::new(),
                    name: name.to_string(),
                    version: version.to_string(),
                    ..FoundPackage::default()
                });
            }
        }
    }
    out.sort();
    out
}

/// Largest gem specification read (real ones are a few KiB; the description is the
/// longest part).
const MAX_GEMSPEC: u64 = 1 << 20;

/// Largest `installed.json` read (a large application's is about 1 MiB; decoded as JSON
/// a file takes several times its size in memory).
const MAX_COMPOSER_INSTALLED: u64 = 32 << 20;

/// An installed gem's specification, as RubyGems keeps it: `<name>-<version>.gemspec`
/// directly in a `specifications` directory of a gem home (`usr/local/bundle/`,
/// `var/lib/gems/3.1.0/`, Debian's `rubygems-integration`) or in its `default`
/// subdirectory (the gems Ruby ships). A `.gemspec` elsewhere is a gem's source, not an
/// installed gem.
fn is_installed_gemspec(path: &str) -> bool {
    let Some((dir, name)) = path
        .strip_suffix(".gemspec")
        .and_then(|p| p.rsplit_once('/'))
    else {
        return false;
    };
    let dir = dir.strip_suffix("/default").unwrap_or(dir);
    !name.is_empty() && (dir == "specifications" || dir.ends_with("/specifications"))
}

/// A Ruby string literal as `Gem::Specification#to_ruby` writes one: `"…"` (with `.freeze`
/// or not), `'…'` or `%q{…}`; `None` for anything else (a variable, a method call).
fn ruby_string(text: &str) -> Option<(String, &str)> {
    let text = text.trim_start();
    let (close, body) = if let Some(rest) = text.strip_prefix('"') {
        ('"', rest)
    } else if let Some(rest) = text.strip_prefix('\'') {
        ('\'', rest)
    } else if let Some(rest) = text.strip_prefix("%q{") {
        ('}', rest)
    } else {
        return None;
    };
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                (_, 'n') if close == '"' => out.push('\n'),
                (_, 't') if close == '"' => out.push('\t'),
                (_, e) if e == close || e == '\\' => out.push(e),
                (_, e) => {
                    out.push('\\');
                    out.push(e);
                }
            },
            // Interpolation is Ruby code, not a value.
            '#' if close == '"' && body[i + 1..].starts_with('{') => return None,
            c if c == close => {
                let rest = &body[i + 1..];
                return Some((out, rest.strip_prefix(".freeze").unwrap_or(rest)));
            }
            c => out.push(c),
        }
    }
    None
}

/// `["MIT".freeze, "Ruby".freeze]`: the strings of a literal array.
fn ruby_string_array(text: &str) -> Option<Vec<String>> {
    let mut rest = text.trim_start().strip_prefix('[')?;
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix(']') {
            return after.trim().is_empty().then_some(out);
        }
        let (value, after) = ruby_string(rest)?;
        out.push(value);
        rest = after.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// An installed gem's specification (RubyGems' `Gem::Specification#to_ruby`): the name,
/// version, platform (kept as the namespace, like an RPM's architecture; none for pure
/// Ruby gems) and licenses it assigns; the `# stub:` line RubyGems writes first gives the
/// name, version and platform when the assignments do not.
pub fn parse_gemspec(text: &str) -> Vec<FoundPackage> {
    let (mut name, mut version, mut platform) = (None, None, None);
    let mut licenses: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(stub) = line.strip_prefix("# stub: ") {
            let mut fields = stub.split_whitespace();
            if let (Some(n), Some(v), Some(p)) = (fields.next(), fields.next(), fields.next()) {
                name.get_or_insert_with(|| n.to_string());
                version.get_or_insert_with(|| v.to_string());
                platform.get_or_insert_with(|| p.to_string());
            }
            continue;
        }
        let Some((target, value)) = line
            .strip_prefix("s.")
            .and_then(|l| l.split_once(" = "))
            .map(|(t, v)| (t.trim(), v))
        else {
            continue;
        };
        match target {
            "name" => name = ruby_string(value).map(|(v, _)| v).or(name),
            "version" => version = ruby_string(value).map(|(v, _)| v).or(version),
            "platform" => platform = ruby_string(value).map(|(v, _)| v).or(platform),
            "licenses" => licenses = ruby_string_array(value).unwrap_or_default(),
            "license" => licenses = ruby_string(value).map(|(v, _)| vec![v]).unwrap_or_default(),
            _ => {}
        }
    }
    let (Some(name), Some(version)) = (name, version) else {
        return Vec::new();
    };
    if name.is_empty() || version.is_empty() {
        return Vec::new();
    }
    let platform = platform.filter(|p| p != "ruby").unwrap_or_default();
    let licenses: Vec<&str> = licenses.iter().map(String::as_str).collect();
    vec![FoundPackage {
        license: super::license::choice_of(&licenses).unwrap_or_default(),
        ..FoundPackage::new("gem", &platform, &name, &version)
    }]
}

/// Composer's `vendor/composer/installed.json`: Composer 2's `{"packages": […]}` or
/// Composer 1's bare list; each package's `name` (`vendor/project`), `version` as
/// released (`v5.4.45`) and `license` (a list is a choice, as Composer documents it).
pub fn parse_composer_installed(text: &str) -> Vec<FoundPackage> {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let packages = json
        .get("packages")
        .and_then(serde_json::Value::as_array)
        .or_else(|| json.as_array());
    let mut out: Vec<FoundPackage> = packages
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let (vendor, project) = p["name"].as_str()?.split_once('/')?;
            let version = p["version"].as_str()?;
            if vendor.is_empty() || project.is_empty() || version.is_empty() {
                return None;
            }
            let licenses: Vec<&str> = match &p["license"] {
                serde_json::Value::String(s) => vec![s.as_str()],
                serde_json::Value::Array(list) => {
                    list.iter().filter_map(serde_json::Value::as_str).collect()
                }
                _ => Vec::new(),
            };
            Some(FoundPackage {
                license: super::license::choice_of(&licenses).unwrap_or_default(),
                ..FoundPackage::new("composer", vendor, project, version)
            })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Deepest nesting of Java archives read: an EAR's WAR's jar.
const MAX_JAR_DEPTH: usize = 3;

/// Most bytes read out of one jar's entries, nested archives and metadata together: a
/// deflated entry can decompress to a thousand times its size, and nesting multiplies.
const MAX_JAR_READ: u64 = 1 << 30;

/// Largest `pom.properties`, `pom.xml` or `MANIFEST.MF` read.
const MAX_JAR_METADATA: u64 = 1 << 20;

/// The Maven artifacts of a Java archive (`*.jar`, `*.war`, `*.ear`): each
/// `META-INF/maven/<group>/<artifact>/pom.properties`, with the licenses of the
/// `pom.xml` beside it (or, for an archive of one artifact, its manifest's OSGi
/// `Bundle-License`, else the license its `META-INF/LICENSE` holds word for word), and
/// those of the archives nested in it — a Spring Boot jar's `BOOT-INF/lib/`, a WAR's
/// `WEB-INF/lib/`, an EAR's modules — down to [`MAX_JAR_DEPTH`], within
/// [`MAX_JAR_READ`] bytes in all. An archive without a `pom.properties` is named by its
/// manifest and `file_name` where they agree ([`manifest_artifact`]). What cannot be
/// read is left out, never an error.
pub fn parse_jar(file_name: &str, bytes: &[u8]) -> Vec<FoundPackage> {
    let mut out = Vec::new();
    let mut budget = MAX_JAR_READ;
    read_java_archive(file_name, bytes, 1, &mut budget, &mut out);
    out.sort();
    out.dedup();
    out
}

/// One entry of a zip archive, when it is at most `cap` bytes and the budget allows.
fn zip_entry(
    archive: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>,
    name: &str,
    cap: u64,
    budget: &mut u64,
) -> Option<Vec<u8>> {
    let file = archive.by_name(name).ok()?;
    let cap = cap.min(*budget);
    // The declared size can lie; the read is bounded either way.
    if file.size() > cap {
        return None;
    }
    let mut bytes = Vec::with_capacity(file.size() as usize);
    let read = file.take(cap + 1).read_to_end(&mut bytes);
    *budget = budget.saturating_sub(bytes.len() as u64);
    (read.is_ok() && bytes.len() as u64 <= cap).then_some(bytes)
}

fn read_java_archive(
    file_name: &str,
    bytes: &[u8],
    depth: usize,
    budget: &mut u64,
    out: &mut Vec<FoundPackage>,
) {
    let Ok(mut archive) = zip::ZipArchive::new(std::io::Cursor::new(bytes)) else {
        return;
    };
    // Names from the central directory: no entry is opened that is not wanted.
    let mut properties = Vec::new();
    let mut nested = Vec::new();
    let mut license_files = Vec::new();
    for name in archive.file_names() {
        if name.starts_with("META-INF/maven/") && name.ends_with("/pom.properties") {
            properties.push(name.to_string());
        } else if depth < MAX_JAR_DEPTH && is_java_archive(name) {
            nested.push(name.to_string());
        } else if is_license_file(name) {
            license_files.push(name.to_string());
        }
    }
    properties.sort();
    nested.sort();
    license_files.sort();
    let mut found = Vec::new();
    for name in &properties {
        let Some(text) = zip_entry(&mut archive, name, MAX_JAR_METADATA, budget) else {
            continue;
        };
        let text = String::from_utf8_lossy(&text);
        let mut props = BTreeMap::new();
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                props.insert(k.trim(), v.trim());
            }
        }
        let (Some(g), Some(a), Some(v)) = (
            props.get("groupId"),
            props.get("artifactId"),
            props.get("version"),
        ) else {
            continue;
        };
        let pom = format!("{}pom.xml", name.trim_end_matches("pom.properties"));
        let license = zip_entry(&mut archive, &pom, MAX_JAR_METADATA, budget)
            .and_then(|xml| super::license::maven_pom(&String::from_utf8_lossy(&xml)));
        found.push(FoundPackage {
            kind: "maven".into(),
            namespace: g.to_string(),
            name: a.to_string(),
            version: v.to_string(),
            license: license.unwrap_or_default(),
            ..FoundPackage::default()
        });
    }
    // Without a `pom.properties`, the manifest may still name the artifact.
    let mut manifest = None;
    if properties.is_empty() {
        manifest = zip_entry(&mut archive, MANIFEST, MAX_JAR_METADATA, budget);
        found.extend(
            manifest
                .as_deref()
                .and_then(|m| manifest_artifact(file_name, &String::from_utf8_lossy(m))),
        );
    }
    // The manifest and the license file speak for the archive, so only for an archive of
    // one artifact whose POM named no license.
    if let [only] = found.as_mut_slice()
        && only.license.is_empty()
    {
        if manifest.is_none() {
            manifest = zip_entry(&mut archive, MANIFEST, MAX_JAR_METADATA, budget);
        }
        only.license = archive_license(&mut archive, manifest.as_deref(), &license_files, budget)
            .unwrap_or_default();
    }
    out.extend(found);
    for name in &nested {
        if let Some(inner) = zip_entry(&mut archive, name, MAX_FILE, budget) {
            let inner_name = name.rsplit('/').next().unwrap_or(name);
            read_java_archive(inner_name, &inner, depth + 1, budget, out);
        }
    }
}

/// Apache Tomcat's own jars — `catalina.jar`, `tomcat-coyote.jar`, … of its binary
/// distribution and the official image, and the `tomcat-embed-*` jars Spring Boot
/// applications carry — are built with Ant and bnd and hold no `pom.properties`; their
/// manifest's `Bundle-SymbolicName` (`org.apache.tomcat-catalina`,
/// `org.apache.tomcat-embed-core`) names the Maven artifact they are published as.
/// Tomcat 9 on; 8.5's jars name no bundle and stay unidentified.
pub fn tomcat_jar(manifest: &str) -> Option<FoundPackage> {
    let attribute = |name| main_attribute(manifest, name);
    // Directives (`;singleton:=true`) may follow the name.
    let symbolic = attribute("Bundle-SymbolicName")?;
    let rest = symbolic
        .split(';')
        .next()?
        .trim()
        .strip_prefix("org.apache.tomcat-")?
        .to_string();
    let word = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    if !rest.split('-').all(word) {
        return None;
    }
    let (namespace, name) = match rest.strip_prefix("embed-") {
        // The embedded EL jar is bundle `tomcat-embed-jasper-el`, artifact `tomcat-embed-el`.
        Some("jasper-el") => ("org.apache.tomcat.embed", "tomcat-embed-el".to_string()),
        Some(_) => ("org.apache.tomcat.embed", format!("tomcat-{rest}")),
        None => ("org.apache.tomcat", format!("tomcat-{rest}")),
    };
    // `Bundle-Version` is an OSGi version (`11.0.0.M1`); the implementation's is Maven's.
    let version = attribute("Implementation-Version").or_else(|| attribute("Bundle-Version"))?;
    if !is_plain_version(&version) {
        return None;
    }
    Some(FoundPackage {
        kind: "maven".into(),
        namespace: namespace.into(),
        name,
        version,
        ..FoundPackage::default()
    })
}

/// The Maven artifact a jar without a `pom.properties` is, from its manifest and its file
/// name, where they agree: Tomcat's own jars ([`tomcat_jar`]), the bundles of
/// [`KNOWN_BUNDLES`] ([`known_bundle`]), Spring's and Kotlin's Gradle-built jars
/// ([`spring_jar`], [`kotlin_jar`]), the
/// coordinates Nebula's Gradle plugin writes ([`nebula_coordinates`]), and jars built with
/// sbt's or Maven's default manifest entries ([`default_entries_artifact`]). Not when a file
/// named `<artifact>-<version>.jar` gives another version than the manifest's; `None`
/// rather than a guess.
pub fn manifest_artifact(file_name: &str, manifest: &str) -> Option<FoundPackage> {
    let found = tomcat_jar(manifest)
        .or_else(|| known_bundle(file_name, manifest))
        .or_else(|| spring_jar(file_name, manifest))
        .or_else(|| kotlin_jar(file_name, manifest))
        .or_else(|| nebula_coordinates(manifest))
        .or_else(|| default_entries_artifact(file_name, manifest))?;
    match file_name_version(file_name, &found.name)? {
        Some(named) if named != found.version => None,
        _ => Some(found),
    }
}

/// How a known bundle's Maven version is read from its manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BundleVersion {
    /// `Implementation-Version`, else `Bundle-Version` without its OSGi qualifier.
    Manifest,
    /// Derby's `Bundle-Version` `10.14.2000000.1828579`: its third part is the fix pack
    /// times a million plus the point release (`10.14.2.0`); no `Implementation-Version`.
    Derby,
}

/// Libraries published to Maven Central whose jars hold no `pom.properties` (built with
/// Ant, Gradle, sbt or bnd), by the `Bundle-SymbolicName` their manifest gives:
/// (symbolic name, group, artifact, version). Each was read from the real jar (Apache
/// Spark's and Allure's distributions, ASM's as Jetty and Debian ship it; see the Java
/// tests); the symbolic name alone does not
/// give the coordinates (`com.google.gson` is `com.google.code.gson:gson`,
/// `org.apache.thrift` is `libthrift`, `org.tukaani.xz` is `org.tukaani:xz` while
/// `org.apache.ivy` is `org.apache.ivy:ivy`), so only those listed are named.
const KNOWN_BUNDLES: &[(&str, &str, &str, BundleVersion)] = &[
    (
        "com.google.gson",
        "com.google.code.gson",
        "gson",
        BundleVersion::Manifest,
    ),
    ("derby", "org.apache.derby", "derby", BundleVersion::Derby),
    (
        "jackson-core-asl",
        "org.codehaus.jackson",
        "jackson-core-asl",
        BundleVersion::Manifest,
    ),
    (
        "jackson-mapper-asl",
        "org.codehaus.jackson",
        "jackson-mapper-asl",
        BundleVersion::Manifest,
    ),
    ("lz4-java", "org.lz4", "lz4-java", BundleVersion::Manifest),
    (
        "org.apache.ivy",
        "org.apache.ivy",
        "ivy",
        BundleVersion::Manifest,
    ),
    (
        "org.apache.thrift",
        "org.apache.thrift",
        "libthrift",
        BundleVersion::Manifest,
    ),
    (
        "org.freemarker.freemarker",
        "org.freemarker",
        "freemarker",
        BundleVersion::Manifest,
    ),
    (
        "org.jodd.core",
        "org.jodd",
        "jodd-core",
        BundleVersion::Manifest,
    ),
    (
        "org.objectweb.asm",
        "org.ow2.asm",
        "asm",
        BundleVersion::Manifest,
    ),
    (
        "org.objectweb.asm.commons",
        "org.ow2.asm",
        "asm-commons",
        BundleVersion::Manifest,
    ),
    (
        "org.objectweb.asm.tree",
        "org.ow2.asm",
        "asm-tree",
        BundleVersion::Manifest,
    ),
    (
        "org.objectweb.asm.tree.analysis",
        "org.ow2.asm",
        "asm-analysis",
        BundleVersion::Manifest,
    ),
    (
        "org.objectweb.asm.util",
        "org.ow2.asm",
        "asm-util",
        BundleVersion::Manifest,
    ),
    (
        "org.objenesis",
        "org.objenesis",
        "objenesis",
        BundleVersion::Manifest,
    ),
    (
        "org.scala-lang.scala-library",
        "org.scala-lang",
        "scala-library",
        BundleVersion::Manifest,
    ),
    (
        "org.scala-lang.scala-reflect",
        "org.scala-lang",
        "scala-reflect",
        BundleVersion::Manifest,
    ),
    (
        "org.tukaani.xz",
        "org.tukaani",
        "xz",
        BundleVersion::Manifest,
    ),
];

/// A manifest's main-section attribute, trimmed; `None` when absent or empty.
fn main_attribute(manifest: &str, name: &str) -> Option<String> {
    super::license::manifest_attribute(manifest, name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A Maven version as a manifest may give it: begins with a digit, no spaces or path
/// characters (`2.0.8 2003-12-28 11:00:13` is not one).
fn is_plain_version(version: &str) -> bool {
    version.starts_with(|c: char| c.is_ascii_digit())
        && version.len() <= 128
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
}

/// A Maven group or artifact id: letters, digits, `.`, `_`, `-`.
fn is_maven_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !id.starts_with('.')
}

/// What a jar's file name says of `artifact`'s version: `Some(Some(v))` for
/// `<artifact>-<v>.jar`, `Some(None)` for a name that is not of that artifact (`gson.jar`,
/// `lib.jar`: it says nothing), `None` when the name is the artifact's but without a plain
/// version.
fn file_name_version<'a>(file_name: &'a str, artifact: &str) -> Option<Option<&'a str>> {
    let Some(rest) = file_name
        .strip_suffix(".jar")
        .and_then(|stem| stem.strip_prefix(artifact))
        .and_then(|rest| rest.strip_prefix('-'))
    else {
        return Some(None);
    };
    is_plain_version(rest).then_some(Some(rest))
}

/// Whether a jar's file is named for `artifact`: `<artifact>.jar` or
/// `<artifact>-<version>.jar`.
fn is_file_of(file_name: &str, artifact: &str, version: &str) -> bool {
    file_name
        .strip_suffix(".jar")
        .and_then(|stem| stem.strip_prefix(artifact))
        .is_some_and(|rest| rest.is_empty() || rest.strip_prefix('-') == Some(version))
}

/// The artifact a file named `<artifact>-<version>.jar` names, for that `version`.
fn artifact_of_file<'a>(file_name: &'a str, version: &str) -> Option<&'a str> {
    file_name
        .strip_suffix(".jar")?
        .strip_suffix(version)?
        .strip_suffix('-')
}

/// A jar of [`KNOWN_BUNDLES`]: by its `Bundle-SymbolicName` (directives after `;` aside),
/// its version as the entry says, when the file is named `<artifact>.jar` or
/// `<artifact>-<version>.jar` — forks keep the symbolic name (DataNucleus's
/// `javax.jdo-3.2.0-m3.jar` is bundle `javax.jdo` as Apache's `jdo-api` is).
fn known_bundle(file_name: &str, manifest: &str) -> Option<FoundPackage> {
    let symbolic = main_attribute(manifest, "Bundle-SymbolicName")?;
    let symbolic = symbolic.split(';').next()?.trim();
    let &(_, group, artifact, how) = KNOWN_BUNDLES.iter().find(|(s, ..)| *s == symbolic)?;
    let bundle_version = main_attribute(manifest, "Bundle-Version");
    let version = match how {
        BundleVersion::Manifest => main_attribute(manifest, "Implementation-Version")
            .or_else(|| bundle_version.as_deref().and_then(osgi_release)),
        BundleVersion::Derby => bundle_version.as_deref().and_then(derby_version),
    }?;
    let named = is_file_of(file_name, artifact, &version);
    (named && is_plain_version(&version))
        .then(|| FoundPackage::new("maven", group, artifact, &version))
}

/// An OSGi version's release (`2.12.18.v20230518-020143-VFINAL-ceaf7e6` → `2.12.18`):
/// its numeric major, minor and micro parts, as many as it gives.
fn osgi_release(version: &str) -> Option<String> {
    let parts: Vec<&str> = version
        .split('.')
        .take(3)
        .take_while(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    (!parts.is_empty()).then(|| parts.join("."))
}

/// Derby's release from its `Bundle-Version` ([`BundleVersion::Derby`]).
fn derby_version(version: &str) -> Option<String> {
    let mut parts = version.split('.');
    let (major, minor, maintenance) = (parts.next()?, parts.next()?, parts.next()?);
    let number = |p: &str| {
        (!p.is_empty() && p.len() <= 12 && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse::<u64>().ok())
            .flatten()
    };
    let (major, minor, maintenance) = (number(major)?, number(minor)?, number(maintenance)?);
    Some(format!(
        "{major}.{minor}.{}.{}",
        maintenance / 1_000_000,
        maintenance % 1_000_000
    ))
}

/// Spring Framework's modules (`org.springframework`, 4.x to 6.x), which Gradle builds: their
/// jars hold no `pom.properties`, and their manifest gives the module as
/// `Implementation-Title` (and, from 5.0, `Automatic-Module-Name` `spring.core`) but no group.
const SPRING_FRAMEWORK_MODULES: &[&str] = &[
    "spring-aop",
    "spring-aspects",
    "spring-beans",
    "spring-context",
    "spring-context-indexer",
    "spring-context-support",
    "spring-core",
    "spring-core-test",
    "spring-expression",
    "spring-instrument",
    "spring-instrument-tomcat",
    "spring-jcl",
    "spring-jdbc",
    "spring-jms",
    "spring-messaging",
    "spring-orm",
    "spring-oxm",
    "spring-r2dbc",
    "spring-test",
    "spring-tx",
    "spring-web",
    "spring-webflux",
    "spring-webmvc",
    "spring-webmvc-portlet",
    "spring-websocket",
];

/// Spring Framework's and Spring Boot's own jars (Gradle-built, no `pom.properties`), named
/// only by a file `<artifact>-<version>.jar` whose version is `Implementation-Version`:
/// * a module of [`SPRING_FRAMEWORK_MODULES`] whose `Implementation-Title` is that module and
///   whose `Automatic-Module-Name`, if any, is its dotted name → `org.springframework`;
/// * an `Automatic-Module-Name` `spring.boot` or `spring.boot.…` that is the artifact
///   dotted, with an `Implementation-Title` beginning `Spring Boot` (the project's
///   description: `Spring Boot Tomcat Starter`) → `org.springframework.boot`.
fn spring_jar(file_name: &str, manifest: &str) -> Option<FoundPackage> {
    let version = main_attribute(manifest, "Implementation-Version")?;
    let title = main_attribute(manifest, "Implementation-Title")?;
    let module = main_attribute(manifest, "Automatic-Module-Name");
    if !is_plain_version(&version) {
        return None;
    }
    let artifact = artifact_of_file(file_name, &version)?;
    let dotted = artifact.replace('-', ".");
    let group = if SPRING_FRAMEWORK_MODULES.contains(&artifact) {
        (title == artifact && module.as_ref().is_none_or(|m| *m == dotted))
            .then_some("org.springframework")
    } else {
        let boot = artifact == "spring-boot" || artifact.starts_with("spring-boot-");
        (boot && module.as_ref() == Some(&dotted) && title.starts_with("Spring Boot"))
            .then_some("org.springframework.boot")
    }?;
    is_maven_id(artifact).then(|| FoundPackage::new("maven", group, artifact, &version))
}

/// Kotlin's own jars (`org.jetbrains.kotlin`, Gradle-built, no `pom.properties`):
/// `Implementation-Vendor` `JetBrains` and an `Implementation-Title` `kotlin-…` that is the
/// artifact, in a file named `<artifact>.jar` or `<artifact>-<Implementation-Version>.jar`
/// (kotlinx libraries are another group, and their titles begin `kotlinx-`).
fn kotlin_jar(file_name: &str, manifest: &str) -> Option<FoundPackage> {
    if main_attribute(manifest, "Implementation-Vendor")? != "JetBrains" {
        return None;
    }
    let title = main_attribute(manifest, "Implementation-Title")?;
    let version = main_attribute(manifest, "Implementation-Version")?;
    let named = is_file_of(file_name, &title, &version);
    (named && title.starts_with("kotlin-") && is_maven_id(&title) && is_plain_version(&version))
        .then(|| FoundPackage::new("maven", "org.jetbrains.kotlin", &title, &version))
}

/// The coordinates Nebula's `gradle-info-plugin` (Netflix OSS, Micrometer) writes as
/// `Implementation-Title`: `<group>#<artifact>;<version>`, with `Implementation-Version`,
/// when given, the same version.
fn nebula_coordinates(manifest: &str) -> Option<FoundPackage> {
    let title = main_attribute(manifest, "Implementation-Title")?;
    let (group, rest) = title.split_once('#')?;
    let (artifact, version) = rest.split_once(';')?;
    let agrees = main_attribute(manifest, "Implementation-Version").is_none_or(|v| v == version);
    (agrees
        && is_maven_id(group)
        && group.contains('.')
        && is_maven_id(artifact)
        && is_plain_version(version))
    .then(|| FoundPackage::new("maven", group, artifact, version))
}

/// `Implementation-Vendor-Id`s that name an organisation, not the artifact's group: Apache's
/// and Oracle's parent builds write them into every jar (`org.apache` in Commons, Log4j and
/// HttpComponents jars, `com.sun` in JavaBeans Activation's).
const ORGANISATION_VENDOR_IDS: &[&str] = &[
    "org.apache",
    "com.sun",
    "com.oracle",
    "org.eclipse",
    "org.glassfish",
];

/// Scala's binary versions, which sbt appends to a cross-built artifact's name.
const SCALA_BINARY_VERSIONS: &[&str] = &["2.10", "2.11", "2.12", "2.13", "3"];

/// A jar built with sbt's default manifest entries (or Maven's `addDefaultImplementationEntries`):
/// `Implementation-Vendor-Id` is the group, `Implementation-Title` the artifact (the
/// project's name) and `Implementation-Version` the version — named only when the file
/// name is `<title>-<version>.jar`, or `<title>_<Scala binary version>-<version>.jar` for a
/// cross-built Scala library (the artifact is then the file's). A title that is a
/// description (`Apache Commons Lang`) or a vendor id of [`ORGANISATION_VENDOR_IDS`] names
/// nothing.
fn default_entries_artifact(file_name: &str, manifest: &str) -> Option<FoundPackage> {
    let group = main_attribute(manifest, "Implementation-Vendor-Id")?;
    let title = main_attribute(manifest, "Implementation-Title")?;
    let version = main_attribute(manifest, "Implementation-Version")?;
    if !is_maven_id(&group)
        || !group.contains('.')
        || ORGANISATION_VENDOR_IDS.contains(&group.as_str())
        || !is_maven_id(&title)
        || !is_plain_version(&version)
    {
        return None;
    }
    let artifact = artifact_of_file(file_name, &version)?;
    let cross_built = artifact
        .strip_prefix(title.as_str())
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|scala| SCALA_BINARY_VERSIONS.contains(&scala));
    if artifact != title && !cross_built {
        return None;
    }
    Some(FoundPackage::new("maven", &group, artifact, &version))
}

const MANIFEST: &str = "META-INF/MANIFEST.MF";

/// What an archive says of its own license: its manifest's `Bundle-License`, else the
/// first of its license files that holds a known license word for word.
fn archive_license(
    archive: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>,
    manifest: Option<&[u8]>,
    license_files: &[String],
    budget: &mut u64,
) -> Option<String> {
    if let Some(license) =
        manifest.and_then(|m| super::license::bundle_license(&String::from_utf8_lossy(m)))
    {
        return Some(license);
    }
    let cap = super::license::MAX_LICENSE_FILE as u64;
    license_files.iter().find_map(|name| {
        zip_entry(archive, name, cap, budget)
            .and_then(|text| super::license::license_file(&String::from_utf8_lossy(&text)))
    })
}

/// A jar's own license file: `META-INF/LICENSE`, `LICENSE.txt` or `LICENSE.md`.
fn is_license_file(name: &str) -> bool {
    name.strip_prefix("META-INF/").is_some_and(|rest| {
        ["LICENSE", "LICENSE.TXT", "LICENSE.MD"]
            .iter()
            .any(|n| rest.eq_ignore_ascii_case(n))
    })
}

/// An entry name of a Java archive inside another.
fn is_java_archive(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".jar") || lower.ends_with(".war") || lower.ends_with(".ear")
}

/// Go build information (`\xff Go buildinf:`, Go 1.18+ layout) of a binary: its modules.
pub fn parse_go_binary(bytes: &[u8]) -> Vec<FoundPackage> {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    let Some(at) = bytes.windows(MAGIC.len()).position(|w| w == MAGIC) else {
        return Vec::new();
    };
    let header = &bytes[at..];
    // Flags byte 15: bit 1 set = inline varint-prefixed strings (Go 1.18+).
    if header.len() < 32 || header[15] & 2 == 0 {
        return Vec::new();
    }
    let mut rest = &header[32..];
    let mut read_string = || -> Option<String> {
        let (len, used) = read_uvarint(rest)?;
        let end = used.checked_add(usize::try_from(len).ok()?)?;
        let s = rest.get(used..end)?;
        rest = &rest[end..];
        Some(String::from_utf8_lossy(s).into_owned())
    };
    let go_version = read_string();
    let Some(modinfo) = read_string() else {
        return Vec::new();
    };
    // The standard library it was built with, as the Go vulnerability database names it
    // (`stdlib`): many Go advisories are in it (net/http, crypto/tls, …).
    let mut out: Vec<FoundPackage> = go_version
        .as_deref()
        .and_then(go_stdlib_version)
        .map(|v| FoundPackage::new("golang", "", "stdlib", &v))
        .into_iter()
        .collect();
    // Whether the line before was a module just listed (a `=>` line replaces it).
    let mut replaceable = false;
    for line in modinfo.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["mod", path, version, ..] | ["dep", path, version, ..]
                if version.starts_with('v') && *version != "(devel)" =>
            {
                out.push(FoundPackage {
                    kind: "golang".into(),
                    namespace: String::new(),
                    name: path.to_string(),
                    version: version.to_string(),
                    ..FoundPackage::default()
                });
                replaceable = true;
                continue;
            }
            // A replacement names the module actually built in (a local directory, with
            // no version, leaves the module as required).
            ["=>", path, version, ..] if version.starts_with('v') && replaceable => {
                if let Some(last) = out.last_mut() {
                    last.name = path.to_string();
                    last.version = version.to_string();
                }
            }
            _ => {}
        }
        replaceable = false;
    }
    out
}

/// A Go toolchain version (`go1.21.3`, `go1.20`, `go1.22rc1`, `go1.21.5 X:boringcrypto`)
/// as the semantic version the Go vulnerability database uses for `stdlib` (`v1.21.3`,
/// `v1.20.0`, `v1.22.0-rc.1`); `None` for a development build (`devel …`).
pub fn go_stdlib_version(go: &str) -> Option<String> {
    let version = go.split_whitespace().next()?.strip_prefix("go")?;
    let (release, pre) = match version.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => (&version[..at], Some(&version[at..])),
        None => (version, None),
    };
    let numbers: Vec<&str> = release.split('.').collect();
    if !(2..=3).contains(&numbers.len())
        || numbers
            .iter()
            .any(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let patch = numbers.get(2).copied().unwrap_or("0");
    let mut out = format!("v{}.{}.{patch}", numbers[0], numbers[1]);
    if let Some(pre) = pre {
        let digits = pre.trim_start_matches(|c: char| c.is_ascii_alphabetic());
        let label = &pre[..pre.len() - digits.len()];
        if !matches!(label, "rc" | "beta") || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        out.push_str(&format!("-{label}.{digits}"));
    }
    Some(out)
}

fn read_uvarint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Rust `cargo auditable` data: the zlib-compressed JSON in the ELF section `.dep-v0`.
pub fn parse_cargo_auditable(bytes: &[u8]) -> Vec<FoundPackage> {
    let Some(section) = elf_section(bytes, ".dep-v0") else {
        return Vec::new();
    };
    let mut json = String::new();
    if flate2::read::ZlibDecoder::new(section)
        .take(8 << 20)
        .read_to_string(&mut json)
        .is_err()
    {
        return Vec::new();
    }
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&json) else {
        return Vec::new();
    };
    let mut out: Vec<FoundPackage> = value["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["source"].as_str() == Some("crates.io"))
        .filter_map(|p| {
            Some(FoundPackage {
                kind: "cargo".into(),
                namespace: String::new(),
                name: p["name"].as_str()?.to_string(),
                version: p["version"].as_str()?.to_string(),
                ..FoundPackage::default()
            })
        })
        .collect();
    out.sort();
    out
}

/// The bytes of a named section of a 64-bit little-endian ELF file. Every offset comes
/// from the file: all arithmetic on them is checked, every read is a `get`.
fn elf_section<'a>(bytes: &'a [u8], wanted: &str) -> Option<&'a [u8]> {
    if bytes.get(..4)? != b"\x7fELF" || *bytes.get(4)? != 2 || *bytes.get(5)? != 1 {
        return None;
    }
    let field = |o: usize, n: usize| bytes.get(o..o.checked_add(n)?);
    let u16_at = |o: usize| Some(u16::from_le_bytes(field(o, 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(field(o, 4)?.try_into().ok()?));
    let u64_at = |o: usize| usize::try_from(u64::from_le_bytes(field(o, 8)?.try_into().ok()?)).ok();
    let shoff = u64_at(0x28)?;
    let shentsize = usize::from(u16_at(0x3a)?);
    let shnum = usize::from(u16_at(0x3c)?);
    let shstrndx = usize::from(u16_at(0x3e)?);
    let header = |i: usize| shoff.checked_add(i.checked_mul(shentsize)?);
    let strtab = header(shstrndx)?;
    let names_at = u64_at(strtab.checked_add(0x18)?)?;
    for i in 0..shnum {
        let h = header(i)?;
        let name_off = usize::try_from(u32_at(h)?).ok()?;
        let name = bytes.get(names_at.checked_add(name_off)?..)?;
        let end = name.iter().position(|b| *b == 0)?;
        if &name[..end] == wanted.as_bytes() {
            let offset = u64_at(h.checked_add(0x18)?)?;
            let size = u64_at(h.checked_add(0x20)?)?;
            return bytes.get(offset..offset.checked_add(size)?);
        }
    }
    None
}

/// What a path is to the analyzers.
enum Interest {
    Dpkg,
    Apk,
    RpmSqlite,
    RpmBdb,
    /// SUSE's ndb `Packages.db`.
    RpmNdb,
    OsRelease,
    DebianCopyright,
    Npm,
    Python,
    /// A file in a `*.dist-info` directory: a `License-File` METADATA lists, or a license
    /// file it leaves unlisted.
    DistInfoFile,
    /// A license file in an npm package's directory, read when its `package.json` leaves
    /// the license open.
    NpmLicenseFile,
    DotNet,
    /// An installed gem's specification (`…/specifications/<name>-<version>.gemspec`,
    /// default gems under `specifications/default/`).
    Gemspec,
    /// Composer's record of the packages it installed (`vendor/composer/installed.json`).
    Composer,
    Jar,
    Binary,
}

fn interest(path: &str, executable: bool) -> Option<Interest> {
    if path == "var/lib/dpkg/status"
        || (path.starts_with("var/lib/dpkg/status.d/") && !path.ends_with(".md5sums"))
    {
        return Some(Interest::Dpkg);
    }
    if path == "lib/apk/db/installed" {
        return Some(Interest::Apk);
    }
    if path == "var/lib/rpm/rpmdb.sqlite" || path == "usr/lib/sysimage/rpm/rpmdb.sqlite" {
        return Some(Interest::RpmSqlite);
    }
    if path == "var/lib/rpm/Packages" || path == "usr/lib/sysimage/rpm/Packages" {
        return Some(Interest::RpmBdb);
    }
    if path == "var/lib/rpm/Packages.db" || path == "usr/lib/sysimage/rpm/Packages.db" {
        return Some(Interest::RpmNdb);
    }
    if path == "etc/os-release" || path == "usr/lib/os-release" {
        return Some(Interest::OsRelease);
    }
    if is_debian_copyright(path) {
        return Some(Interest::DebianCopyright);
    }
    if is_npm_manifest(path) {
        return Some(Interest::Npm);
    }
    if is_npm_license_file(path) {
        return Some(Interest::NpmLicenseFile);
    }
    if path.ends_with(".dist-info/METADATA") || path.ends_with(".egg-info/PKG-INFO") {
        return Some(Interest::Python);
    }
    if is_dist_info_extra(path) {
        return Some(Interest::DistInfoFile);
    }
    if path.ends_with(".deps.json") {
        return Some(Interest::DotNet);
    }
    if is_installed_gemspec(path) {
        return Some(Interest::Gemspec);
    }
    if path == "vendor/composer/installed.json" || path.ends_with("/vendor/composer/installed.json")
    {
        return Some(Interest::Composer);
    }
    if path.ends_with(".jar") || path.ends_with(".war") || path.ends_with(".ear") {
        return Some(Interest::Jar);
    }
    if executable {
        return Some(Interest::Binary);
    }
    None
}

/// The most a layer may decompress to: 200 times its compressed size, at least 1 GiB and at
/// most 64 GiB. Real layers compress 2–10×; a decompression bomb (gzip reaches ~1000×,
/// zstd far more) is stopped after a bounded amount of work.
pub fn max_layer_bytes(compressed: u64) -> u64 {
    compressed.saturating_mul(200).clamp(1 << 30, 64 << 30)
}

/// A reader that fails once more than `remaining` bytes came through.
struct Capped<R> {
    inner: R,
    remaining: u64,
    limit: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.remaining = self.remaining.checked_sub(n as u64).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the layer decompresses to more than {} bytes; refused",
                    self.limit
                ),
            )
        })?;
        Ok(n)
    }
}

/// Analyse a layer blob on disk, at most [`max_layer_bytes`] of it decompressed. Blocking;
/// run it on a blocking thread.
pub fn analyse_layer(file: &Path) -> std::io::Result<Fragment> {
    let compressed = std::fs::metadata(file)?.len();
    analyse_layer_capped(file, max_layer_bytes(compressed))
}

/// [`analyse_layer`] with an explicit cap on the decompressed bytes.
pub fn analyse_layer_capped(file: &Path, limit: u64) -> std::io::Result<Fragment> {
    let mut head = [0u8; 4];
    let mut f = std::fs::File::open(file)?;
    let n = f.read(&mut head)?;
    drop(f);
    let f = BufReader::new(std::fs::File::open(file)?);
    let reader: Box<dyn Read> = if n >= 2 && head[..2] == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else if n == 4 && head == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(zstd::stream::read::Decoder::new(f)?)
    } else {
        Box::new(f)
    };
    analyse_tar(Capped {
        inner: reader,
        remaining: limit,
        limit,
    })
}

/// Analyse an uncompressed tar stream.
pub fn analyse_tar(reader: impl Read) -> std::io::Result<Fragment> {
    let mut fragment = Fragment {
        analyzer: ANALYZER_VERSION,
        ..Fragment::default()
    };
    let mut archive = tar::Archive::new(reader);
    // Python and npm packages whose metadata leaves the license open, with the license
    // files to read it from, and what each license file of a dist-info or npm package
    // holds: joined once the layer is read (the tar's order is anyone's).
    let mut license_files_wanted: Vec<(String, LicenseFiles)> = Vec::new();
    let mut license_files: BTreeMap<String, Option<String>> = BTreeMap::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.to_string_lossy().into_owned();
        let path = raw
            .trim_start_matches("./")
            .trim_start_matches('/')
            .to_string();
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
        if name == ".wh..wh..opq" {
            fragment.opaque.push(dir.to_string());
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            fragment.whiteouts.push(if dir.is_empty() {
                hidden.to_string()
            } else {
                format!("{dir}/{hidden}")
            });
            continue;
        }
        let header = entry.header();
        let entry_type = header.entry_type();
        if path.is_empty() {
            continue;
        }
        if entry_type.is_dir() {
            fragment
                .tree
                .insert(path.trim_end_matches('/').to_string(), Node::Dir);
            continue;
        }
        if entry_type.is_symlink() || entry_type.is_hard_link() {
            let target = entry
                .link_name()?
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            let node = if entry_type.is_symlink() {
                Node::Symlink { target }
            } else {
                // A hard link names an earlier entry of the same archive.
                let target = target.trim_start_matches("./").trim_start_matches('/');
                fragment.tree.get(target).cloned().unwrap_or(Node::File {
                    exec: false,
                    elf: None,
                    text: None,
                })
            };
            fragment.tree.insert(path, node);
            continue;
        }
        if !entry_type.is_file() {
            continue;
        }
        let size = header.size().unwrap_or(0);
        let executable = header.mode().unwrap_or(0) & 0o111 != 0;
        // The first bytes say whether it is an ELF file or a script.
        let mut head = Vec::with_capacity(4);
        (&mut entry).take(4).read_to_end(&mut head)?;
        let is_elf = head == b"\x7fELF";
        let is_script = head.starts_with(b"#!");
        let kind = interest(&path, executable).filter(|k| match k {
            Interest::DistInfoFile | Interest::NpmLicenseFile => {
                size <= super::license::MAX_LICENSE_FILE as u64
            }
            Interest::Gemspec => size <= MAX_GEMSPEC,
            Interest::Composer => size <= MAX_COMPOSER_INSTALLED,
            _ => true,
        });
        let wants_text = (is_script || text_wanted(&path)) && size <= MAX_TEXT;
        let maybe_uwsgi = size <= MAX_UWSGI_CONFIG && uwsgi_config_candidate(&path);
        let mut bytes = Vec::new();
        if (kind.is_some() || is_elf || wants_text || maybe_uwsgi) && size <= MAX_FILE {
            bytes.reserve(size as usize);
            bytes.extend_from_slice(&head);
            entry.read_to_end(&mut bytes)?;
        }
        let whole = bytes.len() as u64 == size && size > 0;
        fragment.tree.insert(
            path.clone(),
            Node::File {
                exec: executable,
                elf: if is_elf && whole {
                    super::elf::parse(&bytes)
                } else {
                    None
                },
                // Decoded once: a uWSGI candidate is kept by what the decoded text holds.
                text: ((wants_text || maybe_uwsgi) && whole)
                    .then(|| String::from_utf8_lossy(&bytes).into_owned())
                    .filter(|text| wants_text || holds_uwsgi_section(text)),
            },
        );
        let Some(kind) = kind else {
            continue;
        };
        if size > MAX_FILE {
            continue;
        }
        if matches!(kind, Interest::DebianCopyright) {
            let license = if size <= super::license::MAX_COPYRIGHT && whole {
                super::license::debian_copyright(&String::from_utf8_lossy(&bytes))
            } else {
                None
            };
            fragment
                .copyrights
                .insert(path, license.unwrap_or_default());
            continue;
        }
        let text = || String::from_utf8_lossy(&bytes).into_owned();
        let packages = match kind {
            Interest::Dpkg => parse_dpkg(&text()),
            Interest::Apk => parse_apk(&text()),
            Interest::RpmSqlite | Interest::RpmBdb | Interest::RpmNdb => {
                let read = match kind {
                    Interest::RpmSqlite => super::rpmdb::read_rpmdb_sqlite(&bytes),
                    Interest::RpmBdb => super::rpmdb::read_rpmdb_bdb(&bytes),
                    _ => super::rpmdb::read_rpmdb_ndb(&bytes),
                }
                .map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{path} is not a readable RPM database: {e}"),
                    )
                })?;
                let mut owned: BTreeMap<String, Vec<String>> = BTreeMap::new();
                let mut packages = Vec::with_capacity(read.len());
                for rpm in read {
                    owned
                        .entry(rpm.package.name.clone())
                        .or_default()
                        .extend(rpm.files);
                    packages.push(rpm.package);
                }
                packages.sort();
                fragment.rpm_files.insert(path.clone(), owned);
                packages
            }
            Interest::OsRelease => {
                fragment.os = Some(parse_os_release(&text()));
                continue;
            }
            Interest::DebianCopyright => continue,
            Interest::Npm => {
                let found = parse_npm(&text());
                if let Some(wanted) = found
                    .first()
                    .and_then(|p| npm_license_files_wanted(&path, &p.license))
                {
                    license_files_wanted.push((path.clone(), wanted));
                }
                found
            }
            Interest::Python => {
                let text = text();
                let headers = metadata_headers(&text);
                let found = python_package(&headers);
                if found.first().is_some_and(|p| p.license.is_empty()) {
                    license_files_wanted
                        .push((path.clone(), python_license_files(&path, &headers)));
                }
                found
            }
            Interest::DistInfoFile | Interest::NpmLicenseFile => {
                if whole {
                    license_files.insert(path, super::license::license_file(&text()));
                }
                continue;
            }
            Interest::DotNet => parse_deps_json(&text()),
            Interest::Gemspec => parse_gemspec(&text()),
            Interest::Composer => parse_composer_installed(&text()),
            Interest::Jar => parse_jar(path.rsplit('/').next().unwrap_or(&path), &bytes),
            Interest::Binary => {
                if !is_elf {
                    continue;
                }
                let mut found = parse_go_binary(&bytes);
                found.extend(parse_cargo_auditable(&bytes));
                if found.is_empty() {
                    continue;
                }
                found
            }
        };
        fragment.files.insert(path, packages);
    }
    // Packages whose metadata left the license open, with what their license files say.
    let from_files: Vec<(String, String)> = license_files_wanted
        .into_iter()
        .filter_map(|(metadata, wanted)| {
            Some((metadata, license_from_files(&wanted, &license_files)?))
        })
        .collect();
    for (metadata, license) in from_files {
        if let Some(package) = fragment
            .files
            .get_mut(&metadata)
            .and_then(|p| p.first_mut())
        {
            package.license = license;
        }
    }
    fragment.whiteouts.sort();
    fragment.opaque.sort();
    Ok(fragment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uwsgi_configuration_under_other_names_is_kept_by_its_contents() {
        for (path, keep) in [
            ("srv/app/deploy/site.yaml", true),
            ("etc/app/site.json", true),
            ("opt/app/site.xml", true),
            ("usr/share/doc/x/example.json", false),
            ("app/node_modules/x/package.yaml", false),
            ("srv/app/site.js", false),
        ] {
            assert_eq!(uwsgi_config_candidate(path), keep, "{path}");
        }
        for (text, holds) in [
            ("uwsgi:\n  module: app\n", true),
            ("other: 1\nuwsgi :\n  module: app\n", true),
            ("{\"uwsgi\": {\"module\": \"app\"}}", true),
            ("<config><uwsgi id=\"a\"/></config>", true),
            ("  uwsgi: nested\n", false),
            ("uwsgi_version: 2\n", false),
            ("{\"name\": \"uwsgi-tools\"}", false),
        ] {
            assert_eq!(holds_uwsgi_section(text), holds, "{text}");
        }
        let tar = tar_of(&[
            (
                "srv/app/deploy/site.yaml".to_string(),
                b"uwsgi:\n  module: app\n".as_slice(),
            ),
            (
                "srv/app/deploy/other.yaml".to_string(),
                b"name: x\n".as_slice(),
            ),
        ]);
        let fragment = analyse_tar(&tar[..]).unwrap();
        let text = |path: &str| match fragment.tree.get(path) {
            Some(Node::File { text, .. }) => text.clone(),
            other => panic!("{path}: {other:?}"),
        };
        assert_eq!(
            text("srv/app/deploy/site.yaml").as_deref(),
            Some("uwsgi:\n  module: app\n")
        );
        assert_eq!(text("srv/app/deploy/other.yaml"), None);
    }

    #[test]
    fn dpkg_takes_installed_packages_only() {
        let status = "Package: openssl\nStatus: install ok installed\nVersion: 3.0.11-1~deb12u2\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n\nPackage: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9+deb12u4\n";
        let found = parse_dpkg(status);
        let names: Vec<(&str, &str)> = found
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![("openssl", "3.0.11-1~deb12u2"), ("libc6", "2.36-9+deb12u4")]
        );
    }

    #[test]
    fn dpkg_and_apk_sources() {
        let status = "Package: libc6\nStatus: install ok installed\nSource: glibc\nVersion: 2.36-9+deb12u4\nDescription: x\n Source: not-a-field\n\nPackage: libbz2-1.0\nStatus: install ok installed\nSource: bzip2 (1.0.8-5)\nVersion: 1.0.8-5+b1\n\nPackage: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b2\nSource: bash (5.2.15-2)\n\nPackage: openssl\nStatus: install ok installed\nSource: openssl\nVersion: 3.0.11-1\n";
        let found = parse_dpkg(status);
        assert_eq!(
            found.iter().map(|p| p.source_package()).collect::<Vec<_>>(),
            vec![
                ("glibc", "2.36-9+deb12u4"),
                ("bzip2", "1.0.8-5"),
                ("bash", "5.2.15-2"),
                ("openssl", "3.0.11-1")
            ]
        );
        assert_eq!(
            (found[3].source.as_str(), found[3].source_version.as_str()),
            ("", ""),
            "its own source: nothing stored"
        );
        let apk = parse_apk("P:libcrypto3\nV:3.3.2-r0\no:openssl\n\nP:musl\nV:1.2.5-r0\no:musl\n");
        assert_eq!(apk[0].source_package(), ("openssl", "3.3.2-r0"));
        assert!(!apk[1].has_distinct_source());
    }

    #[test]
    fn apk_python_npm_paths_and_os_release() {
        let apk = parse_apk("C:Q1abc\nP:musl\nV:1.2.4-r2\nA:x86_64\n\nP:busybox\nV:1.36.1-r15\n");
        assert_eq!(apk.len(), 2);
        assert_eq!(apk[1].version, "1.36.1-r15");
        let py = parse_python(
            "Metadata-Version: 2.1\nName: Requests_Toolbelt\nVersion: 1.0.0\n\nVersion: nope\n",
        );
        assert_eq!(
            (py[0].name.as_str(), py[0].version.as_str()),
            ("requests-toolbelt", "1.0.0")
        );
        assert!(is_npm_manifest("app/node_modules/express/package.json"));
        assert!(is_npm_manifest("node_modules/@babel/core/package.json"));
        assert!(!is_npm_manifest(
            "app/node_modules/express/lib/package.json"
        ));
        assert!(!is_npm_manifest("app/package.json"));
        let os = parse_os_release(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
        );
        assert_eq!((os.id.as_str(), os.version_id.as_str()), ("debian", "12"));
    }

    /// A zip archive of the given entries, stored (as Spring Boot nests its jars) or
    /// deflated.
    fn zip_of(entries: &[(&str, &[u8])], stored: bool) -> Vec<u8> {
        use std::io::Write;
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut buf);
        let method = if stored {
            zip::CompressionMethod::Stored
        } else {
            zip::CompressionMethod::Deflated
        };
        let options = zip::write::SimpleFileOptions::default().compression_method(method);
        for (name, bytes) in entries {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
        buf.into_inner()
    }

    fn artifact(group: &str, name: &str, version: &str, pom: Option<&str>) -> Vec<u8> {
        let properties = format!("groupId={group}\nartifactId={name}\nversion={version}\n");
        let dir = format!("META-INF/maven/{group}/{name}");
        let (p, x) = (format!("{dir}/pom.properties"), format!("{dir}/pom.xml"));
        let mut entries: Vec<(&str, &[u8])> = vec![
            ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\r\n\r\n"),
            (p.as_str(), properties.as_bytes()),
        ];
        if let Some(pom) = pom {
            entries.push((x.as_str(), pom.as_bytes()));
        }
        zip_of(&entries, false)
    }

    const APACHE_POM: &str = "<project xmlns=\"http://maven.apache.org/POM/4.0.0\"><licenses><license><name>The Apache Software License, Version 2.0</name><url>https://www.apache.org/licenses/LICENSE-2.0.txt</url></license></licenses></project>";

    #[test]
    fn nested_java_archives_are_read_to_their_depth() {
        let lib = artifact("org.apache.logging.log4j", "log4j-core", "2.14.1", None);
        let json = artifact(
            "com.fasterxml.jackson.core",
            "jackson-databind",
            "2.14.0",
            Some(APACHE_POM),
        );
        // Spring Boot: the application's own artifact, its libraries stored under BOOT-INF/lib.
        let own = "groupId=com.example\nartifactId=shop\nversion=1.0.0\n";
        let boot = zip_of(
            &[
                (
                    "META-INF/MANIFEST.MF",
                    b"Main-Class: org.springframework.boot.loader.launch.JarLauncher\r\n",
                ),
                (
                    "META-INF/maven/com.example/shop/pom.properties",
                    own.as_bytes(),
                ),
                ("BOOT-INF/lib/log4j-core-2.14.1.jar", &lib),
                ("BOOT-INF/lib/jackson-databind-2.14.0.jar", &json),
            ],
            true,
        );
        let found = parse_jar("app.jar", &boot);
        let brief: Vec<(&str, &str, &str)> = found
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str(), p.license.as_str()))
            .collect();
        assert_eq!(
            brief,
            vec![
                ("shop", "1.0.0", ""),
                ("jackson-databind", "2.14.0", "Apache-2.0"),
                ("log4j-core", "2.14.1", "")
            ]
        );
        // EAR > WAR > jar is read (depth 3); a jar one level deeper is not.
        let war = zip_of(&[("WEB-INF/lib/log4j-core-2.14.1.jar", &lib)], false);
        let ear = zip_of(&[("shop.war", &war)], false);
        assert_eq!(parse_jar("app.jar", &ear).len(), 1);
        let deeper = zip_of(&[("inner.ear", &ear)], true);
        assert!(parse_jar("app.jar", &deeper).is_empty());
        // Out of budget: the nested archive is not read, the rest still is.
        let mut out = Vec::new();
        let mut budget = 200;
        read_java_archive("app.jar", &boot, 1, &mut budget, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].name, "shop");
        // Not a zip, or a truncated one: nothing, no error. (A stored archive cut short
        // can still show a whole nested jar's own directory, so the deflated EAR is cut.)
        assert!(parse_jar("app.jar", b"PK\x03\x04 not really").is_empty());
        assert!(parse_jar("app.jar", &ear[..ear.len() - 30]).is_empty());
    }

    #[test]
    fn tomcats_jars_are_named_by_their_bundle() {
        let manifest = |symbolic: &str, version: &str| {
            format!(
                "Manifest-Version: 1.0\r\nBundle-License: https://www.apache.org/licenses/LICENSE-2.0.txt\r\nBundle-Name: x\r\nBundle-SymbolicName: {symbolic}\r\nBundle-Version: 10.1.60\r\nExport-Package: org.apache.catalina;uses:=\"jakarta.servlet,jakarta.ser\r\n vlet.descriptor\";version=\"10.1.60\"\r\n{version}Specification-Title: Apache Tomcat\r\n\r\nName: other\r\nImplementation-Version: 1\r\n"
            )
        };
        let jar = |manifest: &str| zip_of(&[("META-INF/MANIFEST.MF", manifest.as_bytes())], false);
        let brief = |jar: &[u8]| -> Vec<(String, String, String, String)> {
            parse_jar("app.jar", jar)
                .into_iter()
                .map(|p| (p.namespace, p.name, p.version, p.license))
                .collect()
        };
        let one = |g: &str, a: &str, v: &str| {
            vec![(g.into(), a.into(), v.into(), "Apache-2.0".to_string())]
        };
        let catalina = jar(&manifest(
            "org.apache.tomcat-catalina",
            "Implementation-Version: 10.1.60\r\n",
        ));
        assert_eq!(
            brief(&catalina),
            one("org.apache.tomcat", "tomcat-catalina", "10.1.60")
        );
        // The API jars name no implementation: the bundle's version.
        let servlet = jar(&manifest(
            "org.apache.tomcat-servlet-api;singleton:=true",
            "",
        ));
        assert_eq!(
            brief(&servlet),
            one("org.apache.tomcat", "tomcat-servlet-api", "10.1.60")
        );
        // Embedded Tomcat in a Spring Boot jar; a milestone's Maven version.
        let core = jar(&manifest(
            "org.apache.tomcat-embed-core",
            "Implementation-Version: 11.0.0-M1\r\n",
        ));
        let el = jar(&manifest(
            "org.apache.tomcat-embed-jasper-el",
            "Implementation-Version: 10.1.60\r\n",
        ));
        let boot = zip_of(
            &[
                ("BOOT-INF/lib/tomcat-embed-core-11.0.0-M1.jar", &core),
                ("BOOT-INF/lib/tomcat-embed-el-10.1.60.jar", &el),
            ],
            true,
        );
        assert_eq!(
            brief(&boot),
            [
                one("org.apache.tomcat.embed", "tomcat-embed-core", "11.0.0-M1"),
                one("org.apache.tomcat.embed", "tomcat-embed-el", "10.1.60")
            ]
            .concat()
        );
        // Other bundles, odd names or versions: not Tomcat's, nothing guessed.
        for (symbolic, version) in [
            ("org.apache.commons.lang3", ""),
            ("org.apache.tomcat-Catalina", ""),
            ("org.apache.tomcat-", ""),
            ("org.apache.tomcatcatalina", ""),
            (
                "org.apache.tomcat-catalina",
                "Implementation-Version: latest\r\n",
            ),
        ] {
            assert!(
                brief(&jar(&manifest(symbolic, version))).is_empty(),
                "{symbolic}"
            );
        }
        // A jar with a `pom.properties` is named by it.
        let with_pom = zip_of(
            &[
                (
                    "META-INF/MANIFEST.MF",
                    manifest("org.apache.tomcat-catalina", "").as_bytes(),
                ),
                (
                    "META-INF/maven/g/a/pom.properties",
                    b"groupId=g\nartifactId=a\nversion=1\n",
                ),
            ],
            false,
        );
        assert_eq!(brief(&with_pom), one("g", "a", "1"));
    }

    #[test]
    fn jars_without_pom_properties_are_named_where_manifest_and_file_name_agree() {
        let named = |file: &str, manifest: &str| {
            manifest_artifact(file, manifest)
                .map(|p| format!("{}:{}@{}", p.namespace, p.name, p.version))
        };
        let sbt = |vendor: &str, title: &str, version: &str| {
            format!(
                "Manifest-Version: 1.0\r\nImplementation-Title: {title}\r\nImplementation-Version: {version}\r\nSpecification-Vendor: x\r\nImplementation-Vendor-Id: {vendor}\r\n\r\nName: other\r\nImplementation-Vendor-Id: org.other\r\n"
            )
        };
        // sbt's default entries: the vendor id is the organisation (group), the title the
        // project's name; a cross-built library's file name carries the Scala version.
        let json4s = sbt("org.json4s", "json4s-core", "3.7.0-M11");
        assert_eq!(
            named("json4s-core_2.12-3.7.0-M11.jar", &json4s).as_deref(),
            Some("org.json4s:json4s-core_2.12@3.7.0-M11")
        );
        assert_eq!(
            named("json4s-core_3-3.7.0-M11.jar", &json4s).as_deref(),
            Some("org.json4s:json4s-core_3@3.7.0-M11")
        );
        let snappy = sbt("org.xerial.snappy", "snappy-java", "1.1.10.5");
        assert_eq!(
            named("snappy-java-1.1.10.5.jar", &snappy).as_deref(),
            Some("org.xerial.snappy:snappy-java@1.1.10.5")
        );
        // The file name must be the title's and the version's: renamed, another version, a
        // suffix that is no Scala version, a title that is not the artifact's.
        for file in [
            "app.jar",
            "snappy-java.jar",
            "snappy-java-1.1.10.4.jar",
            "snappy-java_2.9-1.1.10.5.jar",
            "snappy-java-1.1.10.5-sources.jar",
            "snappy-1.1.10.5.jar",
        ] {
            assert_eq!(named(file, &snappy), None, "{file}");
        }
        assert_eq!(
            named(
                "spire_2.12-0.17.0.jar",
                &sbt("org.typelevel", "core", "0.17.0")
            ),
            None
        );
        // Maven's titles are descriptions; parents write an organisation as the vendor id.
        assert_eq!(
            named(
                "commons-lang-2.6.jar",
                &sbt("commons-lang", "Apache Commons Lang", "2.6")
            ),
            None
        );
        assert_eq!(
            named(
                "commons-cli-1.5.0.jar",
                &sbt("org.apache", "commons-cli", "1.5.0")
            ),
            None
        );
        assert_eq!(
            named(
                "activation-1.1.1.jar",
                &sbt("com.sun", "activation", "1.1.1")
            ),
            None
        );
        // Not Maven ids or versions: nothing.
        assert_eq!(named("a-1.jar", &sbt("org/x", "a", "1")), None);
        assert_eq!(named("a-1.jar", &sbt("nodots", "a", "1")), None);
        assert_eq!(
            named(
                "oro-2.0.8.jar",
                &sbt("org.apache.oro", "oro", "2.0.8 2003-12-28")
            ),
            None
        );

        // Known bundles: by symbolic name, the version the implementation's or the OSGi
        // release; a file name of the artifact with another version refuses it.
        let bundle = |symbolic: &str, version: &str, implementation: Option<&str>| {
            let implementation = implementation
                .map(|v| format!("Implementation-Version: {v}\r\n"))
                .unwrap_or_default();
            format!(
                "Manifest-Version: 1.0\r\nBundle-SymbolicName: {symbolic}\r\nBundle-Version: {version}\r\n{implementation}\r\n"
            )
        };
        let scala = bundle(
            "org.scala-lang.scala-library",
            "2.12.18.v20230518-020143-VFINAL-ceaf7e6",
            None,
        );
        for file in ["scala-library-2.12.18.jar", "scala-library.jar"] {
            assert_eq!(
                named(file, &scala).as_deref(),
                Some("org.scala-lang:scala-library@2.12.18"),
                "{file}"
            );
        }
        // Another file name is refused: forks keep the symbolic name.
        for file in [
            "lib.jar",
            "scala-library-fork-2.12.18.jar",
            "scala-library_2.12.jar",
        ] {
            assert_eq!(named(file, &scala), None, "{file}");
        }
        assert_eq!(named("scala-library-2.13.0.jar", &scala), None);
        assert_eq!(
            named(
                "gson-2.2.4.jar",
                &bundle("com.google.gson;singleton:=true", "2.2.4", None)
            )
            .as_deref(),
            Some("com.google.code.gson:gson@2.2.4")
        );
        assert_eq!(
            named(
                "libthrift-0.12.0.jar",
                &bundle("org.apache.thrift", "0.12.0", Some("0.12.0"))
            )
            .as_deref(),
            Some("org.apache.thrift:libthrift@0.12.0")
        );
        // The implementation's version is Maven's (`3.3`), the bundle's OSGi's (`3.3.0`).
        assert_eq!(
            named(
                "objenesis-3.3.jar",
                &bundle("org.objenesis", "3.3.0", Some("3.3"))
            )
            .as_deref(),
            Some("org.objenesis:objenesis@3.3")
        );
        assert_eq!(
            named(
                "derby-10.14.2.0.jar",
                &bundle("derby", "10.14.2000000.1828579", None)
            )
            .as_deref(),
            Some("org.apache.derby:derby@10.14.2.0")
        );
        assert_eq!(
            named("derby.jar", &bundle("derby", "10.17.1000000.1913217", None)).as_deref(),
            Some("org.apache.derby:derby@10.17.1.0")
        );
        assert_eq!(named("derby.jar", &bundle("derby", "10.x.1", None)), None);
        // ASM as its Gradle build writes it (Jetty's copy); Debian's build says
        // `9.4-SNAPSHOT` in a file named 9.4: the two disagree, nothing is named.
        let asm = |symbolic: &str, version: &str| {
            format!(
                "Manifest-Version: 1.0\r\nImplementation-Title: Tree API of ASM, a very small and fast Java bytecode manipulation framework\r\nImplementation-Version: {version}\r\nBundle-SymbolicName: {symbolic}\r\nBundle-Version: 9.7.1\r\n\r\n"
            )
        };
        assert_eq!(
            named(
                "asm-tree-9.7.1.jar",
                &asm("org.objectweb.asm.tree", "9.7.1")
            )
            .as_deref(),
            Some("org.ow2.asm:asm-tree@9.7.1")
        );
        assert_eq!(
            named(
                "asm-tree-9.4.jar",
                &asm("org.objectweb.asm.tree", "9.4-SNAPSHOT")
            ),
            None
        );
        assert_eq!(
            named("x.jar", &bundle("org.unknown.bundle", "1.0.0", Some("1.0"))),
            None
        );
        assert_eq!(named("xz.jar", &bundle("org.tukaani.xz", "v1", None)), None);
        // A version of bytes that are not UTF-8 (the fuzzer's find: Tomcat's own check let
        // `5\u{FFFD}` through).
        assert_eq!(
            named(
                "x.jar",
                "Bundle-SymbolicName: org.apache.tomcat-e\r\nImplementation-Version: 5\u{FFFD}\u{b}\r\n"
            ),
            None
        );
        // Tomcat's jars answer to their file names too.
        assert_eq!(
            named(
                "tomcat-embed-core-10.1.59.jar",
                &bundle("org.apache.tomcat-embed-core", "10.1.60", Some("10.1.60"))
            ),
            None
        );

        // Spring's Gradle-built jars, their manifests as Spring's builds write them.
        let spring = |title: &str, module: Option<&str>, version: &str| {
            let module = module
                .map(|m| format!("Automatic-Module-Name: {m}\r\n"))
                .unwrap_or_default();
            format!(
                "Manifest-Version: 1.0\r\nImplementation-Title: {title}\r\n{module}Implementation-Version: {version}\r\nCreated-By: 1.8.0_144 (Oracle Corporation)\r\n\r\n"
            )
        };
        let aop = spring("spring-aop", Some("spring.aop"), "5.1.3.RELEASE");
        assert_eq!(
            named("spring-aop-5.1.3.RELEASE.jar", &aop).as_deref(),
            Some("org.springframework:spring-aop@5.1.3.RELEASE")
        );
        // 4.x wrote no module name.
        assert_eq!(
            named(
                "spring-core-4.3.10.RELEASE.jar",
                &spring("spring-core", None, "4.3.10.RELEASE")
            )
            .as_deref(),
            Some("org.springframework:spring-core@4.3.10.RELEASE")
        );
        for (file, manifest) in [
            ("spring-aop.jar", aop.clone()),
            ("spring-aop-5.1.4.RELEASE.jar", aop.clone()),
            ("aop-5.1.3.RELEASE.jar", aop.clone()),
            (
                "spring-aop-5.1.3.RELEASE.jar",
                spring("Spring AOP", Some("spring.aop"), "5.1.3.RELEASE"),
            ),
            (
                "spring-aop-5.1.3.RELEASE.jar",
                spring("spring-aop", Some("org.acme.aop"), "5.1.3.RELEASE"),
            ),
            // Spring Security is another group, and not a Framework module.
            (
                "spring-security-core-6.2.1.jar",
                spring(
                    "spring-security-core",
                    Some("spring.security.core"),
                    "6.2.1",
                ),
            ),
        ] {
            assert_eq!(named(file, &manifest), None, "{file}: {manifest}");
        }
        let starter = spring(
            "Spring Boot Tomcat Starter",
            Some("spring.boot.starter.tomcat"),
            "2.0.2.RELEASE",
        );
        assert_eq!(
            named("spring-boot-starter-tomcat-2.0.2.RELEASE.jar", &starter).as_deref(),
            Some("org.springframework.boot:spring-boot-starter-tomcat@2.0.2.RELEASE")
        );
        assert_eq!(
            named(
                "spring-boot-3.2.4.jar",
                &spring("Spring Boot", Some("spring.boot"), "3.2.4")
            )
            .as_deref(),
            Some("org.springframework.boot:spring-boot@3.2.4")
        );
        for (file, manifest) in [
            ("spring-boot-starter-web-2.0.2.RELEASE.jar", starter.clone()),
            (
                "spring-boot-starter-acme-1.0.jar",
                spring("Acme Starter", Some("spring.boot.starter.acme"), "1.0"),
            ),
            (
                "spring-boot-3.2.4.jar",
                spring("Spring Boot", None, "3.2.4"),
            ),
        ] {
            assert_eq!(named(file, &manifest), None, "{file}: {manifest}");
        }
        // Kotlin's jars as its Gradle build writes them.
        let kotlin = |vendor: &str, title: &str| {
            format!(
                "Manifest-Version: 1.0\r\nImplementation-Vendor: {vendor}\r\nImplementation-Title: {title}\r\nImplementation-Version: 1.9.22\r\nKotlin-Runtime-Component: Main\r\n\r\n"
            )
        };
        let stdlib = kotlin("JetBrains", "kotlin-stdlib");
        for file in ["kotlin-stdlib-1.9.22.jar", "kotlin-stdlib.jar"] {
            assert_eq!(
                named(file, &stdlib).as_deref(),
                Some("org.jetbrains.kotlin:kotlin-stdlib@1.9.22"),
                "{file}"
            );
        }
        for (file, manifest) in [
            ("kotlin-stdlib-1.9.21.jar", stdlib.clone()),
            ("stdlib.jar", stdlib.clone()),
            ("kotlin-stdlib-1.9.22.jar", kotlin("Acme", "kotlin-stdlib")),
            (
                "kotlinx-coroutines-core-1.9.22.jar",
                kotlin("JetBrains", "kotlinx-coroutines-core"),
            ),
        ] {
            assert_eq!(named(file, &manifest), None, "{file}: {manifest}");
        }
        // Nebula's coordinates in the title.
        let micrometer = "Manifest-Version: 1.0\r\nImplementation-Title: io.micrometer#micrometer-commons;1.16.5\r\nImplementation-Version: 1.16.5\r\nBundle-SymbolicName: io.micrometer.micrometer-commons\r\nAutomatic-Module-Name: micrometer.commons\r\n\r\n";
        for file in ["micrometer-commons-1.16.5.jar", "lib.jar"] {
            assert_eq!(
                named(file, micrometer).as_deref(),
                Some("io.micrometer:micrometer-commons@1.16.5"),
                "{file}"
            );
        }
        assert_eq!(named("micrometer-commons-1.16.4.jar", micrometer), None);
        assert_eq!(
            named(
                "x.jar",
                &micrometer.replace(
                    "Implementation-Version: 1.16.5",
                    "Implementation-Version: 1.16.6"
                )
            ),
            None
        );
        assert_eq!(
            named(
                "x.jar",
                &micrometer.replace("1.16.5\r\nImplementation-Version", "1.16 5\r\nX")
            ),
            None
        );

        // In an application's jar, a nested jar is named by its own file name; a
        // `pom.properties` still wins over the manifest.
        let inner = zip_of(&[("META-INF/MANIFEST.MF", snappy.as_bytes())], false);
        let boot = zip_of(
            &[
                ("BOOT-INF/lib/snappy-java-1.1.10.5.jar", &inner),
                ("BOOT-INF/lib/renamed.jar", &inner),
            ],
            true,
        );
        let found: Vec<String> = parse_jar("app.jar", &boot)
            .iter()
            .map(|p| format!("{}:{}@{}", p.namespace, p.name, p.version))
            .collect();
        assert_eq!(found, ["org.xerial.snappy:snappy-java@1.1.10.5"]);
        let with_pom = zip_of(
            &[
                ("META-INF/MANIFEST.MF", snappy.as_bytes()),
                (
                    "META-INF/maven/g/a/pom.properties",
                    b"groupId=g\nartifactId=a\nversion=1\n",
                ),
            ],
            false,
        );
        assert_eq!(
            parse_jar("snappy-java-1.1.10.5.jar", &with_pom)[0].name,
            "a"
        );
    }

    #[test]
    fn a_manifest_speaks_for_an_archive_of_one_artifact_only() {
        let manifest: &[u8] = b"Manifest-Version: 1.0\r\nBundle-License: https://www.apache.org/licenses/LICENSE-2.0.tx\r\n t\r\nBundle-Version: 1\r\n\r\n";
        let one = zip_of(
            &[
                ("META-INF/MANIFEST.MF", manifest),
                (
                    "META-INF/maven/g/a/pom.properties",
                    b"groupId=g\nartifactId=a\nversion=1\n",
                ),
            ],
            false,
        );
        assert_eq!(parse_jar("app.jar", &one)[0].license, "Apache-2.0");
        // A shaded jar: two artifacts, the manifest is the outer one's: not known for both.
        let shaded = zip_of(
            &[
                ("META-INF/MANIFEST.MF", manifest),
                (
                    "META-INF/maven/g/a/pom.properties",
                    b"groupId=g\nartifactId=a\nversion=1\n",
                ),
                (
                    "META-INF/maven/g/b/pom.properties",
                    b"groupId=g\nartifactId=b\nversion=2\n",
                ),
            ],
            false,
        );
        assert!(
            parse_jar("app.jar", &shaded)
                .iter()
                .all(|p| p.license.is_empty())
        );
    }

    #[test]
    fn python_license_files_fill_in_what_the_metadata_leaves_open() {
        let apache = spdx::text::LICENSE_TEXTS
            .iter()
            .find(|(id, _)| *id == "Apache-2.0")
            .unwrap()
            .1;
        let site = "usr/lib/python3/site-packages";
        let metadata = |name: &str, files: &[&str]| {
            let mut m = format!(
                "Metadata-Version: 2.4\nName: {name}\nVersion: 1.0\nClassifier: License :: OSI Approved :: Apache Software License\n"
            );
            for f in files {
                m.push_str(&format!("License-File: {f}\n"));
            }
            m + "\nThe description, with License-File: nothing\n"
        };
        let (a, b, c, d) = (
            metadata("arrowish", &["LICENSE", "NOTICE"]),
            metadata("oldstyle", &["LICENSE.txt"]),
            metadata("unknown", &["LICENSE", "LICENSE.BSD"]),
            metadata("missing", &["LICENSE"]),
        );
        // The license files come before and after their METADATA in the tar.
        let layer = tar_of(&[
            (
                format!("{site}/arrowish-1.0.dist-info/licenses/LICENSE"),
                apache.as_bytes(),
            ),
            (
                format!("{site}/arrowish-1.0.dist-info/licenses/NOTICE"),
                b"Copyright someone",
            ),
            (
                format!("{site}/arrowish-1.0.dist-info/METADATA"),
                a.as_bytes(),
            ),
            (
                format!("{site}/oldstyle-1.0.dist-info/METADATA"),
                b.as_bytes(),
            ),
            (
                format!("{site}/oldstyle-1.0.dist-info/LICENSE.txt"),
                apache.as_bytes(),
            ),
            (
                format!("{site}/unknown-1.0.dist-info/METADATA"),
                c.as_bytes(),
            ),
            (
                format!("{site}/unknown-1.0.dist-info/licenses/LICENSE"),
                apache.as_bytes(),
            ),
            (
                format!("{site}/unknown-1.0.dist-info/licenses/LICENSE.BSD"),
                b"Redistribution and use, with changes",
            ),
            (
                format!("{site}/missing-1.0.dist-info/METADATA"),
                d.as_bytes(),
            ),
        ]);
        let fragment = analyse_tar(layer.as_slice()).unwrap();
        let license = |name: &str| license_of(&fragment, name);
        assert_eq!(
            license("arrowish"),
            "Apache-2.0",
            "NOTICE is not a license file"
        );
        assert_eq!(license("oldstyle"), "Apache-2.0", "in the dist-info itself");
        assert_eq!(license("unknown"), "", "one file not known: not known");
        assert_eq!(license("missing"), "", "a listed file that is not there");
    }

    #[test]
    fn npm_license_files_fill_in_what_package_json_leaves_open() {
        let text = |id: &str| {
            spdx::text::LICENSE_TEXTS
                .iter()
                .find(|(i, _)| *i == id)
                .unwrap()
                .1
        };
        let (mit, isc) = (text("MIT"), text("ISC"));
        let nm = "app/node_modules";
        let manifest = |name: &str, license: &str| {
            format!(r#"{{"name": "{name}", "version": "1.0.0"{license}}}"#)
        };
        let files: Vec<(String, Vec<u8>)> = vec![
            // No license field: every license file of the directory, known.
            (format!("{nm}/bare/LICENSE"), mit.into()),
            (
                format!("{nm}/bare/package.json"),
                manifest("bare", "").into(),
            ),
            // Two files, both known: both apply.
            (
                format!("{nm}/@scope/two/package.json"),
                manifest("@scope/two", "").into(),
            ),
            (format!("{nm}/@scope/two/LICENSE-MIT"), mit.into()),
            (format!("{nm}/@scope/two/license.isc.txt"), isc.into()),
            // Two files, one not known: not known.
            (
                format!("{nm}/mixed/package.json"),
                manifest("mixed", "").into(),
            ),
            (format!("{nm}/mixed/LICENSE"), mit.into()),
            (
                format!("{nm}/mixed/COPYING"),
                b"All rights reserved.".to_vec(),
            ),
            // SEE LICENSE IN a file that holds a known text.
            (
                format!("{nm}/seen/package.json"),
                manifest("seen", r#", "license": "SEE LICENSE IN ./LICENCE.md""#).into(),
            ),
            (format!("{nm}/seen/LICENCE.md"), isc.into()),
            (format!("{nm}/seen/LICENSE"), mit.into()),
            // SEE LICENSE IN a file of other terms, or outside the package: kept as given.
            (
                format!("{nm}/eula/package.json"),
                manifest("eula", r#", "license": "SEE LICENSE IN LICENSE""#).into(),
            ),
            (
                format!("{nm}/eula/LICENSE"),
                b"Proprietary. Ask us.".to_vec(),
            ),
            (
                format!("{nm}/escape/package.json"),
                manifest("escape", r#", "license": "SEE LICENSE IN ../bare/LICENSE""#).into(),
            ),
            // A declared license wins over the file; a common name reads as its id.
            (
                format!("{nm}/named/package.json"),
                manifest("named", r#", "license": "Apache 2.0""#).into(),
            ),
            (format!("{nm}/named/LICENSE"), mit.into()),
            // A nested package's file is its own, not its parent's.
            (
                format!("{nm}/parent/package.json"),
                manifest("parent", "").into(),
            ),
            (
                format!("{nm}/parent/node_modules/child/package.json"),
                manifest("child", "").into(),
            ),
            (
                format!("{nm}/parent/node_modules/child/LICENSE"),
                mit.into(),
            ),
            // A license file of a directory that is not a package: not read.
            (format!("{nm}/bare/lib/LICENSE"), isc.into()),
        ];
        let files: Vec<(String, &[u8])> = files
            .iter()
            .map(|(p, b)| (p.clone(), b.as_slice()))
            .collect();
        let fragment = analyse_tar(tar_of(&files).as_slice()).unwrap();
        let license = |name: &str| license_of(&fragment, name);
        assert_eq!(license("bare"), "MIT");
        assert_eq!(license("@scope/two"), "MIT AND ISC");
        assert_eq!(license("mixed"), "");
        assert_eq!(
            license("seen"),
            "ISC",
            "the file it names, not the other one"
        );
        assert_eq!(license("eula"), "SEE LICENSE IN LICENSE");
        assert_eq!(license("escape"), "SEE LICENSE IN ../bare/LICENSE");
        assert_eq!(license("named"), "Apache-2.0");
        assert_eq!(license("parent"), "");
        assert_eq!(license("child"), "MIT");
        assert!(!is_npm_license_file("app/node_modules/bare/lib/LICENSE"));
        assert!(is_npm_license_file("node_modules/@s/p/LICENSE.md"));
        assert!(!is_npm_license_file("app/LICENSE"));
    }

    /// The declared license of the package named `name` in `fragment`.
    fn license_of(fragment: &Fragment, name: &str) -> String {
        fragment
            .files
            .values()
            .flatten()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{name} found"))
            .license
            .clone()
    }

    fn tar_of(files: &[(String, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, bytes) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, path, *bytes).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn dotnet_and_go_build_info() {
        let deps = r#"{"libraries": {"Newtonsoft.Json/13.0.1": {"type": "package"}, "MyApp/1.0.0": {"type": "project"}}}"#;
        let found = parse_deps_json(deps);
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].name.as_str(), found[0].version.as_str()),
            ("Newtonsoft.Json", "13.0.1")
        );
        // A Go 1.18+ build info blob inside some bytes.
        let modinfo = "path\texample.com/app\nmod\texample.com/app\t(devel)\t\ndep\tgolang.org/x/net\tv0.17.0\th1:x\ndep\tgithub.com/old/lib\tv1.0.0\th1:y\n=>\tgithub.com/new/lib\tv1.2.0\th1:z\n";
        let mut blob = b"\x7fELF....padding".to_vec();
        let mut header = b"\xff Go buildinf:".to_vec();
        header.push(8);
        header.push(2);
        header.resize(32, 0);
        blob.extend(header);
        for s in ["go1.22.1", modinfo] {
            blob.push(s.len() as u8 & 0x7f | 0x80);
            blob.push((s.len() >> 7) as u8);
            blob.extend(s.as_bytes());
        }
        let found = parse_go_binary(&blob);
        let mods: Vec<(&str, &str)> = found
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(
            mods,
            vec![
                ("stdlib", "v1.22.1"),
                ("golang.org/x/net", "v0.17.0"),
                ("github.com/new/lib", "v1.2.0")
            ]
        );
        for (go, stdlib) in [
            ("go1.21.3", Some("v1.21.3")),
            ("go1.20", Some("v1.20.0")),
            ("go1.22rc1", Some("v1.22.0-rc.1")),
            ("go1.21beta2", Some("v1.21.0-beta.2")),
            ("go1.21.5 X:boringcrypto", Some("v1.21.5")),
            ("devel go1.22-abc123 Tue Jan 2 2024", None),
            ("go1", None),
            ("go1.21.x", None),
        ] {
            assert_eq!(go_stdlib_version(go).as_deref(), stdlib, "{go}");
        }
    }
}
