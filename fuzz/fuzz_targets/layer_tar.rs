//! Layer analysis on a hostile tar stream (every file kind the scanner reads).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stellaops_scanner::analyze;

fuzz_target!(|data: &[u8]| {
    let _ = analyze::analyse_tar(data);
});
