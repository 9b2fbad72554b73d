//! RPM databases (`rpmdb.sqlite`) made by SQLite itself, read by our own reader: many
//! pages (interior B-tree pages), a header larger than a page (overflow chains), epochs,
//! the signing-key pseudo-packages, and corrupt files; BerkeleyDB `Packages` files made by
//! BerkeleyDB; SUSE's ndb `Packages.db` in rpm's layout.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;
use stellaops_scanner::analyze::{FoundPackage, OsRelease};
use stellaops_scanner::rpmdb::{parse_rpmdb_bdb, parse_rpmdb_ndb, parse_rpmdb_sqlite};
use stellaops_scanner::{AdvisoryRow, match_components, purl_of};
use stellaops_testing::oci;
use stellaops_workers::registry::RegistryClient;
use stellaops_workers::scan::scan;

/// An RPM header blob as rpm stores it: index count, data length, entries, data. Its
/// SOURCERPM is `<name>-<version>-<release>.src.rpm`, with a `-libs` suffix dropped from
/// the name as Red Hat's spec files do (`openssl-libs` is built from `openssl`).
fn header(
    name: &str,
    epoch: Option<u32>,
    version: &str,
    release: &str,
    arch: &str,
    summary: &str,
) -> Vec<u8> {
    let mut data = Vec::new();
    let mut entries: Vec<(u32, u32, u32, u32)> = Vec::new();
    let source_rpm = format!(
        "{}-{version}-{release}.src.rpm",
        name.strip_suffix("-libs").unwrap_or(name)
    );
    for (tag, text) in [
        (1000, name),
        (1001, version),
        (1002, release),
        (1004, summary),
        (1022, arch),
        (1044, source_rpm.as_str()),
    ] {
        entries.push((tag, 6, data.len() as u32, 1));
        data.extend_from_slice(text.as_bytes());
        data.push(0);
    }
    if let Some(epoch) = epoch {
        while data.len() % 4 != 0 {
            data.push(0);
        }
        entries.push((1003, 4, data.len() as u32, 1));
        data.extend_from_slice(&epoch.to_be_bytes());
    }
    let mut blob = Vec::new();
    blob.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    blob.extend_from_slice(&(data.len() as u32).to_be_bytes());
    for (tag, kind, offset, count) in entries {
        for v in [tag, kind, offset, count] {
            blob.extend_from_slice(&v.to_be_bytes());
        }
    }
    blob.extend_from_slice(&data);
    blob
}

/// The file `program args… FILE` writes when fed `input` on stdin.
fn written_by(program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let path = std::env::temp_dir().join(format!("stellaops-rpmdb-{}-{n}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut child = Command::new(program)
        .args(args)
        .arg(&path)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} (installed by scripts/services.sh): {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    assert!(child.wait().unwrap().success(), "{program} failed");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    bytes
}

/// An `rpmdb.sqlite` holding `blobs`, written by Python's sqlite3.
fn rpmdb(blobs: &[Vec<u8>]) -> Vec<u8> {
    let script = r#"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
db.execute("CREATE TABLE Name (key TEXT NOT NULL, hnum INTEGER NOT NULL, idx INTEGER NOT NULL)")
for line in sys.stdin:
    db.execute("INSERT INTO Packages (blob) VALUES (?)", (bytes.fromhex(line.strip()),))
db.commit()
db.close()
"#;
    let input: String = blobs
        .iter()
        .map(|b| format!("{}\n", hex::encode(b)))
        .collect();
    written_by("python3", &["-c", script], input.as_bytes())
}

/// The headers of a small distribution: openssl (with an epoch), the signing key's
/// pseudo-package, a header larger than a page, and `fillers` more packages.
fn distribution(
    openssl: (&str, &str, &str),
    kernel_doc: (&str, &str, usize),
    fillers: usize,
    filler_version: &str,
    dist: &str,
) -> Vec<Vec<u8>> {
    let mut blobs = vec![
        header(
            openssl.0,
            Some(1),
            openssl.1,
            openssl.2,
            "x86_64",
            "A general purpose cryptography library",
        ),
        header(
            "gpg-pubkey",
            None,
            "fd431d51",
            "4ae0493b",
            "(none)",
            "gpg(Red Hat, Inc.)",
        ),
        header(
            "kernel-doc",
            None,
            kernel_doc.0,
            kernel_doc.1,
            "noarch",
            &"documentation ".repeat(kernel_doc.2),
        ),
    ];
    for i in 0..fillers {
        blobs.push(header(
            &format!("package-{i:03}"),
            None,
            filler_version,
            &format!("{i}.{dist}"),
            "x86_64",
            "filler",
        ));
    }
    blobs
}

#[test]
fn packages_are_read_from_rpmdb_sqlite() {
    // The kernel-doc header is bigger than a page: stored with overflow pages.
    let blobs = distribution(
        ("openssl", "3.0.7", "27.el9"),
        ("5.14.0", "427.el9", 1200),
        400,
        "1.0",
        "el9",
    );
    let bytes = rpmdb(&blobs);
    assert!(bytes.len() > 4 * 4096, "several pages");
    let found = parse_rpmdb_sqlite(&bytes).unwrap();
    assert_eq!(found.len(), 402, "every package but the signing key");
    let openssl = found.iter().find(|p| p.name == "openssl").unwrap();
    assert_eq!(
        openssl,
        &FoundPackage {
            kind: "rpm".into(),
            namespace: "x86_64".into(),
            name: "openssl".into(),
            version: "1:3.0.7-27.el9".into(),
            ..FoundPackage::default()
        }
    );
    assert!(
        found
            .iter()
            .any(|p| p.name == "kernel-doc" && p.version == "5.14.0-427.el9")
    );
    assert!(
        found
            .iter()
            .any(|p| p.name == "package-399" && p.version == "1.0-399.el9")
    );

    // Its package URL and the advisory it matches (OSV "Red Hat" ecosystem, rpm ordering).
    let os = OsRelease {
        id: "rhel".into(),
        version_id: "9.4".into(),
        pretty_name: String::new(),
    };
    let (purl, keys) = purl_of(openssl, Some(&os));
    assert_eq!(
        purl,
        "pkg:rpm/redhat/openssl@3.0.7-27.el9?arch=x86_64&distro=rhel-9&epoch=1"
    );
    let key_names: Vec<&str> = keys.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(
        key_names,
        [
            "pkg:rpm/redhat/openssl?distro=rhel-9",
            "pkg:rpm/redhat/openssl"
        ]
    );
    let component = stellaops_scanner::Component {
        purl,
        affects_keys: keys,
        kind: "rpm".into(),
        name: "openssl".into(),
        version: openssl.version.clone(),
        source: String::new(),
        source_version: String::new(),
        layer: "sha256:l".into(),
        path: "var/lib/rpm/rpmdb.sqlite".into(),
        used_by_entrypoint: None,
        license: None,
    };
    let row = |fixed: &str| AdvisoryRow {
        merge_hash: format!("h-{fixed}"),
        vuln_id: format!("RHSA-{fixed}"),
        affects_key: stellaops_federation::osv::affects_key(
            "Red Hat:enterprise_linux:9::baseos",
            "openssl",
            None,
        ),
        ecosystem: "Red Hat:enterprise_linux:9::baseos".into(),
        ranges: json!([{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]),
        versions: vec![],
        severity: Some("high".into()),
    };
    let findings = match_components(
        std::slice::from_ref(&component),
        &[
            row("1:3.0.7-28.el9"),
            row("1:3.0.7-24.el9"),
            row("3.0.8-1.el9"),
        ],
    );
    let ids: Vec<&str> = findings.iter().map(|f| f.vuln_id.as_str()).collect();
    // Fixed in 28: affected. Fixed in 24: not. 3.0.8 without epoch is older than epoch 1.
    assert_eq!(ids, ["RHSA-1:3.0.7-28.el9"]);
}

#[test]
fn corrupt_rpm_databases_are_errors_not_panics() {
    assert_eq!(
        parse_rpmdb_sqlite(b"not sqlite at all").unwrap_err(),
        "not an SQLite database"
    );
    let bytes = rpmdb(&[header(
        "bash",
        None,
        "5.1.8",
        "9.el9",
        "x86_64",
        "The GNU Bourne Again shell",
    )]);
    // Cut inside the header, the schema page and the Packages page.
    for cut in [100, 1000, 4096, 4096 + 100] {
        assert!(parse_rpmdb_sqlite(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    // Flipped bytes anywhere never panic.
    for at in (0..bytes.len()).step_by(97) {
        let mut broken = bytes.clone();
        broken[at] ^= 0xff;
        let _ = parse_rpmdb_sqlite(&broken);
    }
    assert_eq!(
        parse_rpmdb_sqlite(&bytes).unwrap()[0].version,
        "5.1.8-9.el9"
    );
}

/// A BerkeleyDB hash `Packages` file holding `blobs` under rpm's keys, written by
/// BerkeleyDB itself (`db5.3_load`, installed by scripts/services.sh).
fn packages_bdb(blobs: &[Vec<u8>]) -> Vec<u8> {
    let mut input = String::from("VERSION=3\nformat=bytevalue\ntype=hash\nHEADER=END\n");
    // Record 0: rpm's next instance number.
    input.push_str(&format!(
        " 00000000\n {}\n",
        hex::encode((blobs.len() as u32 + 1).to_le_bytes())
    ));
    for (i, blob) in blobs.iter().enumerate() {
        input.push_str(&format!(
            " {}\n {}\n",
            hex::encode((i as u32 + 1).to_le_bytes()),
            hex::encode(blob)
        ));
    }
    input.push_str("DATA=END\n");
    written_by("db5.3_load", &["-f", "/dev/stdin"], input.as_bytes())
}

#[test]
fn packages_are_read_from_a_berkeleydb_packages_file() {
    // The kernel-doc header is larger than a page: stored on overflow pages.
    let blobs = distribution(
        ("openssl-libs", "1.1.1k", "12.el8_9"),
        ("4.18.0", "513.el8", 1500),
        300,
        "2.0",
        "el8",
    );
    let bytes = packages_bdb(&blobs);
    let found = parse_rpmdb_bdb(&bytes).unwrap();
    assert_eq!(
        found.len(),
        302,
        "every package but the signing key and record 0"
    );
    assert!(found.contains(&FoundPackage {
        kind: "rpm".into(),
        namespace: "x86_64".into(),
        name: "openssl-libs".into(),
        version: "1:1.1.1k-12.el8_9".into(),
        source: "openssl".into(),
        ..FoundPackage::default()
    }));
    // Looked up as the binary RPM and as its source RPM, both at the installed EVR.
    let libs = found.iter().find(|p| p.name == "openssl-libs").unwrap();
    let os = OsRelease {
        id: "rhel".into(),
        version_id: "8.9".into(),
        pretty_name: String::new(),
    };
    let (purl, keys) = purl_of(libs, Some(&os));
    assert_eq!(
        purl,
        "pkg:rpm/redhat/openssl-libs@1.1.1k-12.el8_9?arch=x86_64&distro=rhel-8&epoch=1"
    );
    let keys: Vec<(&str, &str)> = keys
        .iter()
        .map(|k| (k.key.as_str(), k.version.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            (
                "pkg:rpm/redhat/openssl-libs?distro=rhel-8",
                "1:1.1.1k-12.el8_9"
            ),
            ("pkg:rpm/redhat/openssl-libs", "1:1.1.1k-12.el8_9"),
            ("pkg:rpm/redhat/openssl?distro=rhel-8", "1:1.1.1k-12.el8_9"),
            ("pkg:rpm/redhat/openssl", "1:1.1.1k-12.el8_9"),
        ]
    );
    assert_eq!(
        stellaops_scanner::rpmdb::split_source_rpm("xz-5.2.5-8.el9_0.src.rpm"),
        Some(("xz", "5.2.5-8.el9_0"))
    );
    assert_eq!(
        stellaops_scanner::rpmdb::split_source_rpm("python3.11-3.11.5-1.el9_3.src.rpm"),
        Some(("python3.11", "3.11.5-1.el9_3"))
    );
    assert_eq!(
        stellaops_scanner::rpmdb::split_source_rpm("nonsense.rpm"),
        None
    );
    assert!(
        found
            .iter()
            .any(|p| p.name == "kernel-doc" && p.version == "4.18.0-513.el8")
    );
    assert!(
        found
            .iter()
            .any(|p| p.name == "package-299" && p.version == "2.0-299.el8")
    );
    // Not BerkeleyDB, or cut short: errors, never panics.
    assert!(parse_rpmdb_bdb(b"definitely not a database").is_err());
    for cut in (0..bytes.len()).step_by(4096) {
        let _ = parse_rpmdb_bdb(&bytes[..cut]);
    }
    for at in (0..bytes.len()).step_by(251) {
        let mut broken = bytes.clone();
        broken[at] ^= 0xff;
        let _ = parse_rpmdb_bdb(&broken);
    }
}

/// An ndb `Packages.db` (SUSE) holding `blobs`, laid out as rpm's ndb backend writes it:
/// the `RpmP` header, 16-byte slots filling whole 4 KiB slot pages (a free slot among
/// the used ones), and each blob in 16-byte blocks after them, in the reverse order of its
/// slot: `BlbS`, index, generation, length, the header, padding, then the trailer (the
/// Adler-32 of all before it, the length, `BlbE`). Debian's rpm is built without the ndb
/// backend, so no outside writer exists here; the layout was checked against a real SLE 15
/// BCI image's `Packages.db` (outside the tests, see docs/scan.md).
fn packages_ndb(blobs: &[Vec<u8>]) -> Vec<u8> {
    let slots = blobs.len() + 1;
    let slot_pages = ((2 + slots) * 16).div_ceil(4096);
    let mut out = vec![0u8; slot_pages * 4096];
    let le = |v: u32| v.to_le_bytes();
    out[..4].copy_from_slice(b"RpmP");
    out[8..12].copy_from_slice(&le(7));
    out[12..16].copy_from_slice(&le(slot_pages as u32));
    out[16..20].copy_from_slice(&le(blobs.len() as u32 + 1));
    for slot in 0..(slot_pages * 4096 / 16 - 2) {
        out[32 + slot * 16..36 + slot * 16].copy_from_slice(b"Slot");
    }
    for (i, blob) in blobs.iter().enumerate().rev() {
        let index = i as u32 + 1;
        let offset = out.len();
        let blocks = (16 + blob.len() + 12).div_ceil(16);
        out.extend_from_slice(b"BlbS");
        for v in [index, 7, blob.len() as u32] {
            out.extend_from_slice(&le(v));
        }
        out.extend_from_slice(blob);
        out.resize(offset + blocks * 16 - 12, 0);
        let checksum = adler2::adler32_slice(&out[offset..]);
        for v in [checksum, blob.len() as u32] {
            out.extend_from_slice(&le(v));
        }
        out.extend_from_slice(b"BlbE");
        // Slot 3 stays free; the others in order.
        let slot = if i < 2 { i } else { i + 1 };
        let at = 32 + slot * 16 + 4;
        for (k, v) in [index, (offset / 16) as u32, blocks as u32]
            .into_iter()
            .enumerate()
        {
            out[at + 4 * k..at + 4 * k + 4].copy_from_slice(&le(v));
        }
    }
    out
}

#[test]
fn packages_are_read_from_an_ndb_packages_db() {
    // Enough packages for two slot pages; a header larger than a page.
    let blobs = distribution(
        ("openssl-1_1", "1.1.1w", "150600.5.3.1"),
        ("6.4.0", "150600.21.1", 1500),
        300,
        "2.0",
        "150600",
    );
    let bytes = packages_ndb(&blobs);
    let found = parse_rpmdb_ndb(&bytes).unwrap();
    assert_eq!(found.len(), 302, "every package but the signing key");
    // The same packages as the same headers in an rpmdb.sqlite SQLite wrote.
    assert_eq!(found, parse_rpmdb_sqlite(&rpmdb(&blobs)).unwrap());
    // Found where SUSE keeps it, and named as SUSE's packages.
    let layer = oci::tar_of(&[
        ("usr/lib/sysimage/rpm/Packages.db", bytes.as_slice()),
        (
            "etc/os-release",
            b"ID=\"sles\"\nVERSION_ID=\"15.6\"\nPRETTY_NAME=\"SUSE Linux Enterprise Server 15 SP6\"\n",
        ),
    ]);
    let fragment = stellaops_scanner::analyze::analyse_tar(layer.as_slice()).unwrap();
    let (components, _) = stellaops_scanner::merge(&[("sha256:l".to_string(), fragment)]);
    assert_eq!(components.len(), 302);
    assert!(
        components.iter().any(|c| c.purl
            == "pkg:rpm/suse/openssl-1_1@1.1.1w-150600.5.3.1?arch=x86_64&distro=sles-15&epoch=1"),
        "{:?}",
        components
            .iter()
            .map(|c| &c.purl)
            .take(3)
            .collect::<Vec<_>>()
    );
    // A changed byte in a blob fails its checksum; other damage is an error, never a
    // panic; a slot pointing outside the file, or two slots' blobs overlapping, likewise.
    let mut damaged = bytes.clone();
    let last = damaged.len() - 40;
    damaged[last] ^= 0x01;
    let error = parse_rpmdb_ndb(&damaged).unwrap_err();
    assert!(error.contains("checksum"), "{error}");
    assert!(parse_rpmdb_ndb(b"not a database at all").is_err());
    for cut in (0..bytes.len()).step_by(4093) {
        let _ = parse_rpmdb_ndb(&bytes[..cut]);
    }
    for at in (0..bytes.len()).step_by(257) {
        let mut broken = bytes.clone();
        broken[at] ^= 0xff;
        let _ = parse_rpmdb_ndb(&broken);
    }
    let mut outside = bytes.clone();
    outside[32 + 8..32 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(
        parse_rpmdb_ndb(&outside)
            .unwrap_err()
            .contains("outside the file")
    );
}

/// Build a noarch-less RPM with `rpmbuild` whose `%install` runs `install` and whose
/// `%files` lists `files`, in `topdir`; returns its path.
fn rpmbuild(
    topdir: &std::path::Path,
    name: &str,
    install: &str,
    files: &[&str],
) -> std::path::PathBuf {
    let specs = topdir.join("SPECS");
    std::fs::create_dir_all(&specs).unwrap();
    let spec = specs.join(format!("{name}.spec"));
    std::fs::write(
        &spec,
        format!(
            "Name: {name}\nVersion: 1.0\nRelease: 1\nSummary: {name}\nLicense: {license}\nAutoReqProv: no\n{vendor}\
             %description\n{name}\n%install\n{install}\n%files\n{}\n",
            files.join("\n"),
            // The distribution's own package, another vendor's, and one naming none.
            vendor = match name {
                "greeter" => "Vendor: Fedora Project\n",
                "unused-tool" => "Vendor: Example Corp\n",
                _ => "",
            },
            // One package declares an expression, as current Fedora writes them; one in
            // Fedora's legacy abbreviations, as RHEL 9 and older do.
            license = match name {
                "greeter" => "MIT AND (GPL-2.0-or-later OR Apache-2.0)",
                "minsh" => "GPLv3+ and (LGPLv2+ or ASL 2.0) and BSD",
                _ => "MIT",
            }
        ),
    )
    .unwrap();
    let out = Command::new("rpmbuild")
        .arg("--define")
        .arg(format!("_topdir {}", topdir.display()))
        .args([
            "--define",
            "_build_id_links none",
            "--define",
            "debug_package %{nil}",
            "--define",
            "__os_install_post %{nil}",
            "-bb",
        ])
        .arg(&spec)
        .output()
        .expect("rpmbuild (the rpm package, installed by scripts/services.sh)");
    assert!(
        out.status.success(),
        "rpmbuild {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rpms: Vec<std::path::PathBuf> = walk_files(&topdir.join("RPMS"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{name}-1.0")))
        })
        .collect();
    assert_eq!(rpms.len(), 1, "{rpms:?}");
    rpms[0].clone()
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The Usage view on an image whose packages `rpm` itself installed: the file lists come
/// from the real `rpmdb.sqlite` (DIRNAMES/BASENAMES/DIRINDEXES), a `/bin → usr/bin` link
/// is followed as on RHEL, and a package the entrypoint never reaches is known unused.
#[tokio::test]
async fn the_usage_view_reads_the_rpm_file_lists_of_a_database_rpm_wrote() {
    if stellaops_testing::service("STELLAOPS_TEST_DEBS").is_none() {
        return;
    }
    let Some(env) = crate::scan::env("scan_rpm_usage").await else {
        return;
    };
    let work = std::env::temp_dir().join(format!("stellaops-rpm-usage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let topdir = work.join("rpmbuild");
    let rpms = [
        rpmbuild(
            &topdir,
            "minsh",
            "mkdir -p %{buildroot}/usr/bin && cp /bin/dash %{buildroot}/usr/bin/sh",
            &["/usr/bin/sh"],
        ),
        rpmbuild(
            &topdir,
            "greeter",
            "mkdir -p %{buildroot}/usr/bin %{buildroot}/usr/libexec/greeter\n\
             printf '#!/bin/sh\\nexec /usr/libexec/greeter/run \"$@\"\\n' > %{buildroot}/usr/bin/greet\n\
             printf '#!/bin/sh\\necho hello\\n' > %{buildroot}/usr/libexec/greeter/run\n\
             chmod 755 %{buildroot}/usr/bin/greet %{buildroot}/usr/libexec/greeter/run\n\
             mkdir -p %{buildroot}/usr/lib/python3.12/site-packages/greeter-1.0.dist-info\n\
             printf 'Metadata-Version: 2.1\\nName: greeter\\nVersion: 1.0\\n' > %{buildroot}/usr/lib/python3.12/site-packages/greeter-1.0.dist-info/METADATA",
            &[
                "/usr/bin/greet",
                "/usr/libexec/greeter",
                "/usr/lib/python3.12/site-packages/greeter-1.0.dist-info",
            ],
        ),
        rpmbuild(
            &topdir,
            "unused-tool",
            "mkdir -p %{buildroot}/usr/bin && printf '#!/bin/sh\\n' > %{buildroot}/usr/bin/other && chmod 755 %{buildroot}/usr/bin/other\n\
             mkdir -p %{buildroot}/usr/lib/python3.12/site-packages/example_tool-2.0.dist-info\n\
             printf 'Metadata-Version: 2.1\\nName: example-tool\\nVersion: 2.0\\n' > %{buildroot}/usr/lib/python3.12/site-packages/example_tool-2.0.dist-info/METADATA",
            &[
                "/usr/bin/other",
                "/usr/lib/python3.12/site-packages/example_tool-2.0.dist-info",
            ],
        ),
    ];
    let root = work.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let rpm = |args: &[&str]| {
        let out = Command::new("rpm")
            .arg("--root")
            .arg(&root)
            .args(["--dbpath", "/var/lib/rpm"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "rpm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    rpm(&["--initdb"]);
    let mut install = vec!["-i", "--nodeps", "--noscripts", "--ignorearch"];
    let paths: Vec<String> = rpms.iter().map(|p| p.display().to_string()).collect();
    install.extend(paths.iter().map(String::as_str));
    rpm(&install);
    // rpm's own account of who owns what: the reference for ours.
    assert_eq!(
        rpm(&["-qf", "/usr/bin/sh", "--qf", "%{NAME}\n"]).trim(),
        "minsh"
    );
    for lock in ["rpmdb.sqlite-shm", "rpmdb.sqlite-wal", ".rpm.lock"] {
        let _ = std::fs::remove_file(root.join("var/lib/rpm").join(lock));
    }
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    std::fs::write(
        root.join("etc/os-release"),
        "ID=fedora\nVERSION_ID=40\nPRETTY_NAME=\"Fedora Linux 40\"\n",
    )
    .unwrap();
    let tar = stellaops_testing::oci::tar_dir(&root);

    // The layer's fragment holds each package's files as rpm recorded them.
    let fragment = stellaops_scanner::analyze::analyse_tar(tar.as_slice()).unwrap();
    // The same headers rpm wrote, moved into an ndb Packages.db (SUSE's layout), read the
    // same: packages and file lists.
    let real = std::fs::read(root.join("var/lib/rpm/rpmdb.sqlite")).unwrap();
    let blobs: Vec<Vec<u8>> = {
        let out = Command::new("python3")
            .args([
                "-c",
                "import sqlite3, sys\n\
                 for (b,) in sqlite3.connect(sys.argv[1]).execute('SELECT blob FROM Packages ORDER BY hnum'):\n\
                 \x20   print(bytes(b).hex())",
            ])
            .arg(root.join("var/lib/rpm/rpmdb.sqlite"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| hex::decode(l).unwrap())
            .collect()
    };
    assert_eq!(blobs.len(), 3);
    assert_eq!(
        stellaops_scanner::rpmdb::read_rpmdb_ndb(&packages_ndb(&blobs)).unwrap(),
        stellaops_scanner::rpmdb::read_rpmdb_sqlite(&real).unwrap()
    );
    // Each package's LICENSE and VENDOR tags as rpm itself reads them.
    for package in &fragment.files["var/lib/rpm/rpmdb.sqlite"] {
        let want = rpm(&["-q", &package.name, "--qf", "%{LICENSE}"]);
        assert_eq!(package.license, want.trim(), "{}", package.name);
        let want = rpm(&["-q", &package.name, "--qf", "%{VENDOR}"]);
        let want = if want.trim() == "(none)" {
            ""
        } else {
            want.trim()
        };
        assert_eq!(package.vendor, want, "{}", package.name);
    }
    assert!(
        fragment.files["var/lib/rpm/rpmdb.sqlite"]
            .iter()
            .any(|p| p.vendor == "Fedora Project")
    );
    assert!(
        fragment.files["var/lib/rpm/rpmdb.sqlite"]
            .iter()
            .any(|p| p.license == "MIT AND (GPL-2.0-or-later OR Apache-2.0)")
    );
    // The inventory declares the legacy tag in SPDX (the BSD family as a reference), and
    // keeps SPDX tags as they are.
    let (components, _) =
        stellaops_scanner::merge(&[("sha256:layer".to_string(), fragment.clone())]);
    let declared = |name: &str| {
        components
            .iter()
            .find(|c| c.name == format!("x86_64/{name}"))
            .and_then(|c| c.license.clone())
            .unwrap_or_else(|| panic!("{name} declares a license"))
            .expression
    };
    assert_eq!(
        declared("minsh"),
        "GPL-3.0-or-later AND (LGPL-2.1-or-later OR Apache-2.0) AND LicenseRef-BSD"
    );
    assert_eq!(
        declared("greeter"),
        "MIT AND (GPL-2.0-or-later OR Apache-2.0)"
    );
    let lists = &fragment.rpm_files["var/lib/rpm/rpmdb.sqlite"];
    for (package, file) in [
        ("minsh", "/usr/bin/sh"),
        ("greeter", "/usr/libexec/greeter/run"),
    ] {
        let listed: Vec<String> = rpm(&["-ql", package]).lines().map(str::to_string).collect();
        assert_eq!(
            lists[package], listed,
            "{package}: our file list is rpm -ql's"
        );
        assert!(listed.iter().any(|f| f == file), "{listed:?}");
    }

    let dir = work.join("layout");
    oci::write_layout_with_config(
        &dir,
        &[tar],
        "v1",
        json!({"Entrypoint": ["/usr/bin/greet"], "Env": ["PATH=/usr/bin:/bin"]}),
    );
    let repo = format!("stellaops-it/rpm-usage-{}", std::process::id());
    oci::push(&dir, "v1", &env.registry, &repo);
    let registry = RegistryClient::new(Default::default(), vec![]).unwrap();
    let scratch = work.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let job = crate::scan::default_job(&env, &registry, &scratch, None, false);
    let summary = scan(&job, &format!("{}/{repo}:v1", env.registry))
        .await
        .unwrap();
    let rows: Vec<(String, Option<bool>)> = sqlx::query_as(
        "SELECT purl, used_by_entrypoint FROM image_packages WHERE image_digest = $1 ORDER BY purl",
    )
    .bind(&summary.image_digest)
    .fetch_all(&env.pool)
    .await
    .unwrap();
    let used = |name: &str| {
        rows.iter()
            .find(|(purl, _)| purl.starts_with(&format!("pkg:rpm/fedora/{name}@")))
            .unwrap_or_else(|| panic!("{name} in {rows:?}"))
            .1
    };
    // greet → /bin/sh (through the /bin link) → run: greeter and minsh; nothing reaches
    // unused-tool, and with its file list that is known.
    assert_eq!(
        used("greeter"),
        Some(true),
        "{rows:?}, entrypoint {:?}",
        summary.entrypoint
    );
    assert_eq!(used("minsh"), Some(true), "{rows:?}");
    assert_eq!(used("unused-tool"), Some(false), "{rows:?}");
    assert_eq!(summary.used_components, Some(2));
    // The Python package Fedora's own `greeter` installed is greeter's, left to Fedora's
    // advisories; the one Example Corp's package installed is a component.
    assert!(
        rows.iter()
            .any(|(purl, _)| purl == "pkg:pypi/example-tool@2.0"),
        "{rows:?}"
    );
    assert!(
        !rows
            .iter()
            .any(|(purl, _)| purl.starts_with("pkg:pypi/greeter@")),
        "{rows:?}"
    );
    assert_eq!(summary.distro_installed, 1);
    std::fs::remove_dir_all(&work).ok();
}
