//! The mirror server's htpasswd file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stellaops_workers::mirror::serve;

fuzz_target!(|data: &[u8]| {
    let _ = serve::parse_htpasswd(&String::from_utf8_lossy(data));
});
