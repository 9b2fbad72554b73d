//! `federation bundle validate` on hostile bytes: open (size cap, zstd, canonical tar,
//! manifest, digests) and signature verification against no trusted key. The first byte
//! picks the input's shape: 0, the bundle file as is; 1, the tar inside it (compressed
//! here), so mutations reach the archive and manifest checks instead of dying in zstd.
//! Whatever opens must read the same by the import's quick pass (each canonical's key,
//! each edge's source) as by the parse: the import decides on the quick pass while the
//! parse runs, and refuses a bundle where the two disagree.
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
        let unpacked = bundle::unpack(&bytes, 1 << 20).expect("it opened");
        let keys = unpacked
            .canonical_keys()
            .expect("the quick pass reads every canonical the parse reads");
        let parsed: Vec<_> = opened
            .canonicals
            .iter()
            .map(bundle::CanonicalKey::of)
            .collect();
        assert_eq!(keys, parsed);
        let sources = unpacked
            .edge_sources()
            .expect("the quick pass reads every edge the parse reads");
        assert!(sources.iter().eq(opened.edges.iter().map(|e| &e.source)));
    }
});
