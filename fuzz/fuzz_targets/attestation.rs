//! What a registry sends as an attestation: a DSSE envelope, or a Sigstore bundle carrying
//! one (media type `application/vnd.dev.sigstore.bundle…`, with or without the predicate
//! type announced), judged against a requirement (envelope or bundle, in-toto Statement,
//! subject, signatures, log entries); and a predicate as CEL sees it (bounded conversion,
//! then a condition evaluated over it). First byte: which (and, for bundles, the media type
//! and whether the predicate type is announced).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stellaops_admission_webhook::attestation::{self, AttestationCheck, Condition, Variables};
use stellaops_admission_webhook::evidence::FoundAttestation;
use stellaops_admission_webhook::policy;

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// A P-256 key no input is signed by (its private half is not in any seed): signatures are
/// checked against it, and nothing is ever met.
const KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEjlM7b6C/e0YluzBmfAH7YH75+Lio
D+9bMAYocDGHsqNz6x294DMYNm0Gn4Om9ZAAU8c2M8sEGyHFXhqGwfQAtA==
-----END PUBLIC KEY-----
";
const BUNDLE_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let condition = Condition::compile(
        "predicate.runDetails.builder.id.startsWith('https://') && size(subject) > 0",
        None,
    )
    .expect("a valid condition");
    let check = || AttestationCheck {
        name: "slsaprovenance1".into(),
        predicate_type: PREDICATE_TYPE.into(),
        keys: policy::parse_public_keys(KEY).expect("a valid key"),
        keyless: Vec::new(),
        keys_log: None,
        conditions: vec![condition.clone()],
    };
    match mode % 3 {
        0 => {
            let found = [FoundAttestation {
                media_type: "application/vnd.dsse.envelope.v1+json".into(),
                blob: rest.to_vec(),
                predicate_type: None,
                found_at: "fuzz".into(),
                ..Default::default()
            }];
            assert!(attestation::judge(&check(), &found, DIGEST, chrono::Utc::now()).is_err());
        }
        2 => {
            let found = [FoundAttestation {
                media_type: BUNDLE_MEDIA_TYPES[usize::from(mode / 3 % 2)].into(),
                blob: rest.to_vec(),
                predicate_type: (mode / 6 % 2 == 1).then(|| PREDICATE_TYPE.to_string()),
                found_at: "fuzz".into(),
                ..Default::default()
            }];
            assert!(attestation::judge(&check(), &found, DIGEST, chrono::Utc::now()).is_err());
        }
        _ => {
            let Ok(json) = serde_json::from_slice::<serde_json::Value>(rest) else {
                return;
            };
            let mut budget = attestation::MAX_VALUES;
            let Ok(predicate) = attestation::to_cel(&json["predicate"], &mut budget) else {
                return;
            };
            let Ok(subject) = attestation::to_cel(&json["subject"], &mut budget) else {
                return;
            };
            let variables = Variables {
                predicate,
                predicate_type: cel::Value::Null,
                subject,
            };
            let _ = condition.evaluate(&variables);
        }
    }
});
