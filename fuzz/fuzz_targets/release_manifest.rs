//! A Platform's release manifest and its cosign `sign-blob` signature, as the operator reads
//! them from a ConfigMap and a Secret: the input is `signature NUL public key NUL manifest`. Nothing here is
//! signed by the key, so it never verifies (a forgery would be a broken check, not only a
//! crash); the manifest's parse runs on its own too (the operator parses only verified
//! bytes, `preview` parses what it is given), and what it accepts holds the rules the
//! rollout relies on: components listed once, by digest, each a Deployment name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stellaops_controllers::platform::release;

/// A P-256 key whose private half was thrown away.
const KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9fCrdFGvgb4V48wgH45XV1yktF5C
C+cotelAL2TZRaMzf1fqs2sDIUjo4ybQbE2r75B17eMlVPAAyLmZh7K8Ag==
-----END PUBLIC KEY-----";

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let (Some(signature), Some(key), Some(manifest)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let signature = String::from_utf8_lossy(signature);
    assert!(release::verify_signature(manifest, &signature, KEY).is_err());
    let _ = release::verify_signature(manifest, &signature, &String::from_utf8_lossy(key));
    if let Ok(parsed) = release::parse(manifest) {
        assert!(!parsed.components.is_empty());
        assert!(release::parse_version(&parsed.version).is_some());
        assert_eq!(parsed.digest, release::digest(manifest));
        for (i, c) in parsed.components.iter().enumerate() {
            assert!(c.image.contains("@sha256:"), "{} is not by digest", c.image);
            assert!(!c.name.is_empty() && c.name.len() <= 63);
            assert!(parsed.components[..i].iter().all(|o| o.name != c.name));
        }
    }
});
