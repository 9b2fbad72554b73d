//! Signed verdicts: the envelope round trip, every way an envelope is refused (each message
//! naming it), and an independent check of the DSSE signature with Python's `cryptography`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use stellaops_store::attestation::{
    Envelope, FindingCounts, PAYLOAD_TYPE, SbomRef, VerdictKeys, VerdictPredicate, VerdictSigner,
    check_row, generate_key_pair, object_key,
};

const DIGEST: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn predicate(verdict: &str) -> VerdictPredicate {
    VerdictPredicate {
        image: "registry.example.com/app:1".into(),
        verdict: verdict.into(),
        findings: FindingCounts {
            critical: 1,
            high: 2,
            medium: 0,
            low: 3,
        },
        sbom: SbomRef {
            uri: "s3://stellaops/scanner/images/aa/inventory.cdx.json".into(),
            sha256: "sha256:5b0m".into(),
        },
        advisory_snapshot: 42,
        policy_digest: "sha256:9011c7".into(),
        scanned_at: "2026-12-02T10:00:00Z".parse().unwrap(),
    }
}

fn new_signer() -> (VerdictSigner, String) {
    let (private, public) = generate_key_pair();
    (VerdictSigner::from_pem(&private).unwrap(), public)
}

#[test]
fn a_signed_verdict_verifies_and_says_what_was_signed() {
    let (signer, public) = new_signer();
    let keys = VerdictKeys::from_pem_bundle(&public).unwrap();
    let envelope = signer.sign(DIGEST, &predicate("Fail"));
    let key = object_key(&envelope);
    assert!(
        key.starts_with("attest/") && key.ends_with(".dsse.json"),
        "{key}"
    );
    assert_eq!(
        keys.verify(&key, &envelope, DIGEST).unwrap(),
        predicate("Fail")
    );
    // The same check, against the row that references it.
    let checked = check_row(&keys, DIGEST, "Fail", Some(&key), Some(&envelope)).unwrap();
    assert_eq!(checked.findings.low, 3);
    // A rotation: the bundle holds the new and the old key, both verify.
    let (other, other_public) = new_signer();
    let both = VerdictKeys::from_pem_bundle(&format!("{other_public}\n{public}")).unwrap();
    assert!(both.verify(&key, &envelope, DIGEST).is_ok());
    let by_other = other.sign(DIGEST, &predicate("Pass"));
    assert!(
        both.verify(&object_key(&by_other), &by_other, DIGEST)
            .is_ok()
    );
}

#[test]
fn forged_tampered_and_misfiled_envelopes_are_refused_naming_them() {
    let (signer, public) = new_signer();
    let keys = VerdictKeys::from_pem_bundle(&public).unwrap();
    let envelope = signer.sign(DIGEST, &predicate("Fail"));
    let key = object_key(&envelope);

    // A row with no envelope: not scanned, saying so.
    let none = check_row(&keys, DIGEST, "Pass", None, None).unwrap_err();
    assert!(none.contains("no signed verdict envelope"), "{none}");

    // The payload changed to say Pass (and the name recomputed so the hash matches): the
    // signature no longer verifies.
    let mut parsed: Envelope = serde_json::from_slice(&envelope).unwrap();
    let payload = String::from_utf8(STANDARD.decode(&parsed.payload).unwrap()).unwrap();
    parsed.payload = STANDARD.encode(payload.replace("\"Fail\"", "\"Pass\""));
    let tampered = serde_json::to_vec(&parsed).unwrap();
    let tampered_key = object_key(&tampered);
    let refused =
        check_row(&keys, DIGEST, "Pass", Some(&tampered_key), Some(&tampered)).unwrap_err();
    assert!(refused.contains(&tampered_key), "{refused}");
    assert!(
        refused.contains("no signature by a configured verdict key"),
        "{refused}"
    );

    // Bytes changed under the same name: refused before any parsing.
    let mut flipped = envelope.clone();
    let last = flipped.len() - 2;
    flipped[last] ^= 1;
    let refused = keys.verify(&key, &flipped, DIGEST).unwrap_err().to_string();
    assert!(
        refused.contains(&key) && refused.contains("tampered"),
        "{refused}"
    );

    // The row edited after signing: the signed verdict wins, and the row is refused.
    let edited = check_row(&keys, DIGEST, "Pass", Some(&key), Some(&envelope)).unwrap_err();
    assert!(
        edited.contains(&key) && edited.contains("says Fail"),
        "{edited}"
    );

    // A valid envelope of another image, filed under this one.
    let other_digest = format!("sha256:{}", "b".repeat(64));
    let misfiled = keys
        .verify(&key, &envelope, &other_digest)
        .unwrap_err()
        .to_string();
    assert!(misfiled.contains("about another image"), "{misfiled}");

    // Signed by a key that is not configured.
    let (stranger, _) = new_signer();
    let foreign = stranger.sign(DIGEST, &predicate("Pass"));
    let refused = keys
        .verify(&object_key(&foreign), &foreign, DIGEST)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("no signature by a configured verdict key"),
        "{refused}"
    );

    // No key configured: nothing is trusted.
    let refused = VerdictKeys::default()
        .verify(&key, &envelope, DIGEST)
        .unwrap_err()
        .to_string();
    assert!(refused.contains("no verdict public key"), "{refused}");

    // Another payload type.
    let mut parsed: Envelope = serde_json::from_slice(&envelope).unwrap();
    parsed.payload_type = "application/json".into();
    let retyped = serde_json::to_vec(&parsed).unwrap();
    let refused = keys
        .verify(&object_key(&retyped), &retyped, DIGEST)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("payload type") && refused.contains(PAYLOAD_TYPE),
        "{refused}"
    );

    // Not a key at all.
    assert!(VerdictKeys::from_pem_bundle("not a key").is_err());
    assert!(VerdictSigner::from_pem("not a key").is_err());
}

/// The envelope checked by code that is not ours: Python's `cryptography` recomputes the DSSE
/// pre-authentication encoding and verifies the ES256 signature with the public key.
#[test]
fn an_independent_verifier_accepts_the_envelope_and_refuses_a_tampered_one() {
    let Some(python) = stellaops_testing::service("STELLAOPS_TEST_PYTHON") else {
        return;
    };
    let (signer, public) = new_signer();
    let envelope = signer.sign(DIGEST, &predicate("Warn"));
    let dir = std::env::temp_dir().join(format!("dsse-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("key.pem"), &public).unwrap();
    std::fs::write(dir.join("good.json"), &envelope).unwrap();
    let mut parsed: Envelope = serde_json::from_slice(&envelope).unwrap();
    let payload = String::from_utf8(STANDARD.decode(&parsed.payload).unwrap()).unwrap();
    parsed.payload = STANDARD.encode(payload.replace("\"Warn\"", "\"Pass\""));
    std::fs::write(dir.join("bad.json"), serde_json::to_vec(&parsed).unwrap()).unwrap();
    let script = r#"
import base64, json, sys
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key
key = load_pem_public_key(open(sys.argv[1], "rb").read())
env = json.load(open(sys.argv[2]))
body = base64.b64decode(env["payload"])
kind = env["payloadType"].encode()
pae = b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)
try:
    for s in env["signatures"]:
        key.verify(base64.b64decode(s["sig"]), pae, ec.ECDSA(hashes.SHA256()))
except InvalidSignature:
    print("invalid signature")
    sys.exit(1)
st = json.loads(body)
assert st["_type"] == "https://in-toto.io/Statement/v1", st["_type"]
print(st["subject"][0]["digest"]["sha256"], st["predicateType"], st["predicate"]["verdict"])
"#;
    let run = |envelope: &str| {
        std::process::Command::new(&python)
            .arg("-c")
            .arg(script)
            .arg(dir.join("key.pem"))
            .arg(dir.join(envelope))
            .output()
            .unwrap()
    };
    let good = run("good.json");
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&good.stdout).trim(),
        format!(
            "{} https://stella-ops.org/attestations/scan-verdict/v1 Warn",
            "a".repeat(64)
        )
    );
    let bad = run("bad.json");
    assert!(!bad.status.success());
    assert_eq!(
        String::from_utf8_lossy(&bad.stdout).trim(),
        "invalid signature"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
