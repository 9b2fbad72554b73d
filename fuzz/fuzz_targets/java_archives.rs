//! Java archives and the Maven metadata in them, first byte picks: a jar with the archives
//! nested in it (`parse_jar`), a `pom.xml` (`maven_pom`), a `MANIFEST.MF`
//! (`bundle_license`, `tomcat_jar`), a license file (`license_file`), a jar's file name and
//! manifest (`manifest_artifact`). A license read from any of them is an SPDX expression of
//! listed ids: nothing a hostile archive writes gets through as a license of its own making;
//! an artifact named by a manifest has Maven ids and a plain version, the file name's when
//! it gives one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stellaops_scanner::{analyze, license};

fn listed_expression(declared: &str) {
    let expr = stellaops_policy::license::parse(declared).expect("a read license parses");
    for id in expr.ids() {
        assert!(
            license::listed(&id),
            "{id} of {declared:?} is on the SPDX list"
        );
    }
    for e in expr.exceptions() {
        assert!(
            license::listed_exception(&e),
            "{e} of {declared:?} is on the SPDX list"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    match pick % 5 {
        0 => {
            for found in analyze::parse_jar("app.jar", rest) {
                assert_eq!(found.kind, "maven");
                if !found.license.is_empty() {
                    listed_expression(&found.license);
                }
            }
        }
        1 => {
            if let Some(l) = license::maven_pom(&String::from_utf8_lossy(rest)) {
                listed_expression(&l);
            }
        }
        2 => {
            let manifest = String::from_utf8_lossy(rest);
            if let Some(l) = license::bundle_license(&manifest) {
                listed_expression(&l);
            }
            // Only Tomcat's own coordinates, whatever the manifest says.
            if let Some(tomcat) = analyze::tomcat_jar(&manifest) {
                assert!(
                    ["org.apache.tomcat", "org.apache.tomcat.embed"]
                        .contains(&tomcat.namespace.as_str())
                );
                assert!(tomcat.name.starts_with("tomcat-"), "{tomcat:?}");
                assert!(
                    tomcat.version.starts_with(|c: char| c.is_ascii_digit())
                        && !tomcat.version.contains(char::is_whitespace),
                    "{tomcat:?}"
                );
            }
        }
        3 => {
            if let Some(l) = license::license_file(&String::from_utf8_lossy(rest)) {
                listed_expression(&l);
            }
        }
        _ => {
            // The file name, a newline, the manifest.
            let text = String::from_utf8_lossy(rest);
            let (file_name, manifest) = text.split_once('\n').unwrap_or((&text, ""));
            if let Some(found) = analyze::manifest_artifact(file_name, manifest) {
                let id = |s: &str| {
                    !s.is_empty()
                        && s.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                };
                assert!(id(&found.namespace) && id(&found.name), "{found:?}");
                assert!(
                    found.version.starts_with(|c: char| c.is_ascii_digit())
                        && found
                            .version
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b)),
                    "{found:?}"
                );
                // A file named <artifact>-<version>.jar agrees with what is named.
                if let Some(v) = file_name
                    .strip_suffix(".jar")
                    .and_then(|stem| stem.strip_prefix(found.name.as_str()))
                    .and_then(|rest| rest.strip_prefix('-'))
                    && v.starts_with(|c: char| c.is_ascii_digit())
                {
                    assert_eq!(v, found.version, "{file_name}");
                }
            }
        }
    }
});
