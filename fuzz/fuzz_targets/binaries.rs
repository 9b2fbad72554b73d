//! Executables and archives: ELF dynamic sections (EntryTrace), Go build info,
//! cargo-auditable sections, jar manifests.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stellaops_scanner::analyze;

fuzz_target!(|data: &[u8]| {
    let _ = stellaops_scanner::elf::parse(data);
    let _ = analyze::parse_go_binary(data);
    let _ = analyze::parse_cargo_auditable(data);
    let _ = analyze::parse_jar("app.jar", data);
});
