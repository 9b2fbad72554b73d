//! The BerkeleyDB hash `Packages` reader (both byte orders, overflow pages) and SUSE's ndb
//! `Packages.db` reader (slot pages, blobs and their checksums), each on every input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stellaops_scanner::rpmdb;

fuzz_target!(|data: &[u8]| {
    let _ = rpmdb::parse_rpmdb_bdb(data);
    let _ = rpmdb::parse_rpmdb_ndb(data);
});
