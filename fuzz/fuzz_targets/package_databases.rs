//! Text package databases and manifests: dpkg status, apk installed, os-release, Python
//! METADATA, .NET deps.json, installed gem specifications, Composer's installed.json; the
//! declared licenses in them (Debian copyright files, npm
//! `license`, SPDX expressions, RPM tags in Fedora's legacy abbreviations) and license files. An SPDX expression that parses, written back in its normal
//! form, parses to the same normal form and ids.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stellaops_policy::license;
use stellaops_scanner::analyze;
use stellaops_scanner::license as declared;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = analyze::parse_dpkg(&text);
    let _ = analyze::parse_apk(&text);
    let _ = analyze::parse_os_release(&text);
    let _ = analyze::parse_python(&text);
    let _ = analyze::parse_deps_json(&text);
    for gem in analyze::parse_gemspec(&text) {
        assert!(!gem.name.is_empty() && !gem.version.is_empty());
    }
    let _ = analyze::parse_composer_installed(&text);
    let _ = declared::debian_copyright(&text);
    let _ = declared::license_file(&text);
    let rpm = declared::rpm(&text);
    if rpm != text.trim() {
        // A legacy tag read in SPDX is an expression.
        license::parse(&rpm).expect("a converted RPM tag parses");
    }
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
        let _ = declared::npm(&json);
    }
    if let Ok(expr) = license::parse(&text) {
        let written = expr.render();
        let again = license::parse(&written).expect("a written-back expression parses");
        assert_eq!(again.render(), written);
        assert_eq!(again.ids(), expr.ids());
        if let Some(d) = license::Declared::of(&text) {
            let _ = declared::spdx_document_form(&d);
            let _ = declared::cyclonedx(&d);
        }
    }
});
