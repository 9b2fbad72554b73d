//! The hand-written rpmdb.sqlite reader (b-tree pages, overflow chains, records) and the
//! RPM header parser it feeds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stellaops_scanner::rpmdb;

fuzz_target!(|data: &[u8]| {
    let _ = rpmdb::parse_rpmdb_sqlite(data);
    let _ = rpmdb::parse_header(data);
});
