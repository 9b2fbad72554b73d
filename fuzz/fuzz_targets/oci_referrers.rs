//! What a registry sends about referrers and signatures: a referrers index (the API's answer
//! or the tag schema's index), and signature and attestation manifests.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stellaops_admission_webhook::cosign;
use stellaops_registry::referrers::parse_referrers_index;

fuzz_target!(|data: &[u8]| {
    let _ = parse_referrers_index(data);
    let _ = cosign::signature_layers(data);
    let _ = cosign::attestation_layers(data);
});
