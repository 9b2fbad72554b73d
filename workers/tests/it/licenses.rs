//! License rules end to end: declared licenses read from each ecosystem's metadata (apk,
//! npm, Python, RPM headers, Debian `copyright` files of real packages), carried in both
//! SBOMs (which the official validators accept), stored with the inventory, and a
//! ScanPolicy license deny failing a scan's verdict with `explain` saying why; a
//! re-evaluation under the policy without the rule passes the image again.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};
use stellaops_scanner::analyze::{analyse_tar, parse_apk, parse_python};
use stellaops_scanner::license::{debian_copyright, npm, python};
use stellaops_scanner::{Policy, merge};
use stellaops_testing::oci;
use stellaops_workers::evaluate::{Settings, reevaluate_policy};
use stellaops_workers::registry::{Credentials, RegistryClient};
use stellaops_workers::scan::Requester;

use crate::debian::{cyclonedx_valid, pyspdxtools};
use crate::scan::{env, push};

/// An apk database as Alpine writes it (fields of a real `lib/apk/db/installed`).
const APK_DB: &str = "C:Q1sFVYoK2sAqqIk8aJI6bV0GFJm1Q=
P:musl
V:1.2.5-r0
A:x86_64
S:411734
I:655360
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Natanael Copa <ncopa@alpinelinux.org>
t:1717145447
c:8c3f5ab1a4b5b07d2ad3a4c0d8dc3b6ac1e6aec6

C:Q1ZC8kGK0vdzV5QjAxHbQ0cdwpFzk=
P:busybox
V:1.36.1-r29
A:x86_64
L:GPL-2.0-only
o:busybox

C:Q1Ltr1Cs6DSBZU8P1H3ZP1kJO5Lgo=
P:libgcc
V:13.2.1_git20240309-r0
A:x86_64
L:GPL-2.0-or-later AND LGPL-2.1-or-later
o:gcc

C:Q1qD9kn1QgkIxIoCgvuI4aX/ZGh4A=
P:ca-certificates-bundle
V:20240705-r0
A:x86_64
L:MPL-2.0 AND MIT
o:ca-certificates

C:Q1xUMrD4yFNxLiSHHbpgV/GX5iMds=
P:scanelf
V:1.3.7-r2
A:x86_64
L:GPL-2.0-only OR MIT
o:pax-utils
";

#[test]
fn each_ecosystem_declares_its_license_its_own_way() {
    // apk `L:`: an SPDX expression as given.
    let apk = parse_apk(APK_DB);
    let licenses: Vec<(&str, &str)> = apk
        .iter()
        .map(|p| (p.name.as_str(), p.license.as_str()))
        .collect();
    assert_eq!(
        licenses,
        vec![
            ("musl", "MIT"),
            ("busybox", "GPL-2.0-only"),
            ("libgcc", "GPL-2.0-or-later AND LGPL-2.1-or-later"),
            ("ca-certificates-bundle", "MPL-2.0 AND MIT"),
            ("scanelf", "GPL-2.0-only OR MIT"),
        ]
    );
    // npm: a string (expression or not), the legacy object, the legacy array (a choice).
    for (manifest, want) in [
        (
            json!({"license": "(MIT OR Apache-2.0)"}),
            Some("(MIT OR Apache-2.0)"),
        ),
        (
            json!({"license": "SEE LICENSE IN LICENSE.md"}),
            Some("SEE LICENSE IN LICENSE.md"),
        ),
        // A common name that is no expression: the license it names; other words as given.
        (json!({"license": "Apache 2.0"}), Some("Apache-2.0")),
        (json!({"license": "The MIT License"}), Some("MIT")),
        (json!({"license": "Public Domain"}), Some("Public Domain")),
        // A short name that parses as an id of no list: the license it names; the
        // deprecated GNU id (the version, "or later" open) as given.
        (json!({"license": "GPLv3"}), Some("GPL-3.0")),
        (json!({"license": "LGPLv3+"}), Some("LGPL-3.0-or-later")),
        (json!({"license": "GPL-3.0"}), Some("GPL-3.0")),
        (json!({"license": "WTFPL OR Foo"}), Some("WTFPL OR Foo")),
        (
            json!({"licenses": [{"type": "MIT License"}, {"type": "Apache License, Version 2.0"}]}),
            Some("MIT OR Apache-2.0"),
        ),
        (
            json!({"license": {"type": "ISC", "url": "https://opensource.org/licenses/ISC"}}),
            Some("ISC"),
        ),
        (
            json!({"licenses": [{"type": "MIT", "url": "x"}, {"type": "Apache-2.0", "url": "y"}]}),
            Some("MIT OR Apache-2.0"),
        ),
        (
            json!({"licenses": [{"type": "MIT"}, {"type": "Custom licence"}]}),
            None,
        ),
        (json!({"license": 7}), None),
        (json!({"name": "x"}), None),
    ] {
        assert_eq!(npm(&manifest).as_deref(), want, "{manifest}");
    }
    // Python: License-Expression; a License: that is an id; a single unambiguous
    // classifier; not an ambiguous one, nor two.
    let header = |text: &'static str| -> Vec<(&'static str, &'static str)> {
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim(), v))
            .collect()
    };
    for (headers, want) in [
        (
            "License-Expression: MIT AND (Apache-2.0 OR BSD-2-Clause)\nLicense: ignored",
            Some("MIT AND (Apache-2.0 OR BSD-2-Clause)"),
        ),
        (
            "License: Apache-2.0\nClassifier: License :: OSI Approved :: MIT License",
            Some("Apache-2.0"),
        ),
        (
            "License: BSD\nClassifier: License :: OSI Approved :: MIT License",
            Some("MIT"),
        ),
        (
            "Classifier: License :: OSI Approved :: GNU General Public License v3 or later (GPLv3+)",
            Some("GPL-3.0-or-later"),
        ),
        ("Classifier: License :: OSI Approved :: BSD License", None),
        // The version without "or later": the deprecated id that leaves it open (license
        // rules read it as either form).
        (
            "Classifier: License :: OSI Approved :: GNU General Public License v2 (GPLv2)",
            Some("GPL-2.0"),
        ),
        (
            "Classifier: License :: OSI Approved :: GNU Library or Lesser General Public License (LGPL)",
            None,
        ),
        (
            "Classifier: License :: OSI Approved :: MIT License\nClassifier: License :: OSI Approved :: Apache Software License 2.0",
            None,
        ),
        ("License: Apache Software License", None),
    ] {
        assert_eq!(python(&header(headers)).as_deref(), want, "{headers}");
    }
    // Through the METADATA parser, continuation lines are no fields.
    let found = parse_python(
        "Metadata-Version: 2.4\nName: attrs\nVersion: 24.2.0\nLicense-Expression: MIT\nLicense-File: LICENSE\n\nbody\n",
    );
    assert_eq!(found[0].license, "MIT");
    let found = parse_python(
        "Metadata-Version: 2.1\nName: legacy\nVersion: 1\nLicense: Copyright (c) 2010\n        Permission is hereby granted\nClassifier: License :: OSI Approved :: MIT License\n",
    );
    assert_eq!(found[0].license, "MIT");
    // Debian: only machine-readable files.
    assert_eq!(
        debian_copyright("This is the Debian prepackaged version of the GNU C Library.\n"),
        None
    );
    assert_eq!(
        debian_copyright(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nCopyright: someone\n"
        ),
        None,
        "a Files paragraph without License: not known"
    );
    assert_eq!(
        debian_copyright("Format: http://www.debian.org/doc/packaging-manuals/copyright-format/1.0\nUpstream-Name: x\n\nFiles: *\nCopyright: 2001 A\n 2002 B\nLicense: GPL-2+\n long text\n\nFiles: debian/*\nLicense: Expat\n\nLicense: GPL-2+\n the text\n").as_deref(),
        Some("GPL-2.0-or-later AND MIT")
    );
}

/// The `copyright` file of a real Debian package (`dpkg-deb --fsys-tarfile`).
fn copyright_of(deb: &PathBuf, package: &str) -> String {
    let tar = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .output()
        .unwrap();
    assert!(tar.status.success());
    let mut archive = tar::Archive::new(tar.stdout.as_slice());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if path.trim_start_matches("./") == format!("usr/share/doc/{package}/copyright") {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
            return text;
        }
    }
    panic!("{package} has no copyright file");
}

#[test]
fn debian_copyright_files_of_real_packages() {
    let Some(debs_dir) = stellaops_testing::service("STELLAOPS_TEST_DEBS") else {
        return;
    };
    let deb = |name: &str| {
        std::fs::read_dir(&debs_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("{name}_"))
            })
            .unwrap_or_else(|| panic!("{name} downloaded"))
    };
    // Every License: synopsis of a Files paragraph, independently of the parser: the
    // mapped ids must be exactly those of the expression.
    let synopses = |text: &str| -> Vec<String> {
        text.split("\n\n")
            .filter(|p| p.lines().any(|l| l.starts_with("Files:")))
            .filter_map(|p| p.lines().find_map(|l| l.strip_prefix("License:")))
            .map(|s| s.trim().to_string())
            .collect()
    };
    let systemd = copyright_of(&deb("libsystemd0"), "libsystemd0");
    let expression = debian_copyright(&systemd).expect("machine-readable");
    let declared = stellaops_policy::license::Declared::of(&expression).unwrap();
    assert!(!declared.ids.is_empty(), "{expression}");
    for s in synopses(&systemd) {
        match s.as_str() {
            "LGPL-2.1+" => assert!(declared.ids.contains(&"LGPL-2.1-or-later".into())),
            "GPL-2+" => assert!(declared.ids.contains(&"GPL-2.0-or-later".into())),
            "CC0-1.0" => assert!(declared.ids.contains(&"CC0-1.0".into())),
            "Expat" => assert!(declared.ids.contains(&"MIT".into())),
            "public-domain" => assert!(declared.ids.contains(&"LicenseRef-public-domain".into())),
            "GPL-2 with Linux-syscall-note exception" => assert!(
                expression.contains("GPL-2.0-only WITH Linux-syscall-note"),
                "{expression}"
            ),
            other => panic!("a synopsis the test does not know: {other} (in {expression})"),
        }
    }
    // Every Files paragraph applies: a deny of any of them hits the package.
    let rules: Vec<stellaops_policy::license::LicenseRule> = serde_json::from_value(json!([
        {"name": "no-gpl2", "action": "deny", "ids": ["GPL-2.0-or-later"]}
    ]))
    .unwrap();
    let subject = stellaops_policy::evaluate::Subject {
        namespace: None,
        repository: "x",
    };
    let component = stellaops_policy::license::Component {
        purl: "pkg:deb/debian/libsystemd0".into(),
        license: Some(declared),
    };
    assert_eq!(
        stellaops_policy::license::decide(&[component], &subject, &rules).len(),
        1
    );
    // openssl's: Apache-2.0 for the code, a choice for the bundled Perl module.
    let ssl = copyright_of(&deb("libssl3"), "libssl3");
    assert_eq!(
        debian_copyright(&ssl).as_deref(),
        Some("Apache-2.0 AND (LicenseRef-Artistic OR GPL-1.0-or-later)")
    );
    // glibc's is not machine-readable: not known.
    assert_eq!(
        debian_copyright(&copyright_of(&deb("libc6"), "libc6")),
        None
    );
    // Through the layer analyzer and the merge: the package gets its copyright's licenses.
    let layer = oci::tar_of(&[
        (
            "var/lib/dpkg/status",
            b"Package: libssl3\nStatus: install ok installed\nVersion: 3.0.15-1~deb12u1\nSource: openssl\n\nPackage: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u9\n",
        ),
        ("usr/share/doc/libssl3/copyright", ssl.as_bytes()),
    ]);
    let fragment = analyse_tar(layer.as_slice()).unwrap();
    let (components, _) = merge(&[("sha256:l1".into(), fragment)]);
    let of = |name: &str| {
        components
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .license
            .clone()
    };
    assert_eq!(
        of("libssl3").unwrap().expression,
        "Apache-2.0 AND (LicenseRef-Artistic OR GPL-1.0-or-later)"
    );
    assert_eq!(of("libc6"), None);
}

fn alpine_layer() -> Vec<u8> {
    let gpl3 = spdx::text::LICENSE_TEXTS
        .iter()
        .find(|(id, _)| *id == "GPL-3.0-only")
        .unwrap()
        .1;
    oci::tar_of(&[
        // `license: "GPL"` says no version: its COPYING says GPL 3.0, "or later" open.
        (
            "app/node_modules/copyleft-lib/package.json",
            br#"{"name": "copyleft-lib", "version": "3.1.0", "license": "GPL"}"#,
        ),
        ("app/node_modules/copyleft-lib/COPYING", gpl3.as_bytes()),
        (
            "etc/os-release",
            b"NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.20.3\nPRETTY_NAME=\"Alpine Linux v3.20\"\n",
        ),
        ("lib/apk/db/installed", APK_DB.as_bytes()),
        (
            "app/node_modules/left-pad/package.json",
            br#"{"name": "left-pad", "version": "1.3.0", "license": "WTFPL"}"#,
        ),
        (
            "app/node_modules/mongo-shim/package.json",
            br#"{"name": "mongo-shim", "version": "2.0.0", "license": "SSPL-1.0 OR AGPL-3.0-only"}"#,
        ),
        (
            "app/node_modules/inhouse/package.json",
            br#"{"name": "inhouse", "version": "0.1.0", "license": "SEE LICENSE IN LICENSE.md"}"#,
        ),
        (
            "app/node_modules/legacy/package.json",
            br#"{"name": "legacy", "version": "0.0.1", "license": {"type": "MIT", "url": "x"}}"#,
        ),
        (
            "usr/lib/python3.12/site-packages/ghostscript_wrap-0.7.dist-info/METADATA",
            b"Metadata-Version: 2.4\nName: ghostscript_wrap\nVersion: 0.7\nLicense-Expression: AGPL-3.0-or-later\n",
        ),
        (
            "usr/lib/python3.12/site-packages/oddball-1.0.dist-info/METADATA",
            b"Metadata-Version: 2.4\nName: oddball\nVersion: 1.0\nLicense-Expression: MIT AND LicenseRef-Oddball\n",
        ),
    ])
}

#[tokio::test]
async fn a_license_deny_fails_the_scan_and_explain_says_why() {
    let Some(env) = env("scan_licenses").await else {
        return;
    };
    let built = push(&env, "licenses", vec![alpine_layer()]);
    let registry = RegistryClient::new(Credentials::default(), vec![]).unwrap();
    let scratch = std::env::temp_dir().join(format!("stellaops-licenses-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    // The ScanPolicy as the controller hands it to the worker.
    let evaluator: stellaops_policy::evaluate::Policy = serde_json::from_value(json!({
        "failOn": "critical",
        "licenses": [
            {"name": "no-agpl", "action": "deny", "ids": ["AGPL-*"],
             "exceptPackages": ["pkg:pypi/vetted*"]},
            {"name": "gpl3-or-later-warns", "action": "warn", "ids": ["GPL-3.0-or-later"]},
            {"name": "copyleft-warns", "action": "warn", "ids": ["GPL-*", "LGPL-*"],
             "exceptPackages": ["pkg:apk/alpine/busybox@*"]}
        ]
    }))
    .unwrap();
    assert!(evaluator.problems().is_empty());
    let policy = Policy::from_evaluator(Some("licensing".into()), evaluator.clone());
    let job = stellaops_workers::scan::ScanJob {
        signer: None,
        registry: &registry,
        s3: &env.s3,
        bucket: &env.bucket,
        pool: &env.pool,
        platform: "linux/amd64",
        policy: policy.clone(),
        requester: Requester {
            namespace: Some("shop".into()),
            name: Some("api".into()),
            uid: Some("uid-licenses".into()),
        },
        spdx: true,
        scratch: &scratch,
        force: true,
    };
    let image = format!("{}/stellaops-it/licenses:v1", env.registry);
    let summary = stellaops_workers::scan::scan(&job, &image).await.unwrap();
    assert_eq!(summary.image_digest, built.manifest_digest);
    // No findings at all: the license deny alone fails the image.
    assert_eq!(summary.findings.values().sum::<i64>(), 0);
    assert_eq!(summary.verdict, "Fail");

    // Stored with the inventory: declared expression and ids; nothing for unknowns.
    let stored: Vec<(String, String, Vec<String>)> = sqlx::query_as(
        "SELECT purl, declared, license_ids FROM image_licenses WHERE image_digest = $1 ORDER BY purl",
    )
    .bind(&summary.image_digest)
    .fetch_all(&env.pool)
    .await
    .unwrap();
    let find = |needle: &str| {
        stored
            .iter()
            .find(|(p, ..)| p.contains(needle))
            .unwrap_or_else(|| panic!("{needle} in {stored:?}"))
    };
    assert_eq!(
        (find("mongo-shim").1.as_str(), find("mongo-shim").2.clone()),
        (
            "SSPL-1.0 OR AGPL-3.0-only",
            vec!["AGPL-3.0-only".to_string(), "SSPL-1.0".to_string()]
        )
    );
    assert_eq!(find("inhouse").1, "SEE LICENSE IN LICENSE.md");
    assert!(find("inhouse").2.is_empty(), "not an expression: no ids");
    assert_eq!(find("legacy").1, "MIT");
    assert_eq!(
        (
            find("copyleft-lib").1.as_str(),
            find("copyleft-lib").2.clone()
        ),
        ("GPL-3.0", vec!["GPL-3.0".to_string()])
    );
    assert_eq!(stored.len(), 12, "{stored:?}");

    // The decisions: AGPL denied in the Python package; the OR with SSPL is not denied
    // (SSPL is not in the rule); the GPL 3.0 of copyleft-lib's COPYING may be "or later",
    // so the rule on `GPL-3.0-or-later` warns; the GPL AND LGPL of libgcc warns; GPL OR MIT
    // does not; busybox is excepted.
    let decisions = stellaops_store::scans::license_decisions(&env.pool, summary.scan_id)
        .await
        .unwrap();
    let brief: Vec<(String, &str, &str)> = decisions
        .iter()
        .map(|d| {
            (
                d.purl.split('?').next().unwrap().to_string(),
                d.outcome.as_str(),
                d.decided_by.as_str(),
            )
        })
        .collect();
    assert_eq!(
        brief,
        vec![
            (
                "pkg:pypi/ghostscript-wrap@0.7".to_string(),
                "fails",
                "license:no-agpl"
            ),
            (
                "pkg:apk/alpine/libgcc@13.2.1_git20240309-r0".to_string(),
                "warns",
                "license:copyleft-warns"
            ),
            (
                "pkg:npm/copyleft-lib@3.1.0".to_string(),
                "warns",
                "license:gpl3-or-later-warns"
            ),
        ]
    );
    // explain prints them with the rule and the reason.
    let explanation = stellaops_store::scans::explain(&env.pool, &summary.image_digest)
        .await
        .unwrap()
        .unwrap();
    let text = stellaops_workers::scan::explain::render(&explanation);
    assert!(text.contains("verdict Fail"), "{text}");
    assert!(
        text.contains(
            "denied    pkg:pypi/ghostscript-wrap@0.7 declares AGPL-3.0-or-later — license:no-agpl: AGPL-3.0-or-later denied in AGPL-3.0-or-later"
        ),
        "{text}"
    );
    assert!(text.contains("warned    pkg:apk/alpine/libgcc@"), "{text}");
    // The rule on `GPL-3.0-or-later` hit `GPL-3.0` as that reading, and explain says so.
    assert!(
        text.contains("pkg:npm/copyleft-lib@3.1.0 declares GPL-3.0 — license:gpl3-or-later-warns: GPL-3.0 (read as GPL-3.0-or-later)"),
        "{text}"
    );
    // The Scan status's top reasons lead with the denied license.
    let reasons = stellaops_store::scans::reasons(&env.pool, summary.scan_id, 3)
        .await
        .unwrap();
    assert_eq!(reasons.deciding, 3);
    assert!(
        reasons.top[0].starts_with("license AGPL-3.0-or-later of pkg:pypi/ghostscript-wrap@0.7"),
        "{reasons:?}"
    );

    // Both SBOMs carry the licenses, and the official validators accept them.
    let get = |uri: String| {
        let s3 = env.s3.clone();
        async move { crate::scan::read_uri(&s3, &uri).await }
    };
    let cdx_bytes = get(summary.sbom_uri.clone()).await;
    let cdx: Value = serde_json::from_slice(&cdx_bytes).unwrap();
    let licenses_of = |name: &str| {
        cdx["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name}"))["licenses"]
            .clone()
    };
    assert_eq!(licenses_of("musl"), json!([{"license": {"id": "MIT"}}]));
    assert_eq!(
        licenses_of("scanelf"),
        json!([{"expression": "GPL-2.0-only OR MIT"}])
    );
    assert_eq!(
        licenses_of("inhouse"),
        json!([{"license": {"name": "SEE LICENSE IN LICENSE.md"}}])
    );
    assert_eq!(
        licenses_of("oddball"),
        json!([{"expression": "MIT AND LicenseRef-Oddball"}])
    );
    // The deprecated id is on the SPDX list (and in CycloneDX's): an id, no name.
    assert_eq!(
        licenses_of("copyleft-lib"),
        json!([{"license": {"id": "GPL-3.0"}}])
    );
    if std::env::var("STELLAOPS_TEST_PYTHON").is_ok() {
        let (ok, report) = cyclonedx_valid(&cdx_bytes);
        assert!(ok, "CycloneDX with licenses: {report}");
        let spdx_bytes = get(summary.sbom_uri.replace(".cdx.json", ".spdx.json")).await;
        let spdx: Value = serde_json::from_slice(&spdx_bytes).unwrap();
        let package = |name: &str| {
            spdx["packages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .unwrap()
                .clone()
        };
        assert_eq!(
            package("libgcc")["licenseDeclared"],
            "GPL-2.0-or-later AND LGPL-2.1-or-later"
        );
        assert_eq!(package("inhouse")["licenseDeclared"], "NOASSERTION");
        assert_eq!(package("copyleft-lib")["licenseDeclared"], "GPL-3.0");
        assert_eq!(
            package("oddball")["licenseDeclared"],
            "MIT AND LicenseRef-Oddball"
        );
        assert!(
            spdx["hasExtractedLicensingInfos"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["licenseId"] == "LicenseRef-Oddball"),
            "{}",
            spdx["hasExtractedLicensingInfos"]
        );
        let (ok, report) = pyspdxtools(&spdx_bytes);
        assert!(ok, "SPDX with licenses: {report}");
        // The validator does look at licenses: an undeclared reference is refused.
        let mut undeclared = spdx.clone();
        undeclared
            .as_object_mut()
            .unwrap()
            .remove("hasExtractedLicensingInfos");
        let (ok, report) = pyspdxtools(&serde_json::to_vec(&undeclared).unwrap());
        assert!(!ok, "an undeclared LicenseRef is refused: {report}");
    }

    // The ScanPolicy loses its deny: re-evaluation (no pull) passes the image with a warning.
    let mut relaxed = evaluator.clone();
    relaxed.licenses.remove(0);
    let relaxed = Policy::from_evaluator(Some("licensing".into()), relaxed);
    let report = reevaluate_policy(
        &env.pool,
        &relaxed,
        &Settings {
            signer: None,
            rate_per_second: 1000,
            notify: true,
            min_severity: None,
            namespace: None,
            name: None,
            run_id: None,
            policy: None,
            now: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (report.evaluated, report.decisions_changed),
        (1, 1),
        "{report:?}"
    );
    let explanation = stellaops_store::scans::explain(&env.pool, &summary.image_digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(explanation.verdict, "Warn");
    let mut warned: Vec<&str> = explanation
        .licenses
        .iter()
        .map(|l| l.decided_by.as_str())
        .collect();
    warned.sort();
    assert_eq!(
        warned,
        ["license:copyleft-warns", "license:gpl3-or-later-warns"]
    );
    // And back: a rescan of the same digest at the same snapshot reuses the stored
    // inventory's licenses and is denied again.
    let again = stellaops_workers::scan::ScanJob {
        force: false,
        ..job
    };
    let reused = stellaops_workers::scan::scan(&again, &image).await.unwrap();
    assert_eq!(reused.layers_analysed, 0, "reused, not pulled");
    assert_eq!(reused.verdict, "Fail");
    std::fs::remove_dir_all(&scratch).unwrap();
}

/// The packages of `kind` the analyzer finds in `dir` laid into a layer at `at`, as sorted
/// (`name@version`, declared license) pairs.
fn installed_licenses(
    at: &str,
    dir: impl AsRef<std::path::Path>,
    kind: &str,
) -> Vec<(String, String)> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.append_dir_all(at, dir).unwrap();
    let layer = builder.into_inner().unwrap();
    let fragment = analyse_tar(layer.as_slice()).unwrap();
    let mut found: Vec<(String, String)> = fragment
        .files
        .values()
        .flatten()
        .filter(|p| p.kind == kind)
        .map(|p| (format!("{}@{}", p.name, p.version), p.license.clone()))
        .collect();
    found.sort();
    found
}

/// Python packages as pip installs them (scripts/services.sh: pinned wheels into
/// .test-services/python-site): where the metadata says which license, that; where it
/// leaves it open (a bare `Apache Software License` or `BSD License` classifier, `License:
/// BSD`), the license files it lists as `License-File` (or, listing none, those its
/// dist-info holds), when each holds a known license word for word; a common name in
/// `License:` read as the license it names.
#[test]
fn pip_installed_packages_and_their_license_files() {
    let Some(site) = stellaops_testing::service("STELLAOPS_TEST_PYTHON_SITE") else {
        return;
    };
    let found = installed_licenses("usr/lib/python3.12/site-packages", &site, "pypi");
    let want = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        found,
        want(&[
            // Classifier "Apache Software License" only; License-File LICENSE: Apache 2.0.
            ("arrow@1.4.0", "Apache-2.0"),
            // `License: LGPL` (which?) and the classifier `LGPLv2+`: LGPL-2.0-or-later
            // (its LICENSE, the LGPL 2.1, is not read: the classifier says).
            ("chardet@5.2.0", "LGPL-2.0-or-later"),
            ("id@1.6.1", "Apache-2.0"),
            // A bare `BSD License` classifier (flit: no `License-File` listed) and
            // LICENSE.md in the dist-info: BSD-3-Clause.
            ("idna@3.7", "BSD-3-Clause"),
            // The same; its LICENSE.txt names Pallets in place of "the copyright holder".
            ("jinja2@3.1.4", "BSD-3-Clause"),
            // `License: LGPL` and the bare LGPL classifier; its LICENSE is the LGPL 2.1
            // (with the FSF's Suite 500 address): the version, "or later" left open.
            ("paramiko@3.5.0", "LGPL-2.1"),
            // `License: GNU Lesser General Public License v3 (LGPLv3)`, no "or later"; its
            // LICENSE.txt is the LGPL 3.0.
            ("psycopg@3.2.3", "LGPL-3.0"),
            // `License: BSD`, and a LICENSE (bullets as `*`) naming Eli Bendersky.
            ("pycparser@2.21", "BSD-3-Clause"),
            // `License: GPL-2.0-or-later`.
            ("pylint@3.3.1", "GPL-2.0-or-later"),
            // `License: Apache-2.0`.
            ("requests@2.34.2", "Apache-2.0"),
            // `License: MIT license`.
            ("rfc3339-validator@0.1.4", "MIT"),
            // `License: BSD` (which one?) and no `License-File`: the LICENSE its dist-info
            // holds says BSD-2-Clause.
            ("semantic-version@2.10.0", "BSD-2-Clause"),
            ("sigstore@4.5.0", "Apache-2.0"),
            // `License: Apache 2.0`.
            ("sortedcontainers@2.4.0", "Apache-2.0"),
            // `License-Expression: Apache-2.0 OR MIT`.
            ("tuf@7.0.1", "Apache-2.0 OR MIT"),
            // `License: AGPL-3.0` (deprecated: "or later" open) and the classifier `GNU
            // Affero General Public License v3 or later (AGPLv3+)`, which says.
            ("ultralytics@8.3.40", "AGPL-3.0-or-later"),
        ])
    );
}

/// npm packages as `npm install` lays them out (scripts/services.sh: pinned, into
/// .test-services/npm-site): `license` as an expression, a legacy object or array, a
/// common name (`Apache License, Version 2.0`) read as its id; and where package.json names
/// no license, or words that are no expression (`BSD`), the package's own license files
/// when each holds a known license word for word (BSD with the author's name in its
/// disclaimer); other words kept as given.
#[test]
fn npm_installed_packages_and_their_license_files() {
    let Some(site) = stellaops_testing::service("STELLAOPS_TEST_NPM_SITE") else {
        return;
    };
    let found = installed_licenses(
        "srv/app/node_modules",
        std::path::Path::new(&site).join("node_modules"),
        "npm",
    );
    let mut want: Vec<(String, String)> = [
        // `license`: an SPDX expression.
        ("amdefine@1.0.1", "BSD-3-Clause OR MIT"),
        // `licenses: [{type: "Apache License, Version 2.0"}]`: the name of Apache-2.0.
        ("bson@0.1.5", "Apache-2.0"),
        // `licenses: [{type: "BSD"}]` (which BSD?) and no license file: kept as given,
        // matches no rule.
        ("esprima@1.0.4", "BSD"),
        // No license and no license file.
        ("indexof@0.0.1", ""),
        ("jsonify@0.0.0", "Public Domain"),
        // No license in package.json; LICENCE holds BSD-2-Clause naming its author.
        ("dtrace-provider@0.2.8", "BSD-2-Clause"),
        // `license: "BSD"` (which one?): LICENSE says, BSD-2-Clause naming "the author".
        ("graceful-fs@1.2.3", "BSD-2-Clause"),
        // No license in package.json; LICENSE holds the MIT terms.
        ("mime@1.2.11", "MIT"),
        ("ms@0.7.0", "MIT"),
        // `licenses: [{type: "MIT"}]`.
        ("node-uuid@1.4.8", "MIT"),
        ("sigmund@1.0.0", "BSD-2-Clause"),
        ("tweetnacl@0.14.5", "Unlicense"),
        ("uid2@0.0.3", "MIT"),
        // `licenses: [{type: "LGPL"}]`: declared, so its LICENSE file is not read.
        ("xmldom@0.1.27", "LGPL"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    want.sort();
    assert_eq!(found, want);
}

/// How Debian's `licensecheck` reads license files, as the scanner's ids: its GNU names
/// (`GPL-2`, `LGPL-3`, `AGPLv3`: the version, "or later" not said) as the deprecated SPDX
/// ids that say as much; `None` where it names no one license (`UNKNOWN`, `A and/or B`).
pub(crate) fn licensecheck(files: &[PathBuf]) -> Option<Vec<Option<String>>> {
    let tool = stellaops_testing::service("STELLAOPS_TEST_LICENSECHECK")?;
    let out = Command::new(tool)
        .args(["--check=.", "--machine", "--shortname-scheme=spdx", "--"])
        .args(files)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let readings: std::collections::BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .collect();
    Some(
        files
            .iter()
            .map(|f| {
                let name = readings
                    .get(f.to_str().unwrap())
                    .unwrap_or_else(|| panic!("licensecheck read {f:?}:\n{text}"));
                if *name == "UNKNOWN" || name.contains(' ') {
                    return None;
                }
                for family in ["AGPL", "LGPL", "GPL"] {
                    if let Some(version) = name
                        .strip_prefix(family)
                        .map(|v| v.trim_start_matches(['-', 'v']))
                        .filter(|v| {
                            !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.')
                        })
                    {
                        let version = if version.contains('.') {
                            version.to_string()
                        } else {
                            format!("{version}.0")
                        };
                        return Some(format!("{family}-{version}"));
                    }
                }
                Some(name.to_string())
            })
            .collect(),
    )
}

/// Our reading of each file beside licensecheck's: where it names one license we know,
/// ours is the same; where it names one we do not, ours is nothing (not taken for another).
/// How many files were compared (licensecheck named one license), for the caller to check.
pub(crate) fn agrees_with_licensecheck(files: &[PathBuf]) -> Option<usize> {
    let theirs = licensecheck(files)?;
    let mut compared = 0;
    for (file, theirs) in files.iter().zip(theirs) {
        let text = std::fs::read(file).unwrap();
        let ours = stellaops_scanner::license::license_file(&String::from_utf8_lossy(&text));
        let Some(theirs) = theirs else { continue };
        compared += 1;
        if stellaops_scanner::license::license_file_ids().contains(theirs.as_str()) {
            assert_eq!(ours.as_deref(), Some(theirs.as_str()), "{file:?}");
        } else {
            assert_eq!(ours, None, "{file:?}: licensecheck reads {theirs}");
        }
    }
    Some(compared)
}

/// The license files of the pip- and npm-installed packages (real copies, as projects ship
/// them: Apache, BSD, MIT, the Unlicense, the GPL 2 (pylint's, naming the "Library" GPL),
/// the LGPL 2.1 (paramiko's with the FSF's Suite 500 address, chardet's) and 3.0, the AGPL
/// 3.0) read as Debian's licensecheck reads them.
#[test]
fn installed_packages_license_files_read_as_licensecheck_reads_them() {
    let (Some(pysite), Some(npmsite)) = (
        stellaops_testing::service("STELLAOPS_TEST_PYTHON_SITE"),
        stellaops_testing::service("STELLAOPS_TEST_NPM_SITE"),
    ) else {
        return;
    };
    let mut files = Vec::new();
    for dir in std::fs::read_dir(&pysite).unwrap() {
        let dir = dir.unwrap().path();
        if dir.extension().is_some_and(|e| e == "dist-info") {
            for sub in [dir.clone(), dir.join("licenses")] {
                files.extend(license_files_in(&sub));
            }
        }
    }
    for dir in std::fs::read_dir(PathBuf::from(&npmsite).join("node_modules")).unwrap() {
        files.extend(license_files_in(&dir.unwrap().path()));
    }
    files.sort();
    assert!(files.len() >= 20, "{files:?}");
    let Some(compared) = agrees_with_licensecheck(&files) else {
        return;
    };
    // All but amdefine's (`BSD-3-Clause and/or MIT`) and xmldom's (a choice, by URL).
    assert_eq!(compared, files.len() - 2, "{files:?}");
}

fn license_files_in(dir: &std::path::Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_file()
                && p.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy().to_ascii_uppercase();
                    n.starts_with("LICEN") || n.starts_with("COPYING")
                })
        })
        .collect()
}
