//! Java archives made of real jars: the Java libraries Debian ships (downloaded once by
//! scripts/services.sh into .test-services/java-debs, jars with the Maven metadata their
//! builds left), nested by Python's `zipfile` the way Spring Boot nests them (stored, under
//! `BOOT-INF/lib/`) and the way an EAR holds a WAR that holds jars (deflated). The scan
//! finds every artifact Python finds in the same jars, with the licenses their POMs,
//! manifests and license files declare, matches an advisory to a jar two levels deep, and both SBOMs pass
//! the official validators.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use stellaops_scanner::Policy;
use stellaops_testing::oci;
use stellaops_workers::registry::{Credentials, RegistryClient};
use stellaops_workers::scan::{Requester, ScanJob, scan};

use crate::debian::{cyclonedx_valid, pyspdxtools};
use crate::scan::{env, ingest, osv, push};

/// Builds `shop.jar` (Spring Boot) and `legacy.ear` (EAR > WAR > jars) in `argv[2]` from
/// the jars in `argv[1]`, and prints the Maven artifacts (`group:artifact:version`) that
/// the `pom.properties` of every jar put in them names: the reference for the scan.
const BUILD: &str = r##"
import json, sys, zipfile, io, os
jars, out = sys.argv[1], sys.argv[2]
def artifacts(data):
    found = []
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for name in z.namelist():
            if name.startswith("META-INF/maven/") and name.endswith("/pom.properties"):
                props = dict(l.split("=", 1) for l in z.read(name).decode().splitlines()
                             if "=" in l and not l.startswith("#"))
                found.append(":".join(props[k].strip() for k in ("groupId", "artifactId", "version")))
    return found
def read(name):
    with open(os.path.join(jars, name), "rb") as f:
        return f.read()
expected = []
app_pom = b"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>com.example</groupId><artifactId>shop</artifactId><version>1.4.2</version>
  <licenses><license><name>MIT License</name><url>https://opensource.org/licenses/MIT</url></license></licenses>
</project>
"""
with zipfile.ZipFile(os.path.join(out, "shop.jar"), "w", zipfile.ZIP_DEFLATED) as boot:
    boot.writestr("META-INF/MANIFEST.MF",
        "Manifest-Version: 1.0\r\nMain-Class: org.springframework.boot.loader.launch.JarLauncher\r\n"
        "Start-Class: com.example.shop.Application\r\nSpring-Boot-Classes: BOOT-INF/classes/\r\n"
        "Spring-Boot-Lib: BOOT-INF/lib/\r\nSpring-Boot-Classpath-Index: BOOT-INF/classpath.idx\r\n\r\n")
    boot.writestr("META-INF/maven/com.example/shop/pom.properties",
                  "groupId=com.example\nartifactId=shop\nversion=1.4.2\n")
    boot.writestr("META-INF/maven/com.example/shop/pom.xml", app_pom)
    boot.writestr("BOOT-INF/classes/com/example/shop/Application.class", b"\xca\xfe\xba\xbe")
    expected.append("com.example:shop:1.4.2")
    libs = ["jackson-databind.jar", "log4j-core.jar", "log4j-api.jar", "slf4j-api.jar", "commons-lang3.jar"]
    index = ""
    for lib in libs:
        data = read(lib)
        # Spring Boot stores nested jars uncompressed.
        boot.writestr(zipfile.ZipInfo("BOOT-INF/lib/" + lib), data, zipfile.ZIP_STORED)
        index += '- "BOOT-INF/lib/%s"\n' % lib
        expected += artifacts(data)
    boot.writestr("BOOT-INF/classpath.idx", index)
war = io.BytesIO()
with zipfile.ZipFile(war, "w", zipfile.ZIP_DEFLATED) as w:
    w.writestr("WEB-INF/web.xml", "<web-app/>")
    for lib in ["log4j-over-slf4j.jar", "jcl-over-slf4j.jar", "log4j-core.jar"]:
        data = read(lib)
        w.writestr("WEB-INF/lib/" + lib, data)
        expected += artifacts(data)
with zipfile.ZipFile(os.path.join(out, "legacy.ear"), "w", zipfile.ZIP_DEFLATED) as ear:
    ear.writestr("META-INF/application.xml", "<application><module><web><web-uri>legacy.war</web-uri></web></module></application>")
    ear.writestr("legacy.war", war.getvalue())
print(json.dumps(sorted(set(expected))))
"##;

/// The `.deb` files in `dir`, sorted.
fn debs_in(dir: &str) -> Vec<PathBuf> {
    let mut debs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort();
    debs
}

/// Unpacks each of the Debian packages `debs` into `root` (`dpkg-deb -x`).
fn unpack_debs(debs: &[PathBuf], root: &Path) {
    for deb in debs {
        let status = Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb)
            .arg(root)
            .status()
            .unwrap();
        assert!(status.success(), "dpkg-deb -x {}", deb.display());
    }
}

/// The Java runtime and the Debian packages the variable `debs` names, unpacked into the
/// scratch directory `name`; `None` (the test skips) without either.
fn java_and_unpacked(debs: &str, name: &str) -> Option<(String, PathBuf)> {
    let debs = stellaops_testing::service(debs)?;
    let java = stellaops_testing::service("STELLAOPS_TEST_JAVA")?;
    let root = stellaops_testing::scratch_dir(name);
    unpack_debs(&debs_in(&debs), &root);
    Some((java, root))
}

/// The jars and directories trace `t` reached on Java's class path, but those `left`
/// names (the launcher's own, the web applications).
fn reached_except(
    t: &stellaops_scanner::usage::Trace,
    left: impl Fn(&str) -> bool,
) -> BTreeSet<String> {
    t.language_files
        .iter()
        .chain(&t.language_dirs)
        .filter(|p| !left(p))
        .cloned()
        .collect()
}

/// Writes each `(path, bytes)` under `root`, making the directories on the way.
fn write_tree(root: &Path, files: &[(&str, &[u8])]) {
    for (path, bytes) in files {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, bytes).unwrap();
    }
}

/// The jars of the Debian packages in `debs`, unpacked into `work`.
fn debian_jars(debs: &Path, work: &Path) -> PathBuf {
    let root = work.join("root");
    unpack_debs(&debs_in(&debs.to_string_lossy()), &root);
    root.join("usr/share/java")
}

#[tokio::test]
async fn real_jars_nested_in_spring_boot_and_ear_archives_are_found_with_their_licenses() {
    let Some(debs) = stellaops_testing::service("STELLAOPS_TEST_JAVA_DEBS") else {
        return;
    };
    let Some(env) = env("scan_java").await else {
        return;
    };
    let work = stellaops_testing::scratch_dir("java");
    let jars = debian_jars(Path::new(&debs), &work);
    let python = std::env::var("STELLAOPS_TEST_PYTHON").expect("set by scripts/services.sh");
    let built = Command::new(python)
        .args(["-c", BUILD])
        .arg(&jars)
        .arg(&work)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let expected: BTreeSet<String> = serde_json::from_slice(&built.stdout).unwrap();
    // What the real jars hold, as Python read it: the test means nothing without them.
    for gav in [
        "com.fasterxml.jackson.core:jackson-databind:",
        "org.apache.logging.log4j:log4j-core:",
        "org.slf4j:log4j-over-slf4j:",
    ] {
        assert!(
            expected.iter().any(|e| e.starts_with(gav)),
            "{gav} in {expected:?}"
        );
    }
    let version_of = |ga: &str| {
        expected
            .iter()
            .find_map(|e| e.strip_prefix(&format!("{ga}:")))
            .unwrap()
            .to_string()
    };
    let log4j_version = version_of("org.apache.logging.log4j:log4j-core");
    let bridge_version = version_of("org.slf4j:log4j-over-slf4j");

    // Advisories fixed just above the versions Debian ships: log4j-core (in the Spring
    // Boot jar, one level down, and in the WAR) and log4j-over-slf4j (only in the EAR's
    // WAR, two levels down).
    ingest(
        &env.pool,
        vec![
            osv(
                "GHSA-T-LOG4J",
                "Maven",
                "org.apache.logging.log4j:log4j-core",
                json!([{"introduced": "2.0"}, {"fixed": format!("{log4j_version}.1")}]),
                "critical",
            ),
            osv(
                "GHSA-T-BRIDGE",
                "Maven",
                "org.slf4j:log4j-over-slf4j",
                json!([{"introduced": "0"}, {"fixed": format!("{bridge_version}.1")}]),
                "medium",
            ),
        ],
    )
    .await;
    let layer = oci::tar_of(&[
        (
            "etc/os-release",
            b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
        ),
        (
            "app/shop.jar",
            &std::fs::read(work.join("shop.jar")).unwrap(),
        ),
        (
            "opt/server/deployments/legacy.ear",
            &std::fs::read(work.join("legacy.ear")).unwrap(),
        ),
    ]);
    let pushed = push(&env, "java", vec![layer]);
    let registry = RegistryClient::new(Credentials::default(), vec![]).unwrap();
    let scratch = work.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let job = ScanJob {
        signer: None,
        registry: &registry,
        s3: &env.s3,
        bucket: &env.bucket,
        pool: &env.pool,
        platform: "linux/amd64",
        policy: Policy {
            fail_on: "critical".into(),
            ..Default::default()
        },
        requester: Requester::default(),
        spdx: true,
        scratch: &scratch,
        force: true,
    };
    let image = format!("{}/stellaops-it/java:v1", env.registry);
    let summary = scan(&job, &image).await.unwrap();
    assert_eq!(summary.image_digest, pushed.manifest_digest);
    assert_eq!(summary.verdict, "Fail");

    // Every artifact Python found, and nothing else.
    let cdx_bytes = crate::scan::read_uri(&env.s3, &summary.sbom_uri).await;
    let cdx: Value = serde_json::from_slice(&cdx_bytes).unwrap();
    let components = cdx["components"].as_array().unwrap();
    let found: BTreeSet<String> = components
        .iter()
        .filter_map(|c| c["purl"].as_str())
        .filter_map(|p| p.strip_prefix("pkg:maven/"))
        .map(|p| {
            let p = p.split('?').next().unwrap();
            let (ga, v) = p.split_once('@').unwrap();
            format!("{}:{v}", ga.replace('/', ":"))
        })
        .collect();
    assert_eq!(found, expected);

    // Licenses: from the POM's name and URL (jackson-databind), a name alone
    // (jcl-over-slf4j), a URL whose name is not one (log4j-over-slf4j: "Apache Software
    // Licenses"), the application's own POM; log4j-core's and commons-lang3's POMs name a
    // parent holding their licenses, which no jar carries, and their `META-INF/LICENSE`
    // holds the Apache License 2.0 word for word; slf4j-api's parent is slf4j-parent (MIT
    // for every module), log4j-api's group is the ASF's.
    let license_of = |name: &str| {
        let component = components
            .iter()
            .find(|c| {
                c["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with(&format!("/{name}")))
            })
            .unwrap_or_else(|| panic!("{name} in the SBOM"));
        component["licenses"].clone()
    };
    for (name, id) in [
        ("jackson-databind", "Apache-2.0"),
        ("jcl-over-slf4j", "Apache-2.0"),
        ("log4j-over-slf4j", "Apache-2.0"),
        ("shop", "MIT"),
        ("log4j-core", "Apache-2.0"),
        ("commons-lang3", "Apache-2.0"),
        ("slf4j-api", "MIT"),
        ("log4j-api", "Apache-2.0"),
    ] {
        assert_eq!(license_of(name), json!([{"license": {"id": id}}]), "{name}");
    }

    // Both advisories matched, at whatever depth their jar was.
    let findings: Vec<(String, String)> =
        sqlx::query_as("SELECT vuln_id, purl FROM scan_findings WHERE scan_id = $1 ORDER BY purl")
            .bind(summary.scan_id)
            .fetch_all(&env.pool)
            .await
            .unwrap();
    assert_eq!(
        findings,
        vec![
            (
                "GHSA-T-LOG4J".to_string(),
                format!("pkg:maven/org.apache.logging.log4j/log4j-core@{log4j_version}")
            ),
            (
                "GHSA-T-BRIDGE".to_string(),
                format!("pkg:maven/org.slf4j/log4j-over-slf4j@{bridge_version}")
            )
        ]
    );

    // The official validators accept both SBOMs.
    let (ok, report) = cyclonedx_valid(&cdx_bytes);
    assert!(ok, "{report}");
    let spdx = crate::scan::read_uri(
        &env.s3,
        &summary.sbom_uri.replace(".cdx.json", ".spdx.json"),
    )
    .await;
    let (ok, report) = pyspdxtools(&spdx);
    assert!(ok, "{report}");
    std::fs::remove_dir_all(&work).unwrap();
}

/// The license texts Debian ships in base-files (`/usr/share/common-licenses`): those the
/// matcher knows are recognised (the GNU licenses as their version, "or later" left open),
/// the others (GPL 1, GFDL, Artistic, MPL-1.1) are not taken for anything — each as
/// Debian's licensecheck reads it, where it names one license.
#[test]
fn debians_common_license_texts() {
    let Some(debs) = stellaops_testing::service("STELLAOPS_TEST_DEBS") else {
        return;
    };
    let base_files = std::fs::read_dir(&debs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("base-files_"))
        })
        .expect("base-files among the test packages");
    let work =
        std::env::temp_dir().join(format!("stellaops-common-licenses-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&base_files)
        .arg(&work)
        .status()
        .unwrap();
    assert!(status.success());
    let dir = work.join("usr/share/common-licenses");
    let mut seen = BTreeSet::new();
    let mut texts = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_symlink() {
            continue;
        }
        texts.push(path.clone());
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let want = match name.as_str() {
            "Apache-2.0" => Some("Apache-2.0"),
            "MPL-2.0" => Some("MPL-2.0"),
            // BSD-3-Clause naming the Regents of the University of California.
            "BSD" => Some("BSD-3-Clause"),
            "GPL-2" => Some("GPL-2.0"),
            "GPL-3" => Some("GPL-3.0"),
            "LGPL-2" => Some("LGPL-2.0"),
            "LGPL-2.1" => Some("LGPL-2.1"),
            "LGPL-3" => Some("LGPL-3.0"),
            "CC0-1.0" => Some("CC0-1.0"),
            _ => None,
        };
        assert_eq!(
            stellaops_scanner::license::license_file(&text).as_deref(),
            want,
            "{name}"
        );
        seen.insert(name);
    }
    for name in [
        "Apache-2.0",
        "MPL-2.0",
        "GPL-2",
        "GPL-3",
        "LGPL-2",
        "LGPL-2.1",
        "LGPL-3",
        "MPL-1.1",
        "BSD",
    ] {
        assert!(seen.contains(name), "{name} in {seen:?}");
    }
    texts.sort();
    if let Some(compared) = crate::licenses::agrees_with_licensecheck(&texts) {
        // licensecheck 3.3 names no license for the GPL 1 and 3 (UNKNOWN) and the old
        // GFDL; every other text it names.
        assert!(compared >= texts.len() - 3, "{compared} of {texts:?}");
    }
    std::fs::remove_dir_all(&work).unwrap();
}

/// The Maven artifacts (`group:artifact:version`) in the jars that are regular files
/// under `argv[1]`, as Python's `zipfile` reads their `pom.properties`.
const ARTIFACTS_IN_DIR: &str = r##"
import json, sys, zipfile, os
found = set()
for name in sorted(os.listdir(sys.argv[1])):
    path = os.path.join(sys.argv[1], name)
    if not name.endswith(".jar") or os.path.islink(path):
        continue
    with zipfile.ZipFile(path) as z:
        for entry in z.namelist():
            if entry.startswith("META-INF/maven/") and entry.endswith("/pom.properties"):
                props = dict(l.split("=", 1) for l in z.read(entry).decode().splitlines()
                             if "=" in l and not l.startswith("#"))
                found.add(":".join(props[k].strip() for k in ("groupId", "artifactId", "version")))
print(json.dumps(sorted(found)))
"##;

/// Debian's Java packages install jars with Maven metadata; their file lists (written from
/// `dpkg-deb -c` of the real packages) say so, and their maintainer is Debian's, so the
/// inventory holds the Debian packages (whose advisories know Debian's patches) and leaves
/// out every artifact of those jars, as Python finds them; the same jar copied into an
/// application's directory is the application's and is a component again.
#[test]
fn jars_debian_installed_are_its_packages_and_a_copy_is_the_applications() {
    use stellaops_scanner::analyze::analyse_tar;
    use stellaops_scanner::{merge_leaving_out, usage::Stacked};
    let Some(debs) = stellaops_testing::service("STELLAOPS_TEST_JAVA_DEBS") else {
        return;
    };
    let work = stellaops_testing::scratch_dir("java-distro");
    let packages = debs_in(&debs);
    let base = stellaops_testing::debian::rootfs_layer(&packages, &work);
    let jars = debian_jars(Path::new(&debs), &work);
    let python = std::env::var("STELLAOPS_TEST_PYTHON").expect("set by scripts/services.sh");
    let out = Command::new(python)
        .args(["-c", ARTIFACTS_IN_DIR])
        .arg(&jars)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let installed: BTreeSet<String> = serde_json::from_slice(&out.stdout).unwrap();
    let databind = installed
        .iter()
        .find(|a| a.starts_with("com.fasterxml.jackson.core:jackson-databind:"))
        .expect("libjackson2-databind-java's jar names its artifact")
        .clone();
    assert!(installed.len() >= 5, "{installed:?}");
    // The application's layer: the real jackson-databind jar, copied.
    let bytes = std::fs::read(jars.join("jackson-databind.jar")).unwrap();
    let app = oci::tar_of(&[("opt/app/lib/jackson-databind.jar", &bytes)]);
    std::fs::remove_dir_all(&work).unwrap();

    let gav = |c: &stellaops_scanner::Component| {
        let (group, artifact) = c.name.split_once('/').unwrap();
        format!("{group}:{artifact}:{}", c.version)
    };
    let base = ("sha256:base".to_string(), analyse_tar(&base[..]).unwrap());
    let only_base = [base.clone()];
    let stacked = Stacked::new(&only_base);
    let merged = merge_leaving_out(&only_base, |p| stacked.distro_installed(p));
    let debs_found: BTreeSet<&str> = merged
        .components
        .iter()
        .filter(|c| c.kind == "deb")
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        debs_found,
        BTreeSet::from([
            "libcommons-lang3-java",
            "libjackson2-databind-java",
            "liblog4j2-java",
            "libslf4j-java"
        ])
    );
    assert!(
        merged.components.iter().all(|c| c.kind == "deb"),
        "{:?}",
        merged.components
    );
    let left_out: BTreeSet<String> = merged.left_out.iter().map(gav).collect();
    assert_eq!(left_out, installed);
    assert!(
        merged
            .left_out
            .iter()
            .all(|c| c.path.starts_with("usr/share/java/"))
    );

    let both = [
        base,
        ("sha256:app".to_string(), analyse_tar(&app[..]).unwrap()),
    ];
    let stacked = Stacked::new(&both);
    let merged = merge_leaving_out(&both, |p| stacked.distro_installed(p));
    let maven: Vec<(String, &str)> = merged
        .components
        .iter()
        .filter(|c| c.kind == "maven")
        .map(|c| (gav(c), c.path.as_str()))
        .collect();
    assert_eq!(
        maven,
        [(databind.clone(), "opt/app/lib/jackson-databind.jar")]
    );
    let left_out: BTreeSet<String> = merged.left_out.iter().map(gav).collect();
    let mut rest = installed;
    rest.remove(&databind);
    assert_eq!(left_out, rest);
}

/// Writes `argv[2]` as a Java archive holding `META-INF/maven/<group>/<artifact>/pom.properties`
/// for `argv[1]` (`group:artifact:version`).
const ARCHIVE_WITH_POM: &str = r##"
import sys, zipfile
group, artifact, version = sys.argv[1].split(":")
with zipfile.ZipFile(sys.argv[2], "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\r\n\r\n")
    z.writestr(f"META-INF/maven/{group}/{artifact}/pom.properties",
               f"groupId={group}\nartifactId={artifact}\nversion={version}\n")
"##;

/// Tomcat as Debian packages it, started the way Debian's unit starts it: its own
/// `tomcat-start.sh` (which sources `/etc/default/tomcat10` and the Java locator, then
/// `exec`s `catalina.sh run` from CATALINA_BASE) is followed to Tomcat, whose real
/// `server.xml` (comments and all, through the `conf → /etc/tomcat10` link) deploys from
/// `webapps`: a WAR there is used, a jar elsewhere is not, and the common loader's jars
/// (links in `lib/` into /usr/share/java, and a directory added to Debian's own
/// `catalina.properties`) are reached where they lie.
#[test]
fn debians_tomcat_started_by_its_own_script_uses_the_war_in_its_webapps() {
    use stellaops_scanner::analyze::analyse_tar;
    use stellaops_scanner::usage::{RunConfig, Stacked};
    let Some(debs) = stellaops_testing::service("STELLAOPS_TEST_TOMCAT_DEBS") else {
        return;
    };
    let work = stellaops_testing::scratch_dir("tomcat");
    let packages = debs_in(&debs);
    let base = stellaops_testing::debian::rootfs_layer(&packages, &work);
    // What tomcat10's postinst installs from its templates (ucf): server.xml and the
    // service defaults.
    let unpacked = work.join("unpacked");
    unpack_debs(&packages, &unpacked);
    let server_xml = std::fs::read(unpacked.join("usr/share/tomcat10/etc/server.xml")).unwrap();
    assert!(
        String::from_utf8_lossy(&server_xml).contains("<!--"),
        "Debian's server.xml keeps commented examples"
    );
    let defaults = std::fs::read(unpacked.join("usr/share/tomcat10/default.template")).unwrap();
    // Debian's catalina.properties (also installed into /etc/tomcat10 by the postinst),
    // with one repository added to the common loader, as an administrator adds one.
    let properties =
        std::fs::read_to_string(unpacked.join("usr/share/tomcat10/etc/catalina.properties"))
            .unwrap();
    let default_loader = "common.loader=\"${catalina.base}/lib\",\"${catalina.base}/lib/*.jar\",\"${catalina.home}/lib\",\"${catalina.home}/lib/*.jar\"\n";
    assert!(
        properties.contains(default_loader),
        "Debian's common loader"
    );
    let properties = properties.replace(
        default_loader,
        &format!(
            "{}, \\\n  \"/opt/shared/*.jar\"\n",
            default_loader.trim_end()
        ),
    );
    let python = std::env::var("STELLAOPS_TEST_PYTHON").expect("set by scripts/services.sh");
    let archive = |gav: &str, name: &str| {
        let path = work.join(name);
        let out = Command::new(&python)
            .args(["-c", ARCHIVE_WITH_POM, gav])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read(path).unwrap()
    };
    let war = archive("com.example:shop:1.4.2", "shop.war");
    let tool = archive("com.example:tool:0.9", "tool.jar");
    let audit = archive("com.example:audit:2.0", "audit.jar");
    let app = oci::tar_of(&[
        ("etc/tomcat10/server.xml", &server_xml),
        ("etc/tomcat10/catalina.properties", properties.as_bytes()),
        ("opt/shared/audit.jar", &audit),
        ("etc/default/tomcat10", &defaults),
        ("var/lib/tomcat10/webapps/shop.war", &war),
        ("opt/tools/tool.jar", &tool),
    ]);
    std::fs::remove_dir_all(&work).unwrap();

    let fragments = [
        ("sha256:debian".to_string(), analyse_tar(&base[..]).unwrap()),
        ("sha256:app".to_string(), analyse_tar(&app[..]).unwrap()),
    ];
    let stacked = Stacked::new(&fragments);
    let mut merged =
        stellaops_scanner::merge_leaving_out(&fragments, |p| stacked.distro_installed(p));
    let config = RunConfig {
        entrypoint: vec!["/usr/libexec/tomcat10/tomcat-start.sh".into()],
        env: vec![
            "PATH=/usr/local/bin:/usr/bin:/bin".into(),
            "CATALINA_HOME=/usr/share/tomcat10".into(),
            "CATALINA_BASE=/var/lib/tomcat10".into(),
            "JAVA_HOME=/usr/lib/jvm/default-java".into(),
        ],
        ..RunConfig::default()
    };
    let view = stacked.usage(&config, &mut merged.components);
    let chain: Vec<&str> = view.trace.chain.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        chain,
        [
            "/usr/libexec/tomcat10/tomcat-start.sh",
            "/bin/dash",
            "/usr/share/tomcat10/bin/catalina.sh",
            "class org.apache.catalina.startup.Bootstrap"
        ],
        "{:#?}",
        view.trace
    );
    let used = |artifact: &str| {
        merged
            .components
            .iter()
            .find(|c| c.name == format!("com.example/{artifact}"))
            .unwrap_or_else(|| panic!("{artifact} in {:?}", merged.components))
            .used_by_entrypoint
    };
    // server.xml was read (through the link), not assumed.
    assert!(
        !view.trace.notes.iter().any(|n| n.contains("server.xml")),
        "{:?}",
        view.trace.notes
    );
    assert_eq!(used("shop"), Some(true), "{:#?}", view.trace);
    assert_eq!(used("tool"), Some(false), "{:#?}", view.trace);
    // The jar of the repository added to catalina.properties' common loader.
    assert_eq!(used("audit"), Some(true), "{:#?}", view.trace);
    // The common loader's jars are links into /usr/share/java, followed to the files
    // (Debian's Tomcat jars are named by their manifests as Maven artifacts, and left
    // out as files a Debian package installed: they are the Debian packages only).
    assert!(
        view.trace
            .language_files
            .iter()
            .any(|f| f.starts_with("/usr/share/java/tomcat10-catalina")),
        "{:?}",
        view.trace.language_files
    );
    assert!(
        merged
            .components
            .iter()
            .all(|c| c.kind == "deb" || c.name.starts_with("com.example/")),
        "{:?}",
        merged.components
    );
}

/// The repositories of Tomcat's class loaders, as Debian's Tomcat itself builds them:
/// its own `catalina.sh run` is started on a `catalina.properties` whose loaders name
/// directories, `dir/*.jar` globs and jars through `${catalina.base}`/`${catalina.home}`,
/// a property the file sets (over the same one on the command line), one only the
/// command line (`CATALINA_OPTS`) sets and one nobody sets; Tomcat's `ClassLoaderFactory`
/// logs each directory and jar it includes (at `FINE`, through the base's
/// `logging.properties`), and the scanner's trace of an image holding the same tree must
/// reach exactly those, besides the bootstrap class path.
#[test]
fn tomcats_class_loaders_are_the_repositories_tomcat_itself_includes() {
    use stellaops_scanner::analyze::analyse_tar;
    use stellaops_scanner::usage::{RunConfig, Vfs, trace};
    let Some((java, root)) = java_and_unpacked("STELLAOPS_TEST_TOMCAT_DEBS", "tomcat-loaders")
    else {
        return;
    };
    let jar = std::fs::read(root.join("usr/share/java/tomcat10-util.jar")).unwrap();
    let properties = "common.loader=\"${catalina.base}/lib\",\"${catalina.base}/lib/*.jar\",\
        \"${catalina.home}/lib\",\"${catalina.home}/lib/*.jar\",\\\n  \
        \"${app.libs}/*.jar\",${extra.dir}/classes,\"${extra.dir}/tool.jar\",\"${undefined.dir}/x.jar\"\n\
        server.loader=${catalina.base}/server/*.jar\n\
        shared.loader=\"${catalina.base}/shared\"\n\
        app.libs=opt/libs\n";
    let logging = "handlers = java.util.logging.ConsoleHandler\n\
        java.util.logging.ConsoleHandler.level = ALL\n\
        org.apache.catalina.startup.ClassLoaderFactory.level = ALL\n";
    write_tree(
        &root,
        &[
            ("srv/base/conf/catalina.properties", properties.as_bytes()),
            ("srv/base/conf/logging.properties", logging.as_bytes()),
            ("srv/base/lib/base.jar", &jar),
            ("srv/base/server/server.jar", &jar),
            ("srv/base/shared/classes.txt", b"".as_slice()),
            ("opt/libs/a.jar", &jar),
            ("opt/libs/b.jar", &jar),
            // Named by the command line's app.libs, which catalina.properties overrides.
            ("opt/other/c.jar", &jar),
            ("opt/extra/classes/x.txt", b"".as_slice()),
            ("opt/extra/tool.jar", &jar),
            ("opt/extra/unlisted.jar", &jar),
        ],
    );
    // Both run from the root, with the same environment (relative directories).
    let env = [
        ("CATALINA_HOME", "usr/share/tomcat10"),
        ("CATALINA_BASE", "srv/base"),
        (
            "CATALINA_OPTS",
            "-Dextra.dir=opt/extra -Dapp.libs=opt/other",
        ),
    ];
    let java_home = std::fs::canonicalize(&java)
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    let out = Command::new("sh")
        .args(["usr/share/tomcat10/bin/catalina.sh", "run"])
        .current_dir(&root)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("JAVA_HOME", &java_home)
        .envs(env)
        .output()
        .unwrap();
    // No server.xml: Tomcat stops after building its class loaders.
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let host_root = format!("{}/", root.canonicalize().unwrap().display());
    let mut included: BTreeSet<String> = BTreeSet::new();
    for line in log.lines() {
        let Some((_, what)) = line.split_once("Including ") else {
            continue;
        };
        let path = if let Some(url) = what.strip_prefix("directory file:") {
            url.trim_end_matches('/')
        } else if let Some(url) = what.strip_prefix("jar file file:") {
            url
        } else if let Some(path) = what.strip_prefix("glob jar file ") {
            path
        } else {
            continue;
        };
        let image = path
            .strip_prefix(&host_root)
            .unwrap_or_else(|| panic!("{path} is outside {host_root}"));
        included.insert(format!("/{image}"));
    }
    for expected in [
        "/srv/base/lib",
        "/srv/base/lib/base.jar",
        "/opt/libs/a.jar",
        "/opt/extra/classes",
        "/opt/extra/tool.jar",
        "/srv/base/server/server.jar",
        "/srv/base/shared",
    ] {
        assert!(
            included.contains(expected),
            "Tomcat included {included:#?}\n{log}"
        );
    }
    assert!(
        included
            .iter()
            .any(|p| p.starts_with("/usr/share/java/tomcat10-catalina")),
        "{included:#?}"
    );

    let fragment = analyse_tar(&oci::tar_dir(&root)[..]).unwrap();
    std::fs::remove_dir_all(&root).unwrap();
    let vfs = Vfs::merge([&fragment]);
    let config = RunConfig {
        entrypoint: vec!["/usr/share/tomcat10/bin/catalina.sh".into(), "run".into()],
        env: std::iter::once("PATH=/usr/bin:/bin".to_string())
            .chain(env.iter().map(|(k, v)| format!("{k}={v}")))
            .collect(),
        working_dir: "/".into(),
        ..RunConfig::default()
    };
    let t = trace(&vfs, &config);
    let reached = reached_except(&t, |p| {
        p.starts_with("/usr/share/tomcat10/bin/") || p.contains("-juli")
    });
    assert_eq!(reached, included, "{t:#?}");
    assert!(
        t.notes.iter().any(|n| n.contains("${undefined.dir}/x.jar")),
        "{:?}",
        t.notes
    );
}

/// The class path of Jetty's modules, as Debian's Jetty 9.4 itself works it out: its own
/// `start.jar --list-config` on a base whose `start.d` enables modules (with their
/// dependencies, provided names and `${jetty.version}` libraries, the `ext` module's
/// `lib/ext/**.jar` and the `resources` directory) and one more module on the command
/// line; the scanner's trace of an image holding the same tree must reach exactly the
/// jars and directories Jetty lists (besides start.jar and the web applications), so a
/// jar of a module nobody enables (`jetty-proxy`) or in the base's `lib/` is unused.
#[test]
fn jettys_modules_put_on_the_class_path_what_jettys_own_start_jar_lists() {
    use stellaops_scanner::analyze::analyse_tar;
    use stellaops_scanner::usage::{RunConfig, Vfs, trace};
    let Some((java, root)) = java_and_unpacked("STELLAOPS_TEST_JETTY_DEBS", "jetty-modules") else {
        return;
    };
    let jar = std::fs::read(root.join("usr/share/java/jetty9-util.jar")).unwrap();
    write_tree(
        &root,
        &[
        (
            "var/lib/jetty/start.d/server.ini",
            b"# the official image's way\n--module=deploy,http,jsp,jstl,websocket,ext,resources\njetty.http.port=8080\n"
                .as_slice(),
        ),
        ("var/lib/jetty/start.d/off.ini", b"# --module=proxy\n".as_slice()),
        ("var/lib/jetty/lib/ext/audit/audit.jar", &jar),
        ("var/lib/jetty/lib/unused.jar", &jar),
        ("var/lib/jetty/resources/jetty-logging.properties", b"".as_slice()),
        ("var/lib/jetty/webapps/shop.war", &jar),
        ],
    );
    // A `java` for the image's PATH (the trace only needs an executable there).
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::copy("/bin/true", root.join("usr/bin/java")).unwrap();
    // The image as Debian lays it out; then, for the real run here, the package's
    // absolute links (`etc → /etc/jetty9`) pointed into the unpacked tree.
    let fragment = analyse_tar(&oci::tar_dir(&root)[..]).unwrap();
    let host_root = root.canonicalize().unwrap();
    let out = Command::new("find")
        .arg(&root)
        .args(["-type", "l", "-lname", "/*"])
        .output()
        .unwrap();
    for link in String::from_utf8(out.stdout).unwrap().lines() {
        let target = std::fs::read_link(link).unwrap();
        std::fs::remove_file(link).unwrap();
        std::os::unix::fs::symlink(host_root.join(target.strip_prefix("/").unwrap()), link)
            .unwrap();
    }
    // Debian's start.jar names jetty-util by its absolute path in its manifest.
    let home = host_root.join("usr/share/jetty9");
    let out = Command::new(&java)
        .arg("-cp")
        .arg(format!(
            "{}:{}",
            home.join("start.jar").display(),
            host_root.join("usr/share/java/jetty9-util.jar").display()
        ))
        .arg("org.eclipse.jetty.start.Main")
        .arg(format!("jetty.home={}", home.display()))
        .arg(format!(
            "jetty.base={}",
            host_root.join("var/lib/jetty").display()
        ))
        .args(["--module=jmx", "--list-config"])
        .current_dir(&root)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{listing}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prefix = format!("{}/", host_root.display());
    let class_path: BTreeSet<String> = listing
        .lines()
        .skip_while(|l| !l.starts_with("Jetty Server Classpath"))
        .take_while(|l| !l.starts_with("Jetty Active XMLs"))
        .filter_map(|l| l.split_once(" | ").map(|(_, path)| path.trim()))
        .map(|path| {
            // Jetty writes what lies in its base or home from `${jetty.base}`/`${jetty.home}`.
            let path = path
                .replace("${jetty.base}", &format!("{prefix}var/lib/jetty"))
                .replace("${jetty.home}", &home.display().to_string());
            let image = path
                .strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("{path} is outside {prefix}"));
            format!("/{}", image.trim_end_matches('/'))
        })
        .collect();
    for expected in [
        "/usr/share/java/jetty9-server.jar",
        "/usr/share/java/jetty9-jmx.jar",
        "/usr/share/java/jetty9-deploy.jar",
        "/var/lib/jetty/lib/ext/audit/audit.jar",
        "/var/lib/jetty/resources",
    ] {
        assert!(class_path.contains(expected), "{expected}: {listing}");
    }
    std::fs::remove_dir_all(&root).unwrap();

    let vfs = Vfs::merge([&fragment]);
    let config = RunConfig {
        entrypoint: vec![
            "java".into(),
            "-jar".into(),
            "/usr/share/jetty9/start.jar".into(),
            "jetty.base=/var/lib/jetty".into(),
            "--module=jmx".into(),
        ],
        env: vec!["PATH=/usr/bin:/bin".into()],
        working_dir: "/var/lib/jetty".into(),
        ..RunConfig::default()
    };
    let t = trace(&vfs, &config);
    let reached = reached_except(&t, |p| {
        p.ends_with("-start.jar") || p.starts_with("/var/lib/jetty/webapps")
    });
    assert_eq!(reached, class_path, "{t:#?}");
    assert!(t.language_dirs.contains("/var/lib/jetty/webapps"), "{t:#?}");
}

/// Tomcat's own jars (built with Ant and bnd: no `pom.properties`) are named by their
/// manifests as the Maven artifacts they are published as — checked against Debian's
/// packaging of Tomcat and of the embedded Tomcat, which links each jar from its Maven
/// coordinates under `/usr/share/maven-repo` — and Tomcat laid out as the official image
/// lays it out (`/usr/local/tomcat/lib/catalina.jar`, …), beside an exploded Spring Boot
/// application's `tomcat-embed-core`, is matched against Tomcat's advisories.
#[tokio::test]
async fn tomcats_own_jars_are_its_maven_artifacts() {
    let Some(debs) = stellaops_testing::service("STELLAOPS_TEST_TOMCAT_DEBS") else {
        return;
    };
    let Some(env) = env("scan_tomcat").await else {
        return;
    };
    let work = stellaops_testing::scratch_dir("tomcat-jars");
    let java = debian_jars(Path::new(&debs), &work);
    let repo = work.join("root/usr/share/maven-repo");
    // Debian's coordinates of each jar: maven-repo/<group path>/<artifact>/<version>/<file>.
    let mut coordinates = Vec::new();
    let mut dirs = vec![repo.join("org/apache/tomcat")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let version_dir = path.parent().unwrap();
            let artifact_dir = version_dir.parent().unwrap();
            let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
            let (a, v) = (name(artifact_dir), name(version_dir));
            // Debian's version-less alias (`10.x`) links the same jar.
            if file != format!("{a}-{v}.jar") || v.ends_with(".x") {
                continue;
            }
            let group = artifact_dir
                .parent()
                .unwrap()
                .strip_prefix(&repo)
                .unwrap()
                .to_string_lossy()
                .replace('/', ".");
            let target = std::fs::canonicalize(&path).unwrap();
            assert!(target.starts_with(std::fs::canonicalize(&java).unwrap()));
            coordinates.push((group, a, v, target));
        }
    }
    coordinates.sort();
    assert!(coordinates.len() >= 29, "{coordinates:?}");
    // The embedded Tomcat's jars are there, under their own group.
    for embedded in ["tomcat-embed-core", "tomcat-embed-el"] {
        assert!(
            coordinates
                .iter()
                .any(|(g, a, ..)| g == "org.apache.tomcat.embed" && a == embedded),
            "{embedded}: {coordinates:?}"
        );
    }
    let mut named = BTreeSet::new();
    let mut unnamed = BTreeSet::new();
    for (group, artifact, version, jar) in &coordinates {
        let found = stellaops_scanner::analyze::parse_jar(
            &jar.file_name().unwrap().to_string_lossy(),
            &std::fs::read(jar).unwrap(),
        );
        match found.as_slice() {
            [] => {
                unnamed.insert(artifact.clone());
            }
            [one] => {
                assert_eq!(
                    (&one.namespace, &one.name, &one.version),
                    (group, artifact, version),
                    "{}",
                    jar.display()
                );
                assert_eq!(one.license, "Apache-2.0", "{artifact}");
                named.insert(artifact.clone());
            }
            more => panic!("{}: {more:?}", jar.display()),
        }
    }
    // Every jar with a bundle name is named (the embedded EL jar, bundle
    // `tomcat-embed-jasper-el`, as `tomcat-embed-el`); those without one (the
    // translations, the Ant tasks, jdbc-pool) are left unnamed rather than guessed.
    for artifact in [
        "tomcat-catalina",
        "tomcat-coyote",
        "tomcat-util",
        "tomcat-servlet-api",
        "tomcat-embed-core",
        "tomcat-embed-el",
    ] {
        assert!(named.contains(artifact), "{artifact}: {named:?}");
    }
    assert!(
        unnamed.iter().all(|a| a.starts_with("tomcat-i18n-")
            || a == "tomcat-catalina-ant"
            || a == "tomcat-jdbc"),
        "{unnamed:?}"
    );

    // The official image's layout: the same jars under upstream's file names.
    let jar_of = |artifact: &str| {
        let (.., path) = coordinates.iter().find(|(_, a, ..)| a == artifact).unwrap();
        std::fs::read(path).unwrap()
    };
    let version = coordinates[0].2.clone();
    let (catalina, coyote, juli, embedded) = (
        jar_of("tomcat-catalina"),
        jar_of("tomcat-coyote"),
        jar_of("tomcat-juli"),
        jar_of("tomcat-embed-core"),
    );
    let exploded = format!("workspace/BOOT-INF/lib/tomcat-embed-core-{version}.jar");
    let layer = oci::tar_of(&[
        (
            "etc/os-release",
            b"PRETTY_NAME=\"Ubuntu 24.04 LTS\"\nID=ubuntu\nVERSION_ID=\"24.04\"\n",
        ),
        ("usr/local/tomcat/lib/catalina.jar", &catalina),
        ("usr/local/tomcat/lib/tomcat-coyote.jar", &coyote),
        ("usr/local/tomcat/bin/tomcat-juli.jar", &juli),
        // A Spring Boot application as buildpacks lay it out (the jar exploded).
        (exploded.as_str(), &embedded),
    ]);
    // An advisory fixed just above the version Debian ships, one fixed below it.
    ingest(
        &env.pool,
        vec![
            osv(
                "GHSA-T-CATALINA",
                "Maven",
                "org.apache.tomcat:tomcat-catalina",
                json!([{"introduced": "10.1.0-M1"}, {"fixed": format!("{version}.1")}]),
                "high",
            ),
            osv(
                "GHSA-T-EMBED",
                "Maven",
                "org.apache.tomcat.embed:tomcat-embed-core",
                json!([{"introduced": "10.1.0-M1"}, {"fixed": format!("{version}.1")}]),
                "high",
            ),
            osv(
                "GHSA-T-COYOTE-OLD",
                "Maven",
                "org.apache.tomcat:tomcat-coyote",
                json!([{"introduced": "10.1.0-M1"}, {"fixed": "10.1.1"}]),
                "high",
            ),
        ],
    )
    .await;
    let scratch = work.join("scratch");
    let (cdx_bytes, purls, findings) = scan_layer(&env, "tomcat", layer, &scratch).await;
    let expected: BTreeSet<String> = [
        "org.apache.tomcat/tomcat-catalina",
        "org.apache.tomcat/tomcat-coyote",
        "org.apache.tomcat/tomcat-juli",
        "org.apache.tomcat.embed/tomcat-embed-core",
    ]
    .iter()
    .map(|ga| format!("pkg:maven/{ga}@{version}"))
    .collect();
    assert_eq!(purls, expected);
    assert_eq!(
        findings,
        vec![
            (
                "GHSA-T-CATALINA".to_string(),
                format!("pkg:maven/org.apache.tomcat/tomcat-catalina@{version}")
            ),
            (
                "GHSA-T-EMBED".to_string(),
                format!("pkg:maven/org.apache.tomcat.embed/tomcat-embed-core@{version}")
            )
        ]
    );
    let (ok, report) = cyclonedx_valid(&cdx_bytes);
    assert!(ok, "{report}");
    std::fs::remove_dir_all(&work).unwrap();
}

/// Pushes `layer` as `stellaops-it/<name>:v1`, scans it (forced, the default policy, with
/// `scratch` as the worker's scratch directory) and returns its CycloneDX SBOM, the package
/// URLs in it, and the findings (advisory, package URL) the scan stored.
async fn scan_layer(
    env: &crate::scan::Env,
    name: &str,
    layer: Vec<u8>,
    scratch: &Path,
) -> (Vec<u8>, BTreeSet<String>, Vec<(String, String)>) {
    push(env, name, vec![layer]);
    let registry = RegistryClient::new(Credentials::default(), vec![]).unwrap();
    std::fs::create_dir_all(scratch).unwrap();
    let job = crate::scan::default_job(env, &registry, scratch, None, false);
    let image = format!("{}/stellaops-it/{name}:v1", env.registry);
    let summary = scan(&job, &image).await.unwrap();
    let cdx_bytes = crate::scan::read_uri(&env.s3, &summary.sbom_uri).await;
    let cdx: Value = serde_json::from_slice(&cdx_bytes).unwrap();
    let purls = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["purl"].as_str().map(String::from))
        .collect();
    let findings = sqlx::query_as(
        "SELECT vuln_id, purl FROM scan_findings WHERE scan_id = $1 ORDER BY vuln_id",
    )
    .bind(summary.scan_id)
    .fetch_all(&env.pool)
    .await
    .unwrap();
    (cdx_bytes, purls, findings)
}

/// A jar's `pom.properties` coordinates (`group:artifact@version`), the (group, artifact)
/// every `pom.xml` in it declares as a dependency (`${scala.binary.version}` read as 2.12),
/// and its manifest.
fn maven_metadata(jar: &[u8]) -> (BTreeSet<String>, BTreeSet<(String, String)>, String) {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(jar)).unwrap();
    let names: Vec<String> = archive.file_names().map(str::to_string).collect();
    let mut read = |name: &str| {
        let mut text = String::new();
        archive
            .by_name(name)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    };
    let (mut coordinates, mut declared) = (BTreeSet::new(), BTreeSet::new());
    for name in names.iter().filter(|n| n.starts_with("META-INF/maven/")) {
        if name.ends_with("/pom.properties") {
            let text = read(name);
            let value = |key: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                    .unwrap()
                    .trim()
                    .to_string()
            };
            coordinates.insert(format!(
                "{}:{}@{}",
                value("groupId"),
                value("artifactId"),
                value("version")
            ));
        } else if name.ends_with("/pom.xml") {
            let text = read(name);
            let tag = |block: &str, tag: &str| {
                let from = block.find(&format!("<{tag}>"))? + tag.len() + 2;
                let to = from + block[from..].find(&format!("</{tag}>"))?;
                Some(
                    block[from..to]
                        .trim()
                        .replace("${scala.binary.version}", "2.12"),
                )
            };
            for block in text.split("<dependency>").skip(1) {
                let block = block.split("</dependency>").next().unwrap();
                if let (Some(g), Some(a)) = (tag(block, "groupId"), tag(block, "artifactId")) {
                    declared.insert((g, a));
                }
            }
        }
    }
    let manifest = if names.iter().any(|n| n == "META-INF/MANIFEST.MF") {
        read("META-INF/MANIFEST.MF")
    } else {
        String::new()
    };
    (coordinates, declared, manifest)
}

/// Apache Spark's and Allure's jars as they ship them (Maven Central's builds, downloaded by
/// scripts/services.sh): 302 jars, 52 of them without a `pom.properties`. Where a jar has one,
/// the manifest never names anything else (the rule is held to 250 real answers); of those
/// without, the sbt-built Scala libraries, Ant- and Gradle-built ones of the known bundles are
/// named, each a (group, artifact) the distributions' own POMs declare as a dependency (but
/// five whose dependents are sbt- or Gradle-built and carry no POM), the rest left unnamed.
/// Then a scan of an image laid out as the official Spark image matches advisories to them.
#[tokio::test]
async fn jars_without_pom_properties_are_named_as_maven_central_publishes_them() {
    let Some(jars) = stellaops_testing::service("STELLAOPS_TEST_MAVEN_JARS") else {
        return;
    };
    let Some(env) = env("scan_spark").await else {
        return;
    };
    let (mut agreed, mut named, mut unnamed) = (0, BTreeSet::new(), BTreeSet::new());
    let mut declared = BTreeSet::new();
    let mut files = Vec::new();
    for dist in ["spark", "allure"] {
        for entry in std::fs::read_dir(Path::new(&jars).join(dist)).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    files.sort();
    assert_eq!(files.len(), 302, "Spark's 252 jars and Allure's 50");
    for path in &files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(path).unwrap();
        let (coordinates, dependencies, manifest) = maven_metadata(&bytes);
        declared.extend(dependencies);
        let by_manifest = stellaops_scanner::analyze::manifest_artifact(&file, &manifest)
            .map(|p| format!("{}:{}@{}", p.namespace, p.name, p.version));
        let scanned: BTreeSet<String> = stellaops_scanner::analyze::parse_jar(&file, &bytes)
            .into_iter()
            .map(|p| format!("{}:{}@{}", p.namespace, p.name, p.version))
            .collect();
        if coordinates.is_empty() {
            assert_eq!(scanned, by_manifest.iter().cloned().collect(), "{file}");
            match by_manifest {
                Some(n) => named.insert(n),
                None => unnamed.insert(file),
            };
        } else {
            // The manifest agrees with the jar's own pom.properties, or says nothing.
            if let Some(n) = &by_manifest {
                assert!(
                    coordinates.contains(n),
                    "{file}: {n} against {coordinates:?}"
                );
                agreed += 1;
            }
            assert_eq!(scanned, coordinates, "{file}");
        }
    }
    assert_eq!(
        agreed, 4,
        "sbt's json4s, snappy-java and Allure's allure-model carry both"
    );
    let expected: BTreeSet<String> = [
        "com.fasterxml.jackson.module:jackson-module-scala_2.12@2.15.2",
        "com.github.luben:zstd-jni@1.5.5-4",
        "com.google.code.gson:gson@2.2.4",
        "com.twitter:chill-java@0.10.0",
        "com.twitter:chill_2.12@0.10.0",
        "org.apache.derby:derby@10.14.2.0",
        "org.apache.ivy:ivy@2.5.1",
        "org.apache.thrift:libthrift@0.12.0",
        "org.codehaus.jackson:jackson-core-asl@1.9.13",
        "org.codehaus.jackson:jackson-mapper-asl@1.9.13",
        "org.freemarker:freemarker@2.3.35",
        "org.jodd:jodd-core@3.5.2",
        "org.json4s:json4s-ast_2.12@3.7.0-M11",
        "org.json4s:json4s-core_2.12@3.7.0-M11",
        "org.json4s:json4s-jackson_2.12@3.7.0-M11",
        "org.json4s:json4s-scalap_2.12@3.7.0-M11",
        "org.lz4:lz4-java@1.8.0",
        "org.objenesis:objenesis@3.3",
        "org.scala-lang.modules:scala-collection-compat_2.12@2.7.0",
        "org.scala-lang.modules:scala-parser-combinators_2.12@2.3.0",
        "org.scala-lang.modules:scala-xml_2.12@2.1.0",
        "org.scala-lang:scala-library@2.12.18",
        "org.scala-lang:scala-reflect@2.12.18",
        "org.scalanlp:breeze-macros_2.12@2.1.0",
        "org.scalanlp:breeze_2.12@2.1.0",
        "org.tukaani:xz@1.9",
        "org.xerial.snappy:snappy-java@1.1.10.5",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(named, expected);
    // Each is a dependency the distributions' POMs declare, but for the dependencies of
    // sbt-built json4s-jackson and breeze and of Allure's Gradle build, which carry no POM.
    let undeclared: BTreeSet<&str> = named
        .iter()
        .map(|n| n.split_once('@').unwrap().0)
        .filter(|ga| {
            let (g, a) = ga.split_once(':').unwrap();
            !declared.contains(&(g.to_string(), a.to_string()))
        })
        .collect();
    assert_eq!(
        undeclared,
        BTreeSet::from([
            "org.freemarker:freemarker",
            "org.json4s:json4s-ast_2.12",
            "org.json4s:json4s-core_2.12",
            "org.json4s:json4s-scalap_2.12",
            "org.scalanlp:breeze-macros_2.12",
        ])
    );
    // Those whose manifests say too little are left unnamed, not guessed: sbt titles that
    // are not the artifact (algebra's and spire's `core`, `Cats kernel`), Oracle's vendor
    // id, jars whose manifest names nothing, Gradle builds without a vendor id.
    for file in [
        "algebra_2.12-2.0.1.jar",
        "cats-kernel_2.12-2.1.1.jar",
        "spire_2.12-0.17.0.jar",
        "activation-1.1.1.jar",
        "RoaringBitmap-0.9.45.jar",
        "jsr305-3.0.0.jar",
        "allure-generator-2.46.1.jar",
        // Bundle `javax.jdo` is Apache's jdo-api and DataNucleus's fork both.
        "jdo-api-3.0.1.jar",
    ] {
        assert!(unnamed.contains(file), "{file}: {unnamed:?}");
    }
    assert_eq!(named.len() + unnamed.len(), 52);

    // The official Spark image's layout (/opt/spark/jars), with advisories of the ranges the
    // real ones give: Gson before 2.8.9, Thrift before 0.14.0, Ivy before 2.5.2, Derby
    // before 10.14.3 match; Scala's 2.13.x one and snappy-java's fixed in 1.1.10.1 do not.
    let spark = Path::new(&jars).join("spark");
    let in_image = [
        "gson-2.2.4.jar",
        "libthrift-0.12.0.jar",
        "ivy-2.5.1.jar",
        "derby-10.14.2.0.jar",
        "scala-library-2.12.18.jar",
        "snappy-java-1.1.10.5.jar",
        "jsr305-3.0.0.jar",
    ];
    let contents: Vec<(String, Vec<u8>)> = in_image
        .iter()
        .map(|f| {
            (
                format!("opt/spark/jars/{f}"),
                std::fs::read(spark.join(f)).unwrap(),
            )
        })
        .collect();
    let mut entries: Vec<(&str, &[u8])> = vec![(
        "etc/os-release",
        b"PRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\nID=ubuntu\nVERSION_ID=\"22.04\"\n",
    )];
    entries.extend(contents.iter().map(|(p, b)| (p.as_str(), b.as_slice())));
    let layer = oci::tar_of(&entries);
    ingest(
        &env.pool,
        vec![
            osv(
                "CVE-2022-25647",
                "Maven",
                "com.google.code.gson:gson",
                json!([{"introduced": "0"}, {"fixed": "2.8.9"}]),
                "high",
            ),
            osv(
                "CVE-2020-13949",
                "Maven",
                "org.apache.thrift:libthrift",
                json!([{"introduced": "0"}, {"fixed": "0.14.0"}]),
                "high",
            ),
            osv(
                "CVE-2022-46751",
                "Maven",
                "org.apache.ivy:ivy",
                json!([{"introduced": "0"}, {"fixed": "2.5.2"}]),
                "high",
            ),
            osv(
                "CVE-2022-46337",
                "Maven",
                "org.apache.derby:derby",
                json!([{"introduced": "0"}, {"fixed": "10.14.3"}]),
                "critical",
            ),
            osv(
                "CVE-2022-36944",
                "Maven",
                "org.scala-lang:scala-library",
                json!([{"introduced": "2.13.0"}, {"fixed": "2.13.9"}]),
                "critical",
            ),
            osv(
                "CVE-2023-34455",
                "Maven",
                "org.xerial.snappy:snappy-java",
                json!([{"introduced": "0"}, {"fixed": "1.1.10.1"}]),
                "high",
            ),
        ],
    )
    .await;
    let work = stellaops_testing::scratch_dir("spark-jars");
    let (cdx_bytes, purls, findings) = scan_layer(&env, "spark", layer, &work).await;
    assert_eq!(
        purls,
        BTreeSet::from(
            [
                "pkg:maven/com.google.code.gson/gson@2.2.4",
                "pkg:maven/org.apache.derby/derby@10.14.2.0",
                "pkg:maven/org.apache.ivy/ivy@2.5.1",
                "pkg:maven/org.apache.thrift/libthrift@0.12.0",
                "pkg:maven/org.scala-lang/scala-library@2.12.18",
                "pkg:maven/org.xerial.snappy/snappy-java@1.1.10.5",
            ]
            .map(String::from)
        )
    );
    assert_eq!(
        findings,
        [
            (
                "CVE-2020-13949",
                "pkg:maven/org.apache.thrift/libthrift@0.12.0"
            ),
            (
                "CVE-2022-25647",
                "pkg:maven/com.google.code.gson/gson@2.2.4"
            ),
            (
                "CVE-2022-46337",
                "pkg:maven/org.apache.derby/derby@10.14.2.0"
            ),
            ("CVE-2022-46751", "pkg:maven/org.apache.ivy/ivy@2.5.1"),
        ]
        .map(|(v, p)| (v.to_string(), p.to_string()))
    );
    let (ok, report) = cyclonedx_valid(&cdx_bytes);
    assert!(ok, "{report}");
    std::fs::remove_dir_all(&work).unwrap();
}

/// Spring Framework 4.3 as Debian builds it with Spring's own Gradle build (jars without
/// `pom.properties`, the module as the manifest's `Implementation-Title`), each jar linked
/// from its coordinates in `/usr/share/maven-repo`: every one is named by those
/// coordinates from its manifest and file name, and no jar under Debian's own names
/// (`spring3-core.jar`) is; nor is Debian's ASM, whose manifests disagree with its files'
/// names. Kotlin 1.3.31 likewise: its own jars named, the compiler's internal ones not.
#[test]
fn spring_and_kotlin_gradle_built_jars_are_named_as_maven_central_publishes_them() {
    let Some(debs) = stellaops_testing::service("STELLAOPS_TEST_GRADLE_DEBS") else {
        return;
    };
    let root = stellaops_testing::scratch_dir("gradle-debs");
    unpack_debs(&debs_in(&debs), &root);
    let repo = root.join("usr/share/maven-repo/org/springframework");
    let mut checked = BTreeSet::new();
    for artifact in std::fs::read_dir(&repo).unwrap() {
        let artifact = artifact.unwrap().path();
        let a = artifact.file_name().unwrap().to_string_lossy().into_owned();
        for version in std::fs::read_dir(&artifact).unwrap() {
            let version = version.unwrap().path();
            let v = version.file_name().unwrap().to_string_lossy().into_owned();
            let file = format!("{a}-{v}.jar");
            // Debian's version-less aliases (`debian`, `3.x`) link the same jar under
            // names that give no version of the artifact: not named.
            if v == "debian" || v.ends_with(".x") {
                if let Ok(bytes) = std::fs::read(version.join(&file)) {
                    assert!(
                        stellaops_scanner::analyze::parse_jar(&file, &bytes).is_empty(),
                        "{file}"
                    );
                }
                continue;
            }
            // The BOM and the parent are POMs only.
            let Ok(bytes) = std::fs::read(version.join(&file)) else {
                continue;
            };
            let (coordinates, _, manifest) = maven_metadata(&bytes);
            assert!(coordinates.is_empty(), "{file}: {coordinates:?}");
            let found: Vec<String> = stellaops_scanner::analyze::parse_jar(&file, &bytes)
                .into_iter()
                .map(|p| format!("{}:{}@{}", p.namespace, p.name, p.version))
                .collect();
            assert_eq!(
                found,
                [format!("org.springframework:{a}@{v}")],
                "{manifest}"
            );
            checked.insert(a.clone());
        }
    }
    // Debian's 17 packages hold 18 modules (spring-web-servlet is spring-webmvc,
    // libspring-aop-java also spring-aspects, …).
    assert_eq!(checked.len(), 18, "{checked:?}");
    assert!(checked.contains("spring-webmvc") && checked.contains("spring-tx"));
    // Debian's own names for the same jars say no version of the artifact's: unnamed.
    let java = root.join("usr/share/java");
    let mut debian_names = 0;
    for entry in std::fs::read_dir(&java).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if !file.starts_with("spring") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            stellaops_scanner::analyze::parse_jar(&file, &bytes).is_empty(),
            "{file}"
        );
        debian_names += 1;
    }
    assert!(debian_names >= 17, "{debian_names}");
    // Debian's ASM (bundle `org.objectweb.asm…`, a known one) writes `9.4-SNAPSHOT` into
    // jars it names for 9.4: the name and the manifest disagree, so nothing is named.
    let asm = root.join("usr/share/maven-repo/org/ow2/asm");
    let mut asm_jars = 0;
    for artifact in ["asm", "asm-tree", "asm-analysis", "asm-commons", "asm-util"] {
        let dir = asm.join(artifact).join("9.4");
        let file = format!("{artifact}-9.4.jar");
        let bytes = std::fs::read(dir.join(&file)).unwrap();
        let (_, _, manifest) = maven_metadata(&bytes);
        assert!(
            manifest.contains("Bundle-SymbolicName: org.objectweb.asm"),
            "{file}"
        );
        assert!(
            stellaops_scanner::analyze::parse_jar(&file, &bytes).is_empty(),
            "{file}"
        );
        asm_jars += 1;
    }
    assert_eq!(asm_jars, 5);

    // Kotlin 1.3.31 as Debian builds it: each of its jars in maven-repo whose manifest is
    // Kotlin's (vendor JetBrains, the artifact as title, `kotlin-…`) is named by its
    // coordinates; the compiler's internal jars (`frontend`, `psi`: empty manifests) are
    // not named at all.
    let kotlin = root.join("usr/share/maven-repo/org/jetbrains/kotlin");
    let (mut kotlin_named, mut kotlin_unnamed) = (BTreeSet::new(), 0);
    for artifact in std::fs::read_dir(&kotlin).unwrap() {
        let artifact = artifact.unwrap().path();
        let a = artifact.file_name().unwrap().to_string_lossy().into_owned();
        let file = format!("{a}-1.3.31.jar");
        let Ok(bytes) = std::fs::read(artifact.join("1.3.31").join(&file)) else {
            continue;
        };
        let (coordinates, _, manifest) = maven_metadata(&bytes);
        if !coordinates.is_empty() {
            continue;
        }
        let found: Vec<String> = stellaops_scanner::analyze::parse_jar(&file, &bytes)
            .into_iter()
            .map(|p| format!("{}:{}@{}", p.namespace, p.name, p.version))
            .collect();
        // Only `kotlin-…` titles: JetBrains writes its vendor into other groups' jars too;
        // the compiler's `jvm-minimal-for-test` is left unnamed.
        let kotlins = manifest.contains("Implementation-Vendor: JetBrains")
            && manifest.contains(&format!("Implementation-Title: {a}\r\n"))
            && a.starts_with("kotlin-");
        if kotlins {
            assert_eq!(
                found,
                [format!("org.jetbrains.kotlin:{a}@1.3.31")],
                "{manifest}"
            );
            kotlin_named.insert(a);
        } else {
            assert!(found.is_empty(), "{file}: {found:?}");
            kotlin_unnamed += 1;
        }
    }
    for a in [
        "kotlin-stdlib",
        "kotlin-stdlib-jdk7",
        "kotlin-stdlib-jdk8",
        "kotlin-reflect",
    ] {
        assert!(kotlin_named.contains(a), "{a}: {kotlin_named:?}");
    }
    assert!(kotlin_unnamed > 0);
    std::fs::remove_dir_all(&root).unwrap();
}
