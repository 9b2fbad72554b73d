//! What a registry sends as an attestation: a DSSE envelope judged against a requirement
//! (envelope, Statement, subject and signature parsing), and a predicate as CEL sees it
//! (bounded conversion, then a condition evaluated over it). First byte: which.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stellaops_admission_webhook::attestation::{self, AttestationCheck, Condition, Variables};
use stellaops_admission_webhook::evidence::FoundAttestation;

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let condition = Condition::compile(
        "predicate.runDetails.builder.id.startsWith('https://') && size(subject) > 0",
        None,
    )
    .expect("a valid condition");
    if mode % 2 == 0 {
        let check = AttestationCheck {
            name: "slsaprovenance1".into(),
            predicate_type: "https://slsa.dev/provenance/v1".into(),
            keys: Vec::new(),
            keyless: Vec::new(),
            conditions: vec![condition],
        };
        let found = [FoundAttestation {
            media_type: "application/vnd.dsse.envelope.v1+json".into(),
            blob: rest.to_vec(),
            predicate_type: None,
            found_at: "fuzz".into(),
            ..Default::default()
        }];
        // Nothing is trusted: never met.
        assert!(attestation::judge(&check, &found, DIGEST, chrono::Utc::now()).is_err());
    } else if let Ok(json) = serde_json::from_slice::<serde_json::Value>(rest) {
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
});
