//! Sigstore bundles as a registry serves them (referrer layers), with the inclusion proofs
//! and checkpoints inside: parsing, and the Merkle path computation on whatever indices,
//! sizes and hashes they claim.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stellaops_admission_webhook::bundle;

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = bundle::parse_bundle(data) {
        for entry in &parsed.entries {
            if let Some(proof) = &entry.inclusion_proof {
                let _ = bundle::root_from_inclusion_proof(
                    proof.log_index,
                    proof.tree_size,
                    bundle::leaf_hash(&entry.body),
                    &proof.hashes,
                );
                if let Some(checkpoint) = &proof.checkpoint {
                    let _ = bundle::parse_checkpoint(checkpoint);
                }
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = bundle::parse_checkpoint(text);
    }
});
