//! The public keys of a keyed ZastavaPolicy, read from the Secret it names when the policy is
//! compiled: PEM blocks of any label, SubjectPublicKeyInfo and PKCS #1 DER, RSA moduli of
//! any size; and signature checks with whatever key was read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stellaops_admission_webhook::keys::{PublicKey, parse_public_keys};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(keys) = parse_public_keys(text)
    {
        for key in keys {
            assert_eq!(key.fingerprint.len(), 16);
            let tail = &data[data.len() / 2..];
            let _ = key.key.verifies_as_cosign(data, tail);
            let _ = key.key.verifies_digest(&data[..data.len().min(32)], tail);
        }
    }
    if let Ok(key) = PublicKey::from_spki(data) {
        // A key that was read can be written back (the fingerprint hashes that).
        assert!(!key.spki_der().is_empty());
        let _ = key.verifies(data, data);
    }
});
