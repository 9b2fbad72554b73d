//! OSV documents as mirrored from advisory sources.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stellaops_federation::osv;

fuzz_target!(|data: &[u8]| {
    let _ = osv::parse("fuzz.json", data, None, chrono::DateTime::UNIX_EPOCH);
});
