//! RFC 3161 timestamp responses (`timestamp::verify`): the hand-written strict DER reading
//! of the response, its CMS SignedData and TSTInfo, against a fixed trusted root with one
//! timestamp authority (fuzz/rfc3161_trusted_root.json, written with the seed by
//! fuzz/rfc3161_seed.py). A response that verifies stamps a time the authority was trusted
//! at. Input that is text is also read as cosign's timestamp annotation (JSON around the
//! base64 response, `cosign::rfc3161_timestamp_response`), whose response is then checked.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use stellaops_admission_webhook::{cosign, keyless, timestamp};

/// The bytes every response is checked as stamping (the seed stamps them).
const SIGNATURE: &[u8] = b"stellaops fuzz signature";

static ROOT: LazyLock<keyless::TrustedRoot> = LazyLock::new(|| {
    keyless::parse_trusted_root(include_str!("../rfc3161_trusted_root.json"))
        .expect("the fixed trusted root parses")
});

fuzz_target!(|data: &[u8]| {
    if let Ok(at) = timestamp::verify(data, SIGNATURE, &ROOT.timestamp_authorities) {
        assert!(ROOT.timestamp_authorities[0].valid_for.contains(at));
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(response) = cosign::rfc3161_timestamp_response(text)
        && let Ok(at) = timestamp::verify(&response, SIGNATURE, &ROOT.timestamp_authorities)
    {
        assert!(ROOT.timestamp_authorities[0].valid_for.contains(at));
    }
});
