//! `federation bundle validate` on hostile bytes: open (size cap, zstd, canonical tar,
//! manifest, digests) and signature verification against no trusted key. The first byte
//! picks the input's shape: 0, the bundle file as is; 1, the tar inside it (compressed
//! here), so mutations reach the archive and manifest checks instead of dying in zstd.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stellaops_federation::bundle;

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    let bytes = if shape & 1 == 0 {
        rest.to_vec()
    } else {
        match zstd::encode_all(rest, 1) {
            Ok(compressed) => compressed,
            Err(_) => return,
        }
    };
    if let Ok(opened) = bundle::open(&bytes, 1 << 20) {
        let _ = opened.verify_signature(&Default::default());
    }
});
