//! A Sigstore `trusted_root.json`, as a ZastavaPolicy's keyless authority names it (a
//! ConfigMap or Secret): every certificate and key inside is parsed when the policy is
//! compiled, so this is the webhook's parser of X.509 and SubjectPublicKeyInfo DER from
//! outside, besides the JSON around them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stellaops_admission_webhook::keyless::parse_trusted_root;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_trusted_root(text);
    }
});
