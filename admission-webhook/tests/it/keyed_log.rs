//! `publicKeysTlog`: keyed signatures must be recorded in a Rekor log of a trusted root, as
//! `cosign verify --key` requires by default. The material (keys, signatures, log entries,
//! signed entry timestamps, inclusion proofs, the trusted root) is made by Python
//! `cryptography` in `keyed_log_material.py`, not by our code.

use std::ffi::OsStr;

use serde_json::{Value, json};
use stellaops_admission_webhook::evidence::FoundAttestation;
use stellaops_admission_webhook::policy::{CompiledPolicy, compile_with_trusted_roots};
use stellaops_admission_webhook::{attestation, bundle, cosign};
use stellaops_testing::oci;

use crate::material::{DIGEST, Scratch, generate, refused, verify_case};
use crate::policy::zastava_policy;
use crate::registry::push_image;
use crate::server::RegistryWebhook;

/// Material signing each of `payloads`; `None` without the test Python.
fn material(payloads: &[Vec<u8>], label: &str) -> Option<Value> {
    let scratch = Scratch::new(&format!("keyed-log-{label}"));
    let files: Vec<_> = payloads
        .iter()
        .enumerate()
        .map(|(i, payload)| {
            let file = scratch.path(&format!("payload-{i}.json"));
            std::fs::write(&file, payload).unwrap();
            file
        })
        .collect();
    let digest_hex = DIGEST.trim_start_matches("sha256:");
    let mut args: Vec<&OsStr> = vec![OsStr::new(digest_hex)];
    args.extend(files.iter().map(|f| f.as_os_str()));
    generate("keyed_log_material.py", &args, &scratch)
}

/// A policy trusting the material's key, its signatures logged (`publicKeysTlog`) or not.
fn keyed_policy(material: &Value, logged: bool, attestations: bool) -> CompiledPolicy {
    let mut signature = json!({"publicKeys": {"name": "keys", "namespace": "stellaops-system"}});
    let mut roots = Vec::new();
    if logged {
        signature["publicKeysTlog"] = json!({"trustedRoot": {"name": "rekor-root"}});
        roots.push(material["trusted_root"].as_str().unwrap().to_string());
    }
    let mut spec = json!({"mode": "enforce", "requireSignature": signature});
    if attestations {
        spec["requireAttestations"] =
            json!([{"predicateType": "slsaprovenance1", "signedBy": "keys"}]);
    }
    compile_with_trusted_roots(
        &zastava_policy(spec, 1),
        &[material["key_pem"].as_str().unwrap().to_string()],
        &roots,
    )
    .expect("compiles")
}

#[test]
fn keyed_signatures_must_be_logged_under_public_keys_tlog() {
    let payload = cosign::payload("registry.example/app", DIGEST);
    let Some(material) = material(std::slice::from_ref(&payload), "unit") else {
        return;
    };
    let logged = keyed_policy(&material, true, false);
    let unlogged = keyed_policy(&material, false, false);
    let cases = &material["cases"];
    let fingerprint = logged.signature.as_ref().unwrap().keys[0]
        .fingerprint
        .clone();
    assert_eq!(
        verify_case(&logged, &payload, &cases["logged"]),
        Ok(fingerprint.clone())
    );
    refused(
        verify_case(&logged, &payload, &cases["unlogged"]),
        "no Rekor bundle (publicKeysTlog requires the signature to be logged",
    );
    refused(
        verify_case(&logged, &payload, &cases["other_key"]),
        "the Rekor entry records another public key",
    );
    refused(
        verify_case(&logged, &payload, &cases["other_signature"]),
        "the Rekor entry records another signature",
    );
    refused(
        verify_case(&logged, &payload, &cases["other_payload"]),
        "the Rekor entry is for another payload",
    );
    refused(
        verify_case(&logged, &payload, &cases["rogue_log"]),
        "which the trusted root does not list",
    );
    // Without publicKeysTlog the log entry is not read: every case verifies by the key.
    for case in ["logged", "unlogged", "other_key", "rogue_log"] {
        assert_eq!(
            verify_case(&unlogged, &payload, &cases[case]),
            Ok(fingerprint.clone()),
            "{case}"
        );
    }
    // The root is part of the cache key: a policy with the log is not answered from the
    // cache of one without.
    assert_ne!(logged.cache_key, unlogged.cache_key);
}

#[test]
fn keyed_attestations_and_bundles_must_be_logged_under_public_keys_tlog() {
    let payload = cosign::payload("registry.example/app", DIGEST);
    let Some(material) = material(std::slice::from_ref(&payload), "attest") else {
        return;
    };
    let policy = keyed_policy(&material, true, true);
    let fingerprint = policy.signature.as_ref().unwrap().keys[0]
        .fingerprint
        .clone();
    let requirement = &policy.attestations[0];
    assert!(
        requirement.keys_log.is_some(),
        "keys sign attestations logged"
    );
    let envelope = material["attestation"]["envelope"].as_str().unwrap();
    let judge_under = |requirement: &attestation::AttestationCheck, case: &str| {
        let found = [FoundAttestation {
            media_type: cosign::DSSE_MEDIA_TYPE.into(),
            blob: envelope.as_bytes().to_vec(),
            predicate_type: Some("https://slsa.dev/provenance/v1".into()),
            rekor_bundle: material["attestation"]["cases"][case]
                .as_str()
                .map(str::to_string),
            found_at: "tag".into(),
            ..Default::default()
        }];
        attestation::judge(requirement, &found, DIGEST, chrono::Utc::now())
            .map_err(|f| f.to_string())
    };
    let judge = |case: &str| judge_under(requirement, case);
    assert_eq!(judge("dsse"), Ok(fingerprint.clone()));
    assert_eq!(judge("intoto"), Ok(fingerprint.clone()));
    refused(
        judge("unlogged"),
        "publicKeysTlog requires the signature to be logged",
    );
    refused(
        judge("other_key"),
        "records another signature or public key",
    );
    // `attestations: false`: attestations made offline by the keys (the platform's own
    // signed verdicts) count without an entry; image signatures still need theirs.
    let offline = compile_with_trusted_roots(
        &zastava_policy(
            json!({"mode": "enforce",
                   "requireSignature": {"publicKeys": {"name": "keys"},
                                        "publicKeysTlog": {"trustedRoot": {"name": "rekor-root"},
                                                           "attestations": false}},
                   "requireAttestations": [{"predicateType": "slsaprovenance1", "signedBy": "keys"}]}),
            1,
        ),
        &[material["key_pem"].as_str().unwrap().to_string()],
        &[material["trusted_root"].as_str().unwrap().to_string()],
    )
    .unwrap();
    assert!(offline.signature.as_ref().unwrap().keys_log.is_some());
    assert_eq!(
        judge_under(&offline.attestations[0], "unlogged"),
        Ok(fingerprint.clone())
    );

    // Keyed Sigstore bundles: their tlog entries (inclusion proof, SET) against the root.
    let check = policy.signature.as_ref().unwrap();
    let verdict = |case: &str| {
        let bytes = serde_json::to_vec(&material["bundles"][case]).unwrap();
        bundle::verify_with_check(check, &bytes, chrono::Utc::now(), |_| Ok(())).map(|(by, _)| by)
    };
    assert_eq!(verdict("logged"), Ok(fingerprint.clone()));
    refused(
        verdict("unlogged"),
        "no transparency log entry (publicKeysTlog requires one)",
    );
    refused(
        verdict("other_key"),
        "tlog entry 1: the log entry records another signer",
    );
    refused(verdict("rogue_log"), "which the trusted root does not list");
    // Without publicKeysTlog a keyed bundle's entries are not read.
    let unlogged = keyed_policy(&material, false, false);
    let bytes = serde_json::to_vec(&material["bundles"]["rogue_log"]).unwrap();
    assert!(
        bundle::verify_with_check(
            unlogged.signature.as_ref().unwrap(),
            &bytes,
            chrono::Utc::now(),
            |_| Ok(())
        )
        .is_ok()
    );

    // A root whose logs cannot be used refuses the policy at compile.
    let mut no_logs: Value =
        serde_json::from_str(material["trusted_root"].as_str().unwrap()).unwrap();
    no_logs["tlogs"] = json!([]);
    let error = compile_with_trusted_roots(
        &zastava_policy(
            json!({"mode": "enforce",
                   "requireSignature": {"publicKeys": {"name": "keys"},
                                        "publicKeysTlog": {"trustedRoot": {"name": "rekor-root"}}}}),
            1,
        ),
        &[material["key_pem"].as_str().unwrap().to_string()],
        &[no_logs.to_string()],
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("publicKeysTlog: the trusted root lists no tlogs"),
        "{error}"
    );
}

#[tokio::test]
async fn the_webhook_admits_keyed_signatures_only_with_their_log_entry_from_the_registry() {
    let Some(registry) = stellaops_testing::service("STELLAOPS_TEST_REGISTRY") else {
        return;
    };
    let mut pushed = Vec::new();
    for name in ["logged", "unlogged", "twice"] {
        let repository = format!("zastava/keyed-log-{name}");
        let digest = push_image(&registry, &repository, "1.0", name);
        let payload = cosign::payload(&format!("{registry}/{repository}"), &digest);
        pushed.push((repository, digest, payload));
    }
    let payloads: Vec<Vec<u8>> = pushed.iter().map(|(_, _, p)| p.clone()).collect();
    let Some(material) = material(&payloads, "registry") else {
        return;
    };
    let mut images = Vec::new();
    for (i, (repository, digest, payload)) in pushed.iter().enumerate() {
        let signed = &material["signed"][i];
        let mut annotations = serde_json::Map::new();
        annotations.insert(
            cosign::SIGNATURE_ANNOTATION.into(),
            signed["signature"].clone(),
        );
        // The first image's signature keeps its log entry; the second's lost it (as
        // `cosign sign --tlog-upload=false` leaves none); the third's is found twice, as a
        // referrer without the entry and under the tag with it.
        if i == 2 {
            let bare = serde_json::json!({cosign::SIGNATURE_ANNOTATION: signed["signature"]});
            oci::push_referrer(
                &registry,
                repository,
                digest,
                cosign::SIGNATURE_ARTIFACT_TYPE,
                &[(payload, cosign::SIMPLE_SIGNING_MEDIA_TYPE, bare)],
                true,
            )
            .await;
        }
        if i != 1 {
            annotations.insert(
                cosign::REKOR_BUNDLE_ANNOTATION.into(),
                signed["bundle"].clone(),
            );
        }
        oci::push_cosign_signature_annotated(
            &registry,
            repository,
            digest,
            payload,
            Value::Object(annotations),
        )
        .await;
        images.push(format!("{registry}/{repository}@{digest}"));
    }
    let webhook = RegistryWebhook::start(&registry, keyed_policy(&material, true, false)).await;
    assert_eq!(webhook.ask(&images[0]).await["allowed"], true, "logged");
    assert_eq!(
        webhook.ask(&images[2]).await["allowed"],
        true,
        "one copy without the entry, one with"
    );
    webhook
        .denies(
            &images[1],
            "publicKeysTlog requires the signature to be logged",
        )
        .await;
}
