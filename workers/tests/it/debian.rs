//! The scanner on a root file system made of real Debian packages (downloaded once by
//! scripts/services.sh into .test-services/debs): binary packages are matched by their
//! source package (libc6 → glibc, libssl3 → openssl, libbz2-1.0 → bzip2 at its own source
//! version), the fix of the range holding the version is reported, both SBOM formats pass
//! the official validators, SBOM objects are content-addressed, and our package URLs are
//! what the reference purl implementation makes of them.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use stellaops_store::s3::{S3Settings, client};
use stellaops_testing::oci;
use stellaops_workers::registry::{Credentials, RegistryClient};
use stellaops_workers::scan::analyze::{FoundPackage, OsRelease};
use stellaops_workers::scan::{Policy, Requester, ScanJob, purl_of, scan};

use crate::scan::{ingest, osv};

/// One real package: its fields as dpkg itself reports them.
#[derive(Debug)]
struct Deb {
    package: String,
    version: String,
    source: String,
    source_version: String,
}

/// `dpkg-deb --show` with dpkg's own `source:Package` / `source:Version` virtual fields:
/// the reference for what our `Source:` parsing must find.
fn deb_fields(file: &Path) -> Deb {
    let out = Command::new("dpkg-deb")
        .args([
            "--show",
            "--showformat=${Package}\\n${Version}\\n${source:Package}\\n${source:Version}\\n",
        ])
        .arg(file)
        .output()
        .expect("dpkg-deb runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    Deb {
        package: lines[0].into(),
        version: lines[1].into(),
        source: lines[2].into(),
        source_version: lines[3].into(),
    }
}

/// A layer with the packages' files unpacked (`dpkg-deb -x`) and a dpkg `status` made of
/// their control stanzas, as dpkg writes it after installing them.
fn rootfs_layer(debs: &[PathBuf], work: &Path) -> Vec<u8> {
    let root = work.join("root");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    let mut status = String::new();
    for deb in debs {
        let ok = Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb)
            .arg(&root)
            .status()
            .unwrap();
        assert!(ok.success());
        let control = Command::new("dpkg-deb")
            .arg("-f")
            .arg(deb)
            .output()
            .unwrap();
        let control = String::from_utf8(control.stdout).unwrap();
        for line in control.lines() {
            status.push_str(line);
            status.push('\n');
            if line.starts_with("Package:") {
                status.push_str("Status: install ok installed\n");
            }
        }
        status.push('\n');
    }
    std::fs::write(root.join("var/lib/dpkg/status"), status).unwrap();
    let out = Command::new("tar")
        .args([
            "--sort=name",
            "--mtime=@0",
            "--owner=0",
            "--group=0",
            "-cf",
            "-",
            "-C",
        ])
        .arg(&root)
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::remove_dir_all(&root).unwrap();
    out.stdout
}

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
fn pyspdxtools(document: &[u8]) -> (bool, String) {
    let python = std::env::var("STELLAOPS_TEST_PYTHON").expect("set by scripts/services.sh");
    let tool = Path::new(&python).with_file_name("pyspdxtools");
    let file = std::env::temp_dir().join(format!("stellaops-spdx-{}.json", std::process::id()));
    std::fs::write(&file, document).unwrap();
    let out = Command::new(tool).arg("-i").arg(&file).output().unwrap();
    std::fs::remove_file(&file).unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// CycloneDX 1.6 JSON schema validation (strict) by cyclonedx-python-lib.
fn cyclonedx_valid(document: &[u8]) -> (bool, String) {
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
    let key = uri.strip_prefix(&format!("s3://{bucket}/")).unwrap();
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{uri}: {e:?}"))
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec()
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
    assert_eq!(cases.len(), 14);
}
