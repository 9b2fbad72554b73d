//! Keyless (Fulcio/Rekor) signatures verified offline against a trusted root. The material
//! (CA chain, short-lived certificate, signature, Rekor entry and its signed entry
//! timestamp, trusted_root.json) is made by Python `cryptography` in
//! `keyless_material.py`, not by our code, so the verifier is not only agreeing with itself.

use std::sync::Arc;

use base64::Engine;

use serde_json::{Value, json};
use stellaops_admission_webhook::cosign;
use stellaops_admission_webhook::evidence::RegistryEvidence;
use stellaops_admission_webhook::policy::{CompiledPolicy, compile_with_trusted_roots};
use stellaops_registry::{Credentials, RegistryClient};
use stellaops_testing::oci;

use crate::material::{DIGEST, Scratch, generate, refused, verify_case};
use crate::policy::zastava_policy;
use crate::registry::push_image;
use crate::server::{ask_for_pod, client, start};

/// Material for `payload` from the independent generator; `None` without the test Python.
fn material(payload: &[u8], label: &str) -> Option<Value> {
    let scratch = Scratch::new(&format!("keyless-{label}"));
    let payload_file = scratch.path("payload.json");
    std::fs::write(&payload_file, payload).unwrap();
    generate("keyless_material.py", &[payload_file.as_os_str()], &scratch)
}

fn keyless_policy(authority: Value, root: &str) -> CompiledPolicy {
    compile_with_trusted_roots(
        &zastava_policy(
            json!({"mode": "enforce", "requireSignature": {"keyless": [authority]}}),
            1,
        ),
        &[],
        &[root.to_string()],
    )
    .expect("compiles")
}

fn authority(material: &Value) -> Value {
    json!({"subject": material["subject"], "issuer": material["issuer"],
           "trustedRoot": {"name": "sigstore-root"}})
}

fn check(
    policy: &CompiledPolicy,
    material: &Value,
    case: &str,
    payload: &[u8],
) -> Result<String, String> {
    verify_case(policy, payload, &material["cases"][case])
}

#[test]
fn independently_made_keyless_signatures_verify_and_each_broken_part_is_refused() {
    let payload = cosign::payload("registry.example/app", DIGEST);
    let Some(material) = material(&payload, "unit") else {
        return;
    };
    let root = material["trusted_root"].as_str().unwrap();
    let policy = keyless_policy(authority(&material), root);
    let subject = material["subject"].as_str().unwrap();
    let issuer = material["issuer"].as_str().unwrap();
    // The certificate expired long before now; it was valid when the log integrated it.
    assert_eq!(
        check(&policy, &material, "good", &payload).unwrap(),
        format!("keyless:{subject} ({issuer})")
    );
    // A Rekor v2 log (an Ed25519 key) beside the ECDSA one: the entry still finds its
    // log by ID; with the Ed25519 log alone, the ECDSA log's entry names a log the root
    // does not list.
    let mut with_ed25519: Value = serde_json::from_str(root).unwrap();
    let mut ed25519 = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    ed25519.extend(
        ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])
            .verifying_key()
            .as_bytes(),
    );
    let ed25519 = base64::engine::general_purpose::STANDARD.encode(ed25519);
    let mut ed25519_log = with_ed25519["tlogs"][0].clone();
    ed25519_log["publicKey"] = json!({"rawBytes": ed25519, "keyDetails": "PKIX_ED25519"});
    ed25519_log["logId"] =
        json!({"keyId": base64::engine::general_purpose::STANDARD.encode([9u8; 32])});
    with_ed25519["tlogs"]
        .as_array_mut()
        .unwrap()
        .insert(0, ed25519_log.clone());
    let mixed = keyless_policy(authority(&material), &with_ed25519.to_string());
    assert!(check(&mixed, &material, "good", &payload).is_ok());
    with_ed25519["tlogs"] = json!([ed25519_log]);
    let only_v2 = keyless_policy(authority(&material), &with_ed25519.to_string());
    refused(
        check(&only_v2, &material, "good", &payload),
        "which the trusted root does not list",
    );
    // An Ed25519 key that is no curve point: the root is refused when compiled.
    let mut broken: Value = serde_json::from_str(root).unwrap();
    let mut junk = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    junk.extend([7u8; 32]);
    broken["tlogs"][0]["publicKey"]["rawBytes"] =
        json!(base64::engine::general_purpose::STANDARD.encode(junk));
    let error = compile_with_trusted_roots(
        &zastava_policy(
            json!({"requireSignature": {"keyless": [authority(&material)]}}),
            1,
        ),
        &[],
        &[broken.to_string()],
    )
    .unwrap_err();
    assert!(error.to_string().contains("not an Ed25519 key"), "{error}");
    // The legacy issuer extension; a URI identity (a CI workflow), by expression.
    assert_eq!(
        check(&policy, &material, "legacy_issuer", &payload).unwrap(),
        format!("keyless:{subject} ({issuer})")
    );
    refused(
        check(&policy, &material, "uri_subject", &payload),
        "the certificate's identity https://github.com/example/app/",
    );
    let workflow = json!({"subjectRegExp": "https://github\\.com/example/app/\\.github/workflows/release\\.yml@refs/tags/v.*",
                          "issuer": issuer, "trustedRoot": {"name": "r"}});
    assert_eq!(
        check(
            &keyless_policy(workflow, root),
            &material,
            "uri_subject",
            &payload
        )
        .unwrap(),
        format!(
            "keyless:{} ({issuer})",
            material["workflow"].as_str().unwrap()
        )
    );
    // Identities by expression, anchored.
    let by_pattern = json!({"subjectRegExp": ".*@stella-ops\\.example", "issuerRegExp": "https://issuer\\..*",
                            "trustedRoot": {"name": "r"}});
    assert!(
        check(
            &keyless_policy(by_pattern, root),
            &material,
            "good",
            &payload
        )
        .is_ok()
    );
    let unanchored =
        json!({"subjectRegExp": "ci@stella-ops", "issuer": issuer, "trustedRoot": {"name": "r"}});
    refused(
        check(
            &keyless_policy(unanchored, root),
            &material,
            "good",
            &payload,
        ),
        "identity",
    );

    // Wrong identity, wrong issuer.
    let mut other = authority(&material);
    other["subject"] = json!("someone-else@stella-ops.example");
    refused(
        check(&keyless_policy(other, root), &material, "good", &payload),
        &format!("the certificate's identity {subject} is not \"someone-else@stella-ops.example\""),
    );
    let mut other = authority(&material);
    other["issuer"] = json!("https://accounts.example.com");
    refused(
        check(&keyless_policy(other, root), &material, "good", &payload),
        &format!("the certificate's OIDC issuer {issuer:?} is not"),
    );
    // The log integrated the signature after the certificate expired.
    refused(
        check(&policy, &material, "expired", &payload),
        "the signing certificate is valid from",
    );
    // Without the log, the certificate is checked now: long expired.
    let mut no_tlog = authority(&material);
    no_tlog["requireTlog"] = json!(false);
    refused(
        check(
            &keyless_policy(no_tlog.clone(), root),
            &material,
            "no_bundle",
            &payload,
        ),
        "not at the signing time",
    );
    // The log entry: required, signed by the trusted log, unaltered, for this signature.
    refused(
        check(&policy, &material, "no_bundle", &payload),
        "no Rekor bundle",
    );
    refused(
        check(&policy, &material, "rogue_log", &payload),
        "which the trusted root does not list",
    );
    refused(
        check(&policy, &material, "altered_set", &payload),
        "signed entry timestamp does not verify",
    );
    refused(
        check(&policy, &material, "other_entry", &payload),
        "the Rekor entry records another signature",
    );
    // Certificate transparency: an SCT is required (the default), by a CT log of the root.
    refused(
        check(&policy, &material, "no_sct", &payload),
        "the signing certificate has no embedded SCT",
    );
    refused(
        check(&policy, &material, "rogue_sct", &payload),
        "which the trusted root does not list",
    );
    refused(
        check(&policy, &material, "copied_sct", &payload),
        "does not verify",
    );
    let mut no_sct = authority(&material);
    no_sct["requireSCT"] = json!(false);
    assert!(check(&keyless_policy(no_sct, root), &material, "no_sct", &payload).is_ok());
    let mut without_ctlogs: Value = serde_json::from_str(root).unwrap();
    without_ctlogs["ctlogs"] = json!([]);
    let error = compile_with_trusted_roots(
        &zastava_policy(
            json!({"requireSignature": {"keyless": [authority(&material)]}}),
            1,
        ),
        &[],
        &[without_ctlogs.to_string()],
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("requireSCT is true but the trusted root lists no ctlogs"),
        "{error}"
    );
    // A payload changed after signing.
    let tampered = cosign::payload("registry.example/evil", DIGEST);
    refused(
        check(&policy, &material, "good", &tampered),
        "the signature does not verify with the signing certificate's key",
    );
    // A certificate from a CA the root does not hold, and a root that holds neither.
    refused(
        check(&policy, &material, "untrusted_ca", &payload),
        "does not chain to the trusted root",
    );
    // (`other_root` holds the same log key but another CA.)
    let elsewhere = keyless_policy(
        authority(&material),
        material["other_root"].as_str().unwrap(),
    );
    refused(
        check(&elsewhere, &material, "good", &payload),
        "does not chain to the trusted root",
    );
    // The payload names the digest: a valid signature of another image is refused.
    let other_image = cosign::payload("registry.example/app", &DIGEST.replace("4bc4", "0000"));
    let Some(other_material) = self::material(&other_image, "other") else {
        return;
    };
    let other_policy = keyless_policy(
        authority(&other_material),
        other_material["trusted_root"].as_str().unwrap(),
    );
    refused(
        check(&other_policy, &other_material, "good", &other_image),
        "not this image's digest",
    );
}

#[tokio::test]
async fn the_webhook_admits_a_keyless_signed_image_from_the_registry_and_denies_the_rest() {
    let Some(registry) = stellaops_testing::service("STELLAOPS_TEST_REGISTRY") else {
        return;
    };
    let tag = format!("{}", std::process::id());
    let signed = push_image(
        &registry,
        "zastava/keyless-signed",
        &tag,
        &format!("keyless {tag}"),
    );
    let unsigned = push_image(
        &registry,
        "zastava/keyless-unsigned",
        &tag,
        &format!("unsigned {tag}"),
    );
    let stray = push_image(
        &registry,
        "zastava/keyless-stray",
        &tag,
        &format!("stray {tag}"),
    );
    let payload = cosign::payload(&format!("{registry}/zastava/keyless-signed"), &signed);
    let Some(material) = material(&payload, "e2e") else {
        return;
    };
    let annotations = |case: &str| {
        let case = &material["cases"][case];
        json!({
            "dev.cosignproject.cosign/signature": case["signature"],
            "dev.sigstore.cosign/certificate": case["certificate"],
            "dev.sigstore.cosign/chain": case["chain"],
            "dev.sigstore.cosign/bundle": case["bundle"],
        })
    };
    oci::push_cosign_signature_annotated(
        &registry,
        "zastava/keyless-signed",
        &signed,
        &payload,
        annotations("good"),
    )
    .await;
    // A certificate from a CA the root does not hold, for the stray image.
    let stray_payload = cosign::payload(&format!("{registry}/zastava/keyless-stray"), &stray);
    let Some(stray_material) = self::material(&stray_payload, "e2e-stray") else {
        return;
    };
    let case = &stray_material["cases"]["good"];
    oci::push_cosign_signature_annotated(
        &registry,
        "zastava/keyless-stray",
        &stray,
        &stray_payload,
        json!({
            "dev.cosignproject.cosign/signature": case["signature"],
            "dev.sigstore.cosign/certificate": case["certificate"],
            "dev.sigstore.cosign/bundle": case["bundle"],
        }),
    )
    .await;

    let evidence = Arc::new(RegistryEvidence {
        registry: RegistryClient::new(Credentials::default(), vec![registry.clone()]).unwrap(),
        database: None,
        verdict_keys: Default::default(),
    });
    let running = start(evidence).await;
    running.webhook.set_policies([keyless_policy(
        authority(&material),
        material["trusted_root"].as_str().unwrap(),
    )]);
    let https = client(&running, &running.cert_pem);
    let ask = |image: String| ask_for_pod(https.clone(), running.addr.port(), "prod".into(), image);
    let answer = ask(format!("{registry}/zastava/keyless-signed:{tag}")).await;
    assert_eq!(answer["allowed"], true, "{answer}");
    let answer = ask(format!("{registry}/zastava/keyless-unsigned@{unsigned}")).await;
    assert_eq!(answer["allowed"], false, "{answer}");
    assert!(
        answer["status"]["message"]
            .as_str()
            .unwrap()
            .contains("no cosign signature"),
        "{answer}"
    );
    let answer = ask(format!("{registry}/zastava/keyless-stray@{stray}")).await;
    assert_eq!(answer["allowed"], false, "{answer}");
    let message = answer["status"]["message"].as_str().unwrap();
    assert!(message.contains("keyless authority 1"), "{answer}");
    assert!(
        message.contains("which the trusted root does not list"),
        "{answer}"
    );
}

#[test]
fn every_fulcio_extension_the_crd_names_is_required_by_its_oid() {
    use stellaops_admission_webhook::keyless::{FULCIO_EXTENSIONS, FULCIO_GITHUB_EXTENSIONS};
    let root = json!({"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
                      "certificateAuthorities": [{"certChain": {"certificates": [
                          {"rawBytes": base64::engine::general_purpose::STANDARD.encode(
                              rcgen::generate_simple_self_signed(vec!["ca".to_string()])
                                  .unwrap().cert.der())}]}}]})
    .to_string();
    // Every field of certificateExtensions, each set to its own name.
    let fields: serde_json::Map<String, Value> = FULCIO_EXTENSIONS
        .iter()
        .chain(&FULCIO_GITHUB_EXTENSIONS)
        .map(|(name, _)| (name.to_string(), json!(format!("value of {name}"))))
        .collect();
    let mut authority = json!({"subject": "a@example.com", "issuer": "https://issuer.example",
                               "trustedRoot": {"name": "root"}, "requireTlog": false,
                               "requireSCT": false});
    authority["certificateExtensions"] = Value::Object(fields);
    let policy = keyless_policy(authority, &root);
    let required = &policy.signature.as_ref().unwrap().keyless[0].extensions;
    assert_eq!(required.len(), 19, "{required:?}");
    let listed = FULCIO_EXTENSIONS
        .iter()
        .map(|e| (e, false))
        .chain(FULCIO_GITHUB_EXTENSIONS.iter().map(|e| (e, true)));
    for (wanted, (&(name, oid), raw)) in required.iter().zip(listed) {
        assert_eq!((wanted.name, wanted.oid, wanted.raw), (name, oid, raw));
        assert_eq!(wanted.value, format!("value of {name}"));
    }
    for (i, (_, oid)) in FULCIO_GITHUB_EXTENSIONS.iter().enumerate() {
        assert_eq!(*oid, format!("1.3.6.1.4.1.57264.1.{}", i + 2));
    }
    // The OIDs are Fulcio's .9 to .22, in order.
    for (i, (_, oid)) in FULCIO_EXTENSIONS.iter().enumerate() {
        assert_eq!(*oid, format!("1.3.6.1.4.1.57264.1.{}", i + 9));
    }
}
