//! The BerkeleyDB hash `Packages` reader (both byte orders, overflow pages).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stellaops_scanner::rpmdb;

fuzz_target!(|data: &[u8]| {
    let _ = rpmdb::parse_rpmdb_bdb(data);
});
