//! The scanner on a root file system made of real Debian packages (downloaded once by
//! scripts/services.sh into .test-services/debs): binary packages are matched by their
//! source package (libc6 → glibc, libssl3 → openssl, libbz2-1.0 → bzip2 at its own source
//! version), the fix of the range holding the version is reported, both SBOM formats pass
//! the official validators, SBOM objects are content-addressed, and our package URLs are
//! what the reference purl implementation makes of them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use stellaops_scanner::analyze::{FoundPackage, OsRelease};
use stellaops_scanner::{Policy, purl_of};
use stellaops_store::s3::{S3Settings, client};
use stellaops_testing::debian::{Deb, deb_fields, rootfs_layer};
use stellaops_testing::oci;
use stellaops_workers::registry::{Credentials, RegistryClient};
use stellaops_workers::scan::{Requester, ScanJob, scan};

use crate::scan::{ingest, osv};

/// Run a Python snippet of the test venv with `input` as its first argument's file.
fn python(script: &str, input: &[u8]) -> (bool, String) {
    let python = std::env::var("STELLAOPS_TEST_PYTHON").expect("set by scripts/services.sh");
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let file = std::env::temp_dir().join(format!("stellaops-py-{}-{n}", std::process::id()));
    std::fs::write(&file, input).unwrap();
    let out = Command::new(python)
        .args(["-c", script])
        .arg(&file)
        .output()
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The SPDX project's validator (`pyspdxtools -i FILE`, spdx-tools): exits non-zero and
/// names the issues when the document is invalid.
pub(crate) fn pyspdxtools(document: &[u8]) -> (bool, String) {
    let python = std::env::var("STELLAOPS_TEST_PYTHON").expect("set by scripts/services.sh");
    let tool = Path::new(&python).with_file_name("pyspdxtools");
    // One file per call: tests run side by side in this process.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let file = std::env::temp_dir().join(format!("stellaops-spdx-{}-{n}.json", std::process::id()));
    std::fs::write(&file, document).unwrap();
    let out = Command::new(tool).arg("-i").arg(&file).output().unwrap();
    std::fs::remove_file(&file).unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// CycloneDX 1.6 JSON schema validation (strict) by cyclonedx-python-lib.
pub(crate) fn cyclonedx_valid(document: &[u8]) -> (bool, String) {
    python(
        r#"import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())
if error is not None:
    print(str(error)[:2000])
    sys.exit(1)
"#,
        document,
    )
}

async fn get(s3: &aws_sdk_s3::Client, bucket: &str, uri: &str) -> Vec<u8> {
    assert!(
        uri.starts_with(&format!("s3://{bucket}/")),
        "{uri} is outside {bucket}"
    );
    crate::scan::read_uri(s3, uri).await
}

fn sha256(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
    )
}

#[tokio::test]
async fn real_debian_packages_are_matched_by_their_source_packages() {
    let Some(debs_dir) = stellaops_testing::service("STELLAOPS_TEST_DEBS") else {
        return;
    };
    let Some(registry) = stellaops_testing::service("STELLAOPS_TEST_REGISTRY") else {
        return;
    };
    let Some(endpoint) = stellaops_testing::service("STELLAOPS_TEST_S3_ENDPOINT") else {
        return;
    };
    let Some(pool) =
        stellaops_testing::migrated_database("scan_debian", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&debs_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort();
    let fields: Vec<Deb> = debs.iter().map(|d| deb_fields(d)).collect();
    let by_name = |name: &str| {
        fields
            .iter()
            .find(|d| d.package == name)
            .unwrap_or_else(|| panic!("{name} is among the downloaded packages"))
    };
    let (libc6, libssl3, libsystemd0, libbz2) = (
        by_name("libc6"),
        by_name("libssl3"),
        by_name("libsystemd0"),
        by_name("libbz2-1.0"),
    );
    assert_eq!(
        (libc6.source.as_str(), libssl3.source.as_str()),
        ("glibc", "openssl")
    );
    assert_ne!(
        libbz2.version, libbz2.source_version,
        "libbz2-1.0 is a binNMU: its source version differs"
    );

    // Advisories as Debian publishes them: source package names, source versions.
    let above = |v: &str| format!("{v}+stellaops1");
    ingest(
        &pool,
        vec![
            osv(
                "DSA-T-GLIBC",
                "Debian:12",
                "glibc",
                json!([{"introduced": "0"}, {"fixed": above(&libc6.source_version)}]),
                "high",
            ),
            // Two ranges: the installed version lies in the second; its fix is reported.
            serde_json::to_vec(&json!({
                "id": "DSA-T-OPENSSL", "modified": "2024-06-01T00:00:00Z",
                "affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl",
                                          "purl": "pkg:deb/debian/openssl?arch=source"},
                              "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0.0"}]},
                                         {"type": "ECOSYSTEM", "events": [{"introduced": "3.0.0"}, {"fixed": above(&libssl3.source_version)}]}]}],
                "database_specific": {"severity": "critical"}
            }))
            .unwrap(),
            // Fixed in exactly the installed version: not affected.
            osv(
                "DSA-T-SYSTEMD",
                "Debian:12",
                "systemd",
                json!([{"introduced": "0"}, {"fixed": libsystemd0.source_version}]),
                "high",
            ),
            // The source version is the last affected one; the binNMU's binary version is
            // above it, so only a match at the source version finds this.
            osv(
                "DSA-T-BZIP2",
                "Debian:12",
                "bzip2",
                json!([{"introduced": "0"}, {"last_affected": libbz2.source_version}]),
                "medium",
            ),
            // A binary package name is no Debian source package: never looked up.
            osv(
                "DSA-T-LIBC6",
                "Debian:12",
                "libc6",
                json!([{"introduced": "0"}, {"fixed": "99"}]),
                "critical",
            ),
            // Another release.
            osv(
                "DSA-T-GLIBC11",
                "Debian:11",
                "glibc",
                json!([{"introduced": "0"}, {"fixed": "99"}]),
                "critical",
            ),
        ],
    )
    .await;

    let work = std::env::temp_dir().join(format!("stellaops-debian-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let layer = rootfs_layer(&debs, &work);
    let dir = work.join("layout");
    let built = oci::write_layout(&dir, &[layer], "v1");
    oci::push(&dir, "v1", &registry, "stellaops-it/debian");
    std::fs::remove_dir_all(&dir).unwrap();

    let s3 = client(&S3Settings {
        endpoint: Some(endpoint),
        region: None,
        force_path_style: true,
    })
    .await;
    let bucket = format!("scan-debian-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let registry_client = RegistryClient::new(Credentials::default(), vec![]).unwrap();
    let scratch = work.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let job = ScanJob {
        signer: None,
        registry: &registry_client,
        s3: &s3,
        bucket: &bucket,
        pool: &pool,
        platform: "linux/amd64",
        policy: Policy {
            fail_on: "critical".into(),
            warn_on: Some("medium".into()),
            ignore_unfixed: true,
            ..Default::default()
        },
        requester: Requester::default(),
        spdx: true,
        scratch: &scratch,
        force: true,
    };
    let image = format!("{registry}/stellaops-it/debian:v1");
    let summary = scan(&job, &image).await.unwrap();
    assert_eq!(summary.image_digest, built.manifest_digest);
    assert_eq!(summary.components, fields.len() as i64);

    // The binary package is the affected component; the fix is the source's.
    let purl = |d: &Deb| {
        let upstream = if d.source == d.package {
            String::new()
        } else if d.source_version == d.version {
            format!("&upstream={}", d.source)
        } else {
            format!(
                "&upstream={}%40{}",
                d.source,
                d.source_version.replace('+', "%2B")
            )
        };
        format!(
            "pkg:deb/debian/{}@{}?distro=debian-12{upstream}",
            d.package,
            d.version.replace('+', "%2B")
        )
    };
    let findings: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT vuln_id, purl, fixed_version FROM scan_findings WHERE scan_id = $1 ORDER BY vuln_id",
    )
    .bind(summary.scan_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        findings,
        vec![
            ("DSA-T-BZIP2".to_string(), purl(libbz2), None),
            (
                "DSA-T-GLIBC".to_string(),
                purl(libc6),
                Some(above(&libc6.source_version))
            ),
            (
                "DSA-T-OPENSSL".to_string(),
                purl(libssl3),
                Some(above(&libssl3.source_version))
            ),
        ]
    );
    // ignoreUnfixed: the critical openssl finding has a fix and fails the image; the
    // unfixed bzip2 one does not count.
    assert_eq!(summary.verdict, "Fail");

    // The CycloneDX SBOM carries the source as pedigree and properties, and is valid.
    let cdx_bytes = get(&s3, &bucket, &summary.sbom_uri).await;
    assert_eq!(sha256(&cdx_bytes), summary.sbom_sha256);
    let cdx: Value = serde_json::from_slice(&cdx_bytes).unwrap();
    let component = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "libbz2-1.0")
        .unwrap();
    assert_eq!(component["purl"], purl(libbz2));
    assert_eq!(
        component["pedigree"]["ancestors"][0],
        json!({"type": "library", "name": "bzip2", "version": libbz2.source_version,
               "purl": format!("pkg:deb/debian/bzip2@{}?arch=source&distro=debian-12", libbz2.source_version.replace('+', "%2B"))})
    );
    assert!(
        component["properties"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "stellaops:source.name", "value": "bzip2"}))
    );
    assert_eq!(
        cdx["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "libssl3")
            .unwrap()["licenses"],
        json!([{"expression": "Apache-2.0 AND (LicenseRef-Artistic OR GPL-1.0-or-later)"}])
    );
    let (ok, report) = cyclonedx_valid(&cdx_bytes);
    assert!(
        ok,
        "cyclonedx-python-lib rejects our CycloneDX SBOM: {report}"
    );
    // The validator does reject what the schema forbids.
    let mut broken = cdx.clone();
    broken["components"][0]["type"] = json!("shared-object");
    let (ok, _) = cyclonedx_valid(&serde_json::to_vec(&broken).unwrap());
    assert!(!ok, "a component type outside the schema is rejected");

    // The SPDX document: DESCRIBES the image, which CONTAINS every package; sourceInfo
    // names the source; the SPDX tools accept it, and reject it without the relationships.
    let spdx_uri = summary.sbom_uri.replace(".cdx.json", ".spdx.json");
    let spdx_bytes = get(&s3, &bucket, &spdx_uri).await;
    let spdx: Value = serde_json::from_slice(&spdx_bytes).unwrap();
    let relationships = spdx["relationships"].as_array().unwrap();
    assert!(
        relationships.contains(&json!({"spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES", "relatedSpdxElement": "SPDXRef-Image"}))
    );
    let contained = relationships
        .iter()
        .filter(|r| r["relationshipType"] == "CONTAINS" && r["spdxElementId"] == "SPDXRef-Image")
        .count();
    assert_eq!(contained, fields.len());
    let libc = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "libc6")
        .unwrap();
    assert_eq!(
        libc["sourceInfo"],
        format!("built package from: glibc {}", libc6.source_version)
    );
    // Licenses from the packages' machine-readable copyright files are in the document
    // the validator checks (glibc's copyright is not machine-readable: not known).
    assert_eq!(libc["licenseDeclared"], "NOASSERTION");
    let libssl = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "libssl3")
        .unwrap();
    assert_eq!(
        libssl["licenseDeclared"],
        "Apache-2.0 AND (LicenseRef-Artistic OR GPL-1.0-or-later)"
    );
    assert!(
        spdx["hasExtractedLicensingInfos"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["licenseId"] == "LicenseRef-Artistic")
    );
    let (ok, report) = pyspdxtools(&spdx_bytes);
    assert!(ok, "pyspdxtools rejects our SPDX document: {report}");
    let mut bare = spdx.clone();
    bare.as_object_mut().unwrap().remove("relationships");
    let (ok, report) = pyspdxtools(&serde_json::to_vec(&bare).unwrap());
    assert!(
        !ok && report.contains("DESCRIBES"),
        "without relationships the SPDX tools reject it: {report}"
    );

    // A forced rescan of the same digest through another reference writes another SBOM
    // (the reference is in it) under its own key: every stored sbom_sha256 still matches
    // the object its result points to, the first one untouched.
    let by_digest = format!("{registry}/stellaops-it/debian@{}", built.manifest_digest);
    let second = scan(&job, &by_digest).await.unwrap();
    assert_ne!(second.sbom_sha256, summary.sbom_sha256);
    assert_ne!(second.sbom_uri, summary.sbom_uri);
    let stored: Vec<(String, String)> = sqlx::query_as(
        "SELECT sbom_uri, sbom_sha256 FROM scan_results WHERE image_digest = $1 ORDER BY id",
    )
    .bind(&built.manifest_digest)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(stored.len(), 2);
    for (uri, sha) in &stored {
        assert_eq!(&sha256(&get(&s3, &bucket, uri).await), sha, "{uri}");
    }
    std::fs::remove_dir_all(&work).unwrap();
}

/// Our package URLs for a sample of every ecosystem, checked with packageurl-python (the
/// reference implementation): parsing ours and printing it again gives ours back (so it is
/// canonical), and building from the same components gives ours too.
#[test]
fn package_urls_are_canonical_for_the_reference_implementation() {
    if stellaops_testing::service("STELLAOPS_TEST_PYTHON").is_none() {
        return;
    }
    let debian = OsRelease {
        id: "debian".into(),
        version_id: "12".into(),
        pretty_name: String::new(),
    };
    let alpine = OsRelease {
        id: "alpine".into(),
        version_id: "3.20.3".into(),
        pretty_name: String::new(),
    };
    let rhel = OsRelease {
        id: "rhel".into(),
        version_id: "9.4".into(),
        pretty_name: String::new(),
    };
    let with_source = |name: &str, version: &str, source: &str, source_version: &str| {
        let mut p = FoundPackage::new("deb", "", name, version);
        p.source = source.into();
        p.source_version = source_version.into();
        p
    };
    let mut openssl_libs = FoundPackage::new("rpm", "x86_64", "openssl-libs", "1:3.0.7-27.el9");
    openssl_libs.source = "openssl".into();
    // (package, os, the type's components as packageurl-python takes them)
    let samples: Vec<(FoundPackage, Option<&OsRelease>, Value)> = vec![
        (
            with_source("libc6", "2.36-9+deb12u4", "glibc", ""),
            Some(&debian),
            json!({"type": "deb", "namespace": "debian", "name": "libc6", "version": "2.36-9+deb12u4",
                   "qualifiers": {"distro": "debian-12", "upstream": "glibc"}}),
        ),
        (
            with_source("libbz2-1.0", "1.0.8-5+b1", "bzip2", "1.0.8-5"),
            Some(&debian),
            json!({"type": "deb", "namespace": "debian", "name": "libbz2-1.0", "version": "1.0.8-5+b1",
                   "qualifiers": {"distro": "debian-12", "upstream": "bzip2@1.0.8-5"}}),
        ),
        (
            FoundPackage::new("deb", "", "libstdc++6", "1:12.2.0-14"),
            Some(&debian),
            json!({"type": "deb", "namespace": "debian", "name": "libstdc++6", "version": "1:12.2.0-14",
                   "qualifiers": {"distro": "debian-12"}}),
        ),
        (
            FoundPackage::new("apk", "", "libcrypto3", "3.3.2-r0"),
            Some(&alpine),
            json!({"type": "apk", "namespace": "alpine", "name": "libcrypto3", "version": "3.3.2-r0",
                   "qualifiers": {"distro": "alpine-3.20"}}),
        ),
        (
            openssl_libs,
            Some(&rhel),
            json!({"type": "rpm", "namespace": "redhat", "name": "openssl-libs", "version": "3.0.7-27.el9",
                   "qualifiers": {"arch": "x86_64", "distro": "rhel-9", "epoch": "1"}}),
        ),
        (
            FoundPackage::new("npm", "", "@babel/core", "7.24.0"),
            None,
            json!({"type": "npm", "namespace": "@babel", "name": "core", "version": "7.24.0"}),
        ),
        (
            FoundPackage::new("npm", "", "express", "5.0.0-beta.1"),
            None,
            json!({"type": "npm", "name": "express", "version": "5.0.0-beta.1"}),
        ),
        (
            FoundPackage::new("pypi", "", "zope.interface", "6.0+local.1"),
            None,
            json!({"type": "pypi", "name": "zope.interface", "version": "6.0+local.1"}),
        ),
        (
            FoundPackage::new("pypi", "", "requests-toolbelt", "1.0.0"),
            None,
            json!({"type": "pypi", "name": "requests-toolbelt", "version": "1.0.0"}),
        ),
        (
            FoundPackage::new("maven", "org.apache.logging.log4j", "log4j-core", "2.14.1"),
            None,
            json!({"type": "maven", "namespace": "org.apache.logging.log4j", "name": "log4j-core", "version": "2.14.1"}),
        ),
        (
            FoundPackage::new("nuget", "", "Newtonsoft.Json", "13.0.1"),
            None,
            json!({"type": "nuget", "name": "Newtonsoft.Json", "version": "13.0.1"}),
        ),
        (
            FoundPackage::new("golang", "", "golang.org/x/net", "v0.17.0"),
            None,
            json!({"type": "golang", "namespace": "golang.org/x", "name": "net", "version": "v0.17.0"}),
        ),
        (
            FoundPackage::new(
                "golang",
                "",
                "github.com/go-openapi/jsonpointer",
                "v0.0.0-20240101000000-abcdef012345+incompatible",
            ),
            None,
            json!({"type": "golang", "namespace": "github.com/go-openapi", "name": "jsonpointer",
                   "version": "v0.0.0-20240101000000-abcdef012345+incompatible"}),
        ),
        (
            FoundPackage::new("cargo", "", "serde_json", "1.0.117"),
            None,
            json!({"type": "cargo", "name": "serde_json", "version": "1.0.117"}),
        ),
        (
            FoundPackage::new("gem", "", "rack", "2.2.22"),
            None,
            json!({"type": "gem", "name": "rack", "version": "2.2.22"}),
        ),
        (
            FoundPackage::new("gem", "x86_64-linux", "nokogiri", "1.15.4"),
            None,
            json!({"type": "gem", "name": "nokogiri", "version": "1.15.4",
                   "qualifiers": {"platform": "x86_64-linux"}}),
        ),
        (
            FoundPackage::new("gem", "", "rails", "7.1.0.beta1"),
            None,
            json!({"type": "gem", "name": "rails", "version": "7.1.0.beta1"}),
        ),
        (
            FoundPackage::new("composer", "symfony", "http-kernel", "v5.4.45"),
            None,
            json!({"type": "composer", "namespace": "symfony", "name": "http-kernel", "version": "v5.4.45"}),
        ),
    ];
    let cases: Vec<Value> = samples
        .iter()
        .map(|(p, os, parts)| {
            let (purl, _) = purl_of(p, *os);
            json!({"ours": purl, "parts": parts})
        })
        .collect();
    let (ok, report) = python(
        r#"import json, sys
from packageurl import PackageURL
bad = []
for case in json.load(open(sys.argv[1])):
    ours, parts = case["ours"], case["parts"]
    again = PackageURL.from_string(ours).to_string()
    built = PackageURL(**parts).to_string()
    if again != ours or built != ours:
        bad.append(f"ours {ours}\n  reparsed {again}\n  built    {built}")
print("\n".join(bad))
sys.exit(1 if bad else 0)
"#,
        &serde_json::to_vec(&cases).unwrap(),
    );
    assert!(ok, "not canonical for packageurl-python:\n{report}");
    assert_eq!(cases.len(), 18);
}

/// A layer of `files` (path, contents, mode), as a build writes them.
fn tar_with_modes(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(*mode);
        header.set_mtime(0);
        header.set_cksum();
        builder.append_data(&mut header, path, *contents).unwrap();
    }
    builder.into_inner().unwrap()
}

/// What the host's binutils say an ELF file needs (`readelf -d`): the reference our
/// `DT_NEEDED` reading must agree with.
fn readelf_needed(file: &Path) -> Vec<String> {
    let out = Command::new("readelf")
        .args(["-d", "-W"])
        .arg(file)
        .output()
        .expect("readelf runs");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split('[').nth(1)?.trim_end_matches(']').to_string()))
        .collect()
}

/// The sonames the image's own dynamic loader loads for `program` of the unpacked root
/// `root` (`ld.so --list`, with the root's library directories), when it can run here.
fn loader_list(root: &Path, program: &str) -> Option<BTreeSet<String>> {
    let loader = root.join("lib64/ld-linux-x86-64.so.2");
    let library_path = ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"]
        .map(|d| root.join(d).display().to_string())
        .join(":");
    let out = Command::new(&loader)
        .args(["--inhibit-cache", "--library-path", &library_path, "--list"])
        .arg(root.join(program.trim_start_matches('/')))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| {
                let name = l.split_whitespace().next()?;
                let name = name.rsplit('/').next()?;
                (!name.starts_with("linux-vdso")).then(|| name.to_string())
            })
            .collect(),
    )
}

/// The Usage view on real inputs: a root file system of real Debian packages whose
/// entrypoint is a shell script that execs `bash` (closure: libtinfo6, libc6 through
/// `DT_NEEDED`, `ld.so.conf.d` and the interpreter), cross-checked against binutils and the
/// image's own `ld.so --list`; a Python app and a Node app layout on the same base; the
/// `used_by_entrypoint` column, the CycloneDX property, the Usage SBOM beside the inventory,
/// the evaluator's `usedByEntrypoint` matcher and `scope: usage`.
#[tokio::test]
async fn the_usage_view_of_real_debian_images() {
    let Some(debs_dir) = stellaops_testing::service("STELLAOPS_TEST_DEBS") else {
        return;
    };
    let Some(registry) = stellaops_testing::service("STELLAOPS_TEST_REGISTRY") else {
        return;
    };
    let Some(endpoint) = stellaops_testing::service("STELLAOPS_TEST_S3_ENDPOINT") else {
        return;
    };
    let Some(pool) =
        stellaops_testing::migrated_database("scan_usage", &stellaops_store::MIGRATOR).await
    else {
        return;
    };
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&debs_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort();
    let names: BTreeSet<String> = debs.iter().map(|d| deb_fields(d).package).collect();
    for wanted in ["bash", "libtinfo6", "libc6", "libssl3"] {
        assert!(
            names.contains(wanted),
            "{wanted} is not in {debs_dir}: run scripts/services.sh again to download it"
        );
    }
    let work = std::env::temp_dir().join(format!("stellaops-usage-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();

    // The references, from the unpacked packages: binutils' DT_NEEDED of bash and
    // libtinfo, and the image's own loader resolving bash.
    let unpacked = work.join("unpacked");
    for deb in &debs {
        assert!(
            Command::new("dpkg-deb")
                .arg("-x")
                .arg(deb)
                .arg(&unpacked)
                .status()
                .unwrap()
                .success()
        );
    }
    let bash_needed = readelf_needed(&unpacked.join("bin/bash"));
    assert_eq!(bash_needed, vec!["libtinfo.so.6", "libc.so.6"]);
    let bash_bytes = std::fs::read(unpacked.join("bin/bash")).unwrap();
    let ours = stellaops_scanner::elf::parse(&bash_bytes).unwrap();
    assert_eq!(
        ours.needed, bash_needed,
        "our DT_NEEDED reading agrees with readelf"
    );
    assert_eq!(ours.interp.as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
    let tinfo = std::fs::canonicalize(unpacked.join("lib/x86_64-linux-gnu/libtinfo.so.6")).unwrap();
    let tinfo_ours = stellaops_scanner::elf::parse(&std::fs::read(&tinfo).unwrap()).unwrap();
    assert_eq!(tinfo_ours.needed, readelf_needed(&tinfo));
    let by_loader = loader_list(&unpacked, "/bin/bash");

    let base = rootfs_layer(&debs, &work);
    let s3 = client(&S3Settings {
        endpoint: Some(endpoint),
        region: None,
        force_path_style: true,
    })
    .await;
    let bucket = format!("scan-usage-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let registry_client = RegistryClient::new(Credentials::default(), vec![]).unwrap();
    let scratch = work.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    // A critical advisory on openssl (libssl3, which nothing here loads) and a high one on
    // glibc (libc6, which everything loads).
    ingest(
        &pool,
        vec![
            osv(
                "DSA-U-OPENSSL",
                "Debian:12",
                "openssl",
                json!([{"introduced": "0"}, {"fixed": "99"}]),
                "critical",
            ),
            osv(
                "DSA-U-GLIBC",
                "Debian:12",
                "glibc",
                json!([{"introduced": "0"}, {"fixed": "99"}]),
                "high",
            ),
        ],
    )
    .await;
    let scan_image = |tag: &str, layers: Vec<Vec<u8>>, config: Value, scope: &str| {
        let dir = work.join(format!("layout-{tag}"));
        let built = oci::write_layout_with_config(&dir, &layers, tag, config);
        oci::push(&dir, tag, &registry, "stellaops-it/usage");
        std::fs::remove_dir_all(&dir).unwrap();
        let image = format!("{registry}/stellaops-it/usage:{tag}");
        let policy = Policy {
            fail_on: "critical".into(),
            scope: if scope == "usage" {
                stellaops_policy::evaluate::Scope::Usage
            } else {
                stellaops_policy::evaluate::Scope::Inventory
            },
            ..Default::default()
        };
        (image, built, policy)
    };
    let job = |policy: Policy| ScanJob {
        signer: None,
        registry: &registry_client,
        s3: &s3,
        bucket: &bucket,
        pool: &pool,
        platform: "linux/amd64",
        policy,
        requester: Requester::default(),
        spdx: false,
        scratch: &scratch,
        force: true,
    };
    let used_of = |digest: String| {
        let pool = pool.clone();
        async move {
            let rows: Vec<(String, Option<bool>)> = sqlx::query_as(
                "SELECT DISTINCT purl, used_by_entrypoint FROM image_packages WHERE image_digest = $1",
            )
            .bind(digest)
            .fetch_all(&pool)
            .await
            .unwrap();
            let name = |purl: &str| {
                purl.split('@')
                    .next()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string()
            };
            let used: BTreeSet<String> = rows
                .iter()
                .filter(|(_, u)| *u == Some(true))
                .map(|(p, _)| name(p))
                .collect();
            let unused: BTreeSet<String> = rows
                .iter()
                .filter(|(_, u)| *u == Some(false))
                .map(|(p, _)| name(p))
                .collect();
            (used, unused)
        }
    };

    // 1. A shell-script entrypoint that execs bash.
    let entrypoint = b"#!/bin/bash\nset -e\nexport APP_HOME=/srv\nif [ \"$1\" = 'version' ]; then\n  exec /bin/bash --version\nfi\ncd \"$APP_HOME\" && echo starting\nexec \"$@\"\n";
    let script_layer = tar_with_modes(&[("docker-entrypoint.sh", entrypoint.as_slice(), 0o755)]);
    let (image, built, policy) = scan_image(
        "script",
        vec![base.clone(), script_layer.clone()],
        json!({"Entrypoint": ["/bin/bash", "/docker-entrypoint.sh"], "Cmd": ["bash", "-l"],
               "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}),
        "inventory",
    );
    let started = std::time::Instant::now();
    let summary = scan(&job(policy), &image).await.unwrap();
    let total = started.elapsed();
    assert_eq!(
        summary.entrypoint,
        vec!["/bin/bash (config)", "/bin/bash (/docker-entrypoint.sh:8)",],
        "the chain, with the script line that execs"
    );
    // Worked out by hand: bash (the script's interpreter and the program it execs), and
    // what bash needs — libtinfo.so.6 (libtinfo6) and libc.so.6 with the interpreter
    // ld-linux-x86-64.so.2 (both libc6). Nothing loads libssl3, libsystemd0, libbz2-1.0,
    // and base-files holds no code.
    let (used, unused) = used_of(built.manifest_digest.clone()).await;
    assert_eq!(
        used,
        BTreeSet::from(["bash".into(), "libc6".into(), "libtinfo6".into()])
    );
    assert_eq!(
        unused,
        BTreeSet::from([
            "base-files".into(),
            "libbz2-1.0".into(),
            "libssl3".into(),
            "libsystemd0".into()
        ])
    );
    assert_eq!(summary.used_components, Some(3));
    if let Some(sonames) = &by_loader {
        // The image's own loader agrees on what bash loads.
        assert_eq!(
            sonames,
            &BTreeSet::from([
                "libtinfo.so.6".into(),
                "libc.so.6".into(),
                "ld-linux-x86-64.so.2".into()
            ]),
            "ld.so --list"
        );
    } else {
        eprintln!("the image's ld.so cannot run here; checked against readelf only");
    }
    // Inventory under `scope: inventory`: the unused openssl fails it.
    assert_eq!(summary.verdict, "Fail");
    // The inventory SBOM carries the property; the Usage SBOM beside it holds the used
    // components and the chain, and is valid CycloneDX.
    let cdx: Value = serde_json::from_slice(&get(&s3, &bucket, &summary.sbom_uri).await).unwrap();
    let libssl = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "libssl3")
        .unwrap();
    assert!(
        libssl["properties"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "stellaops:usedByEntrypoint", "value": "false"}))
    );
    let usage_uri = summary.usage_sbom_uri.clone().expect("a Usage SBOM");
    assert!(usage_uri.ends_with(".usage.cdx.json") && usage_uri.contains("/scanner/sboms/"));
    let usage_bytes = get(&s3, &bucket, &usage_uri).await;
    assert_eq!(Some(sha256(&usage_bytes)), summary.usage_sbom_sha256);
    let usage: Value = serde_json::from_slice(&usage_bytes).unwrap();
    let in_usage: BTreeSet<String> = usage["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "library")
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(in_usage, used);
    assert!(
        usage["metadata"]["properties"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "stellaops:entrypoint.chain.1", "value": "/bin/bash (/docker-entrypoint.sh:8)"}))
    );
    let (ok, report) = cyclonedx_valid(&usage_bytes);
    assert!(ok, "the Usage SBOM is valid CycloneDX: {report}");
    let recorded: (Option<String>, Option<i32>) =
        sqlx::query_as("SELECT usage_sbom_uri, used_components FROM scan_results WHERE id = $1")
            .bind(summary.scan_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(recorded, (Some(usage_uri.clone()), Some(3)));
    // The evaluator sees usedByEntrypoint: the glibc finding is on a used component.
    let used_flags: Vec<(String, Option<bool>)> = sqlx::query_as(
        "SELECT f.vuln_id, bool_or(p.used_by_entrypoint) FROM scan_findings f
         JOIN image_packages p ON p.image_digest = $2 AND p.purl = f.purl
         WHERE f.scan_id = $1 GROUP BY f.vuln_id ORDER BY f.vuln_id",
    )
    .bind(summary.scan_id)
    .bind(&built.manifest_digest)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        used_flags,
        vec![
            ("DSA-U-GLIBC".to_string(), Some(true)),
            ("DSA-U-OPENSSL".to_string(), Some(false))
        ]
    );
    // `scope: usage`: only used components count, so the critical openssl finding no
    // longer fails the image (the high glibc one is below failOn).
    let (_, _, usage_policy) = scan_image(
        "script",
        vec![base.clone(), script_layer],
        json!({"Entrypoint": ["/bin/bash", "/docker-entrypoint.sh"], "Cmd": ["bash", "-l"]}),
        "usage",
    );
    let under_usage = scan(&job(usage_policy), &image).await.unwrap();
    assert_eq!(under_usage.verdict, "Pass", "{under_usage:?}");
    eprintln!(
        "usage view timing (dev build): {} µs of a {} ms scan ({:.2}%)",
        summary.usage_micros,
        total.as_millis(),
        summary.usage_micros as f64 / 10.0 / total.as_millis().max(1) as f64
    );

    // 2. A Python app: the interpreter (a real ELF: bash's bytes under python's name, so
    // its closure is libtinfo6 + libc6), the app script, and site-packages reached; a
    // second site-packages the interpreter does not use is not.
    let python_layer = tar_with_modes(&[
        ("usr/local/bin/python3", bash_bytes.as_slice(), 0o755),
        ("app/main.py", b"import flask\n".as_slice(), 0o644),
        (
            "usr/local/lib/python3.12/site-packages/flask-3.0.0.dist-info/METADATA",
            b"Metadata-Version: 2.1\nName: Flask\nVersion: 3.0.0\n".as_slice(),
            0o644,
        ),
        (
            "usr/local/lib/python3.12/site-packages/requests-2.31.0.dist-info/METADATA",
            b"Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\n".as_slice(),
            0o644,
        ),
        (
            "opt/other/lib/python3.11/site-packages/unused-1.0.dist-info/METADATA",
            b"Metadata-Version: 2.1\nName: unused\nVersion: 1.0\n".as_slice(),
            0o644,
        ),
    ]);
    let (image, built, policy) = scan_image(
        "python",
        vec![base.clone(), python_layer],
        json!({"Cmd": ["python3", "-u", "main.py"], "WorkingDir": "/app"}),
        "inventory",
    );
    let summary = scan(&job(policy), &image).await.unwrap();
    assert_eq!(
        summary.entrypoint,
        vec!["/usr/local/bin/python3 (config)", "/app/main.py (python)"]
    );
    let (used, unused) = used_of(built.manifest_digest).await;
    assert_eq!(
        used,
        BTreeSet::from([
            "flask".into(),
            "requests".into(),
            "libc6".into(),
            "libtinfo6".into()
        ])
    );
    assert!(unused.contains("unused") && unused.contains("bash") && unused.contains("libssl3"));

    // 3. A Node app: the script and the node_modules `require` searches from it.
    let node_layer = tar_with_modes(&[
        ("usr/local/bin/node", bash_bytes.as_slice(), 0o755),
        (
            "srv/app/server.js",
            b"require('express')\n".as_slice(),
            0o644,
        ),
        (
            "srv/app/node_modules/express/package.json",
            br#"{"name": "express", "version": "4.18.2"}"#.as_slice(),
            0o644,
        ),
        (
            "srv/node_modules/left-pad/package.json",
            br#"{"name": "left-pad", "version": "1.3.0"}"#.as_slice(),
            0o644,
        ),
        (
            "opt/tools/node_modules/unused-tool/package.json",
            br#"{"name": "unused-tool", "version": "0.1.0"}"#.as_slice(),
            0o644,
        ),
    ]);
    let (image, built, policy) = scan_image(
        "node",
        vec![base, node_layer],
        json!({"Entrypoint": ["node"], "Cmd": ["server.js"], "WorkingDir": "/srv/app"}),
        "inventory",
    );
    let summary = scan(&job(policy), &image).await.unwrap();
    assert_eq!(
        summary.entrypoint,
        vec!["/usr/local/bin/node (config)", "/srv/app/server.js (node)"]
    );
    let (used, unused) = used_of(built.manifest_digest).await;
    assert_eq!(
        used,
        BTreeSet::from([
            "express".into(),
            "left-pad".into(),
            "libc6".into(),
            "libtinfo6".into()
        ])
    );
    assert!(unused.contains("unused-tool"));
    std::fs::remove_dir_all(&work).unwrap();
}
