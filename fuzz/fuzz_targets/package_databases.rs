//! Text package databases and manifests: dpkg status, apk installed, os-release, Python
//! METADATA, .NET deps.json.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stellaops_workers::scan::analyze;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = analyze::parse_dpkg(&text);
    let _ = analyze::parse_apk(&text);
    let _ = analyze::parse_os_release(&text);
    let _ = analyze::parse_python(&text);
    let _ = analyze::parse_deps_json(&text);
});
