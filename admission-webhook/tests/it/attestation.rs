//! Attestation policies (`requireAttestations`). The compile-time checks of predicate types
//! and CEL conditions; then, end to end, images and their in-toto attestations (DSSE,
//! keyed and keyless, and Sigstore bundles holding DSSE attestations) made and pushed to the
//! real registry by `attestation_material.py` (Python `cryptography` and plain HTTP, not our
//! code), admitted through the webhook server over TLS; the bundles are also put to
//! sigstore-python (`bundle_crosscheck.py`), whose verdicts must agree with ours.

use std::ffi::OsStr;
use std::sync::Arc;

use serde_json::{Value, json};
use stellaops_admission_webhook::attestation::{
    self, AttestationCheck, Condition, MAX_LIST_LEN, Variables, pae, predicate_type_uri,
};
use stellaops_admission_webhook::evidence::RegistryEvidence;
use stellaops_admission_webhook::policy::{
    CompiledPolicy, PolicyError, compile, compile_for_audit, compile_with_trusted_roots,
};
use stellaops_crds::ZastavaPolicy;
use stellaops_registry::{Credentials, RegistryClient};
use stellaops_testing::oci;

use crate::material::{Scratch, generate, sigstore_python_verdicts};
use crate::policy::{public_pem, signing_key};
use crate::server::{ask_for_pod, client, start};

fn named_policy(name: &str, spec: Value) -> ZastavaPolicy {
    serde_json::from_value(json!({
        "apiVersion": "stella-ops.org/v1alpha1", "kind": "ZastavaPolicy",
        "metadata": {"name": name, "generation": 1},
        "spec": spec,
    }))
    .expect("a ZastavaPolicy")
}

fn keyed(requirements: Value) -> Value {
    json!({"mode": "enforce",
           "requireSignature": {"publicKeys": {"name": "keys", "namespace": "ns"},
                                "imageSignature": false},
           "requireAttestations": requirements})
}

fn compile_error(spec: Value) -> PolicyError {
    compile(&named_policy("p", spec), &[public_pem(&signing_key(1))]).expect_err("must not compile")
}

#[test]
fn predicate_types_short_names_and_uris() {
    assert_eq!(
        predicate_type_uri("slsaprovenance1").unwrap(),
        "https://slsa.dev/provenance/v1"
    );
    assert_eq!(
        predicate_type_uri("cyclonedx").unwrap(),
        "https://cyclonedx.org/bom"
    );
    assert_eq!(
        predicate_type_uri("spdx").unwrap(),
        "https://spdx.dev/Document"
    );
    assert_eq!(
        predicate_type_uri("vuln").unwrap(),
        "https://cosign.sigstore.dev/attestation/vuln/v1"
    );
    assert_eq!(
        predicate_type_uri("verdict").unwrap(),
        stellaops_store::attestation::PREDICATE_TYPE
    );
    assert_eq!(
        predicate_type_uri("https://example.com/custom/v2").unwrap(),
        "https://example.com/custom/v2"
    );
    let error = predicate_type_uri("slsa").unwrap_err();
    assert!(
        error.contains("neither a URI nor one of slsaprovenance1"),
        "{error}"
    );
}

#[test]
fn pae_is_the_dsse_pre_authentication_encoding() {
    // The example of the DSSE specification (protocol.md).
    assert_eq!(
        pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
    );
}

#[test]
fn conditions_are_compiled_and_refused_with_a_reason_when_the_policy_is_loaded() {
    let with = |expression: &str| {
        keyed(json!([{"predicateType": "slsaprovenance1",
                      "conditions": [{"expression": expression}]}]))
    };
    let error = compile_error(with("predicate.runDetails.builder.id.startsWith(")).to_string();
    assert!(
        error.contains("requireAttestations[0].conditions[0]"),
        "{error}"
    );
    assert!(error.contains("does not parse"), "{error}");
    assert_eq!(
        compile_error(with("predicate.a == ")).reason(),
        "InvalidAttestation"
    );
    let error = compile_error(with("predicat.runDetails.builder.id == 'x'")).to_string();
    assert!(error.contains("unknown variable \"predicat\""), "{error}");
    let error = compile_error(with("predicate.x.startswith('a')")).to_string();
    assert!(error.contains("unknown function \"startswith\""), "{error}");
    let error =
        compile_error(with("predicate.a.all(x, predicate.b.exists(y, x == y))")).to_string();
    assert!(error.contains("may not be nested"), "{error}");
    let error = compile_error(with(&format!("'{}' == 'a'", "a".repeat(1100)))).to_string();
    assert!(error.contains("more than the 1024 accepted"), "{error}");
    // Unknown predicate type; attestations without an authority to verify them.
    let error = compile_error(keyed(json!([{"predicateType": "provenance"}]))).to_string();
    assert!(error.contains("neither a URI"), "{error}");
    let error = compile(
        &named_policy(
            "p",
            json!({"requireAttestations": [{"predicateType": "spdx"}]}),
        ),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("needs requireSignature"), "{error}");
    let error = compile_error(keyed(
        json!([{"predicateType": "spdx", "signedBy": "keyless"}]),
    ))
    .to_string();
    assert!(
        error.contains("signedBy keyless but requireSignature has no keyless authority"),
        "{error}"
    );
    // Good ones compile, comprehension variables included; the audit compiles them too.
    let good = keyed(json!([{"predicateType": "slsaprovenance1", "conditions": [
        {"expression": "predicate.runDetails.builder.id.startsWith('https://github.com/')"},
        {"expression": "predicate.buildDefinition.resolvedDependencies.exists(d, d.uri.matches('^git\\\\+https://github\\\\.com/example/'))",
         "message": "built from example's sources"},
        {"expression": "predicateType == 'https://slsa.dev/provenance/v1' && size(subject) > 0"},
    ]}]));
    let compiled = compile(
        &named_policy("p", good.clone()),
        &[public_pem(&signing_key(1))],
    )
    .expect("compiles");
    assert_eq!(compiled.attestations.len(), 1);
    assert_eq!(compiled.attestations[0].conditions.len(), 3);
    let audit = compile_for_audit(&named_policy("p", good)).unwrap();
    assert_eq!(audit.attestations.len(), 1);
    assert!(audit.attestations[0].keys.is_empty());
}

fn variables(predicate: Value) -> Variables {
    let mut budget = attestation::MAX_VALUES;
    Variables {
        predicate: attestation::to_cel(&predicate, &mut budget).unwrap(),
        predicate_type: attestation::to_cel(&json!("https://slsa.dev/provenance/v1"), &mut budget)
            .unwrap(),
        subject: attestation::to_cel(&json!([{"digest": {"sha256": "ab"}}]), &mut budget).unwrap(),
    }
}

#[test]
fn conditions_evaluate_over_the_predicate_and_fail_closed() {
    let predicate = json!({"runDetails": {"builder": {"id": "https://github.com/actions/runner"}},
                           "count": 3, "materials": [{"uri": "git+https://github.com/a"}]});
    let eval = |expression: &str| {
        Condition::compile(expression, None)
            .unwrap()
            .evaluate(&variables(predicate.clone()))
    };
    assert_eq!(
        eval("predicate.runDetails.builder.id.startsWith('https://github.com/')"),
        Ok(true)
    );
    assert_eq!(eval("predicate.runDetails.builder.id == 'x'"), Ok(false));
    // JSON integers compare with CEL ints.
    assert_eq!(
        eval("predicate.count == 3 && predicate.count > 2"),
        Ok(true)
    );
    assert_eq!(
        eval("predicate.materials.all(m, m.uri.startsWith('git+'))"),
        Ok(true)
    );
    assert_eq!(eval("subject[0].digest.sha256 == 'ab'"), Ok(true));
    // A missing field and a non-bool result are errors (the caller denies).
    let error = eval("predicate.runDetails.missing == 'x'").unwrap_err();
    assert!(error.contains("missing"), "{error}");
    let error = eval("predicate.count").unwrap_err();
    assert!(error.contains("not a bool"), "{error}");
    // Bounded input: a list longer than the cap is refused before CEL sees it.
    let long = json!({"list": vec![0; MAX_LIST_LEN + 1]});
    let mut budget = attestation::MAX_VALUES;
    let error = attestation::to_cel(&long, &mut budget).unwrap_err();
    assert!(error.contains("more than the 10000"), "{error}");
}

#[test]
fn a_statement_is_judged_by_type_signature_subject_and_conditions() {
    use base64::Engine;
    use p256::ecdsa::signature::Signer;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let digest = format!("sha256:{}", "ab".repeat(32));
    let statement = json!({"_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "x", "digest": {"sha256": "ab".repeat(32)}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"runDetails": {"builder": {"id": "https://github.com/x"}}}});
    let payload = serde_json::to_vec(&statement).unwrap();
    let key = signing_key(5);
    let signature: p256::ecdsa::Signature =
        key.sign(&pae("application/vnd.in-toto+json", &payload));
    let envelope = json!({"payloadType": "application/vnd.in-toto+json", "payload": b64(&payload),
                          "signatures": [{"keyid": "", "sig": b64(signature.to_der().as_bytes())}]});
    let found = vec![stellaops_admission_webhook::evidence::FoundAttestation {
        media_type: "application/vnd.dsse.envelope.v1+json".into(),
        blob: serde_json::to_vec(&envelope).unwrap(),
        predicate_type: Some("https://slsa.dev/provenance/v1".into()),
        found_at: "tag".into(),
        ..Default::default()
    }];
    let keys = stellaops_admission_webhook::policy::parse_public_keys(&public_pem(&key)).unwrap();
    let check = |conditions: Vec<Condition>, keys| AttestationCheck {
        name: "slsaprovenance1".into(),
        predicate_type: "https://slsa.dev/provenance/v1".into(),
        keys,
        keyless: Vec::new(),
        keys_log: None,
        conditions,
    };
    let now = chrono::Utc::now();
    let fingerprint = keys[0].fingerprint.clone();
    assert_eq!(
        attestation::judge(&check(vec![], keys.clone()), &found, &digest, now),
        Ok(fingerprint)
    );
    let other_keys =
        stellaops_admission_webhook::policy::parse_public_keys(&public_pem(&signing_key(6)))
            .unwrap();
    let failure = attestation::judge(&check(vec![], other_keys), &found, &digest, now).unwrap_err();
    assert_eq!(failure.reason, "AttestationUnverified");
    assert!(
        failure.message.contains("not signed by any trusted key"),
        "{failure}"
    );
    let other_digest = format!("sha256:{}", "cd".repeat(32));
    let failure =
        attestation::judge(&check(vec![], keys.clone()), &found, &other_digest, now).unwrap_err();
    assert_eq!(failure.reason, "AttestationUnverified");
    assert!(
        failure.message.contains("not this image's digest"),
        "{failure}"
    );
    let unmet =
        Condition::compile("predicate.runDetails.builder.id == 'y'", Some("builder y")).unwrap();
    let failure =
        attestation::judge(&check(vec![unmet], keys.clone()), &found, &digest, now).unwrap_err();
    assert_eq!(failure.reason, "AttestationConditionFailed");
    assert!(
        failure
            .message
            .contains("condition builder y (predicate.runDetails.builder.id == 'y') is false"),
        "{failure}"
    );
    let mut spdx = check(vec![], keys);
    spdx.predicate_type = "https://spdx.dev/Document".into();
    let failure = attestation::judge(&spdx, &found, &digest, now).unwrap_err();
    assert_eq!(failure.reason, "AttestationMissing");
}

/// Run `attestation_material.py` against the registry; `None` without the test Python.
fn material(registry: &str, repository: &str) -> Option<Value> {
    let scratch = Scratch::new(&format!("attestations-{}", repository.replace('/', "-")));
    generate(
        "attestation_material.py",
        &[OsStr::new(registry), OsStr::new(repository)],
        &scratch,
    )
}

#[tokio::test]
async fn the_webhook_admits_images_by_their_attestations_in_the_real_registry() {
    let Some(registry) = stellaops_testing::service("STELLAOPS_TEST_REGISTRY") else {
        return;
    };
    let repository = format!("zastava/attest-{}", std::process::id());
    let Some(material) = material(&registry, &repository) else {
        return;
    };
    let image = |case: &str| material["images"][case].as_str().unwrap().to_string();
    // The referrer case: the envelope as an OCI 1.1 referrer of artifact type DSSE (as
    // `scan --attach` stores the verdict), found through the tag schema or the API.
    let referrer_digest = image("referrer").rsplit_once('@').unwrap().1.to_string();
    let envelope = serde_json::to_vec(&material["envelopes"]["referrer"]).unwrap();
    oci::push_referrer(
        &registry,
        &repository,
        &referrer_digest,
        "application/vnd.dsse.envelope.v1+json",
        &[(
            &envelope,
            "application/vnd.dsse.envelope.v1+json",
            json!({"predicateType": "https://slsa.dev/provenance/v1"}),
        )],
        true,
    )
    .await;

    let keys = [material["key_pem"].as_str().unwrap().to_string()];
    let root = material["trusted_root"].as_str().unwrap().to_string();
    let slsa =
        |conditions: Value| json!([{"predicateType": "slsaprovenance1", "conditions": conditions}]);
    let keyed_policy = |name: &str, mode: &str, conditions: Value| -> CompiledPolicy {
        let mut spec = keyed(slsa(conditions));
        spec["mode"] = json!(mode);
        compile(&named_policy(name, spec), &keys).expect("compiles")
    };
    let keyless_policy = |name: &str, subject: &str| -> CompiledPolicy {
        compile_with_trusted_roots(
            &named_policy(
                name,
                json!({"mode": "enforce",
                       "requireSignature": {"keyless": [{"subject": subject, "issuer": material["issuer"],
                                                         "trustedRoot": {"name": "root"}}],
                                            "imageSignature": false},
                       "requireAttestations": [{"predicateType": "https://slsa.dev/provenance/v1",
                                                "signedBy": "keyless"}]}),
            ),
            &[],
            std::slice::from_ref(&root),
        )
        .expect("compiles")
    };
    let evidence = Arc::new(RegistryEvidence {
        registry: RegistryClient::new(Credentials::default(), vec![registry.clone()]).unwrap(),
        database: None,
        verdict_keys: Default::default(),
    });
    let running = start(evidence).await;
    running.webhook.set_policies([
        keyed_policy("enforce", "enforce", json!([])),
        keyed_policy("warn", "warn", json!([])),
        keyed_policy(
            "cel-true",
            "enforce",
            json!([{"expression": "predicate.buildDefinition.externalParameters.workflow.repository == 'https://github.com/example/app'"},
                   {"expression": "predicate.runDetails.builder.id.startsWith('https://github.com/')"}]),
        ),
        keyed_policy(
            "cel-false",
            "enforce",
            json!([{"expression": "predicate.buildDefinition.externalParameters.workflow.repository == 'https://github.com/evil/app'",
                    "message": "built from evil/app"}]),
        ),
        keyed_policy(
            "cel-error",
            "enforce",
            json!([{"expression": "predicate.runDetails.builder.version == 'v1'"}]),
        ),
        keyless_policy("keyless", material["subject"].as_str().unwrap()),
        keyless_policy("keyless-other", "someone-else@stella-ops.example"),
        {
            // The authorities sign the image too unless `imageSignature: false`.
            let mut spec = keyed(slsa(json!([])));
            spec["requireSignature"]["imageSignature"] = json!(true);
            compile(&named_policy("signed-too", spec), &keys).expect("compiles")
        },
    ]);
    let https = client(&running, &running.cert_pem);
    let ask = |policy: &str, image: String| {
        ask_for_pod(
            https.clone(),
            running.addr.port(),
            policy.to_string(),
            image,
        )
    };
    let denied = assert_denied;

    // Present and valid (next to an SBOM attestation in the same .att manifest).
    let answer = ask("enforce", image("keyed")).await;
    assert_eq!(answer["allowed"], true, "{answer}");
    // The same image by tag: resolved, then judged by its digest.
    let by_tag = format!("{registry}/{repository}:keyed");
    assert_eq!(ask("enforce", by_tag).await["allowed"], true);
    // As an OCI referrer.
    let answer = ask("enforce", image("referrer")).await;
    assert_eq!(answer["allowed"], true, "{answer}");
    // The image signature is required as well when the policy says so (the default).
    denied(
        &ask("signed-too", image("keyed")).await,
        &["no cosign signature"],
    );
    // Missing: denied in enforce, a warning in warn.
    denied(
        &ask("enforce", image("missing")).await,
        &[
            "AttestationMissing",
            "slsaprovenance1 (https://slsa.dev/provenance/v1)",
        ],
    );
    denied(
        &ask("enforce", image("only_sbom")).await,
        &["AttestationMissing"],
    );
    let answer = ask("warn", image("missing")).await;
    assert_eq!(answer["allowed"], true, "{answer}");
    assert!(
        answer["warnings"][0]
            .as_str()
            .unwrap()
            .contains("AttestationMissing"),
        "{answer}"
    );
    // Signed by another key; about another digest; payload changed after signing.
    denied(
        &ask("enforce", image("wrong_key")).await,
        &["AttestationUnverified", "not signed by any trusted key"],
    );
    denied(
        &ask("enforce", image("wrong_subject")).await,
        &["AttestationUnverified", "not this image's digest"],
    );
    denied(
        &ask("enforce", image("tampered")).await,
        &["AttestationUnverified", "not signed by any trusted key"],
    );
    // CEL conditions over the predicate: true, false, not evaluable (fail closed).
    let answer = ask("cel-true", image("keyed")).await;
    assert_eq!(answer["allowed"], true, "{answer}");
    denied(
        &ask("cel-false", image("keyed")).await,
        &[
            "AttestationConditionFailed",
            "built from evil/app",
            "is false",
        ],
    );
    denied(
        &ask("cel-error", image("keyed")).await,
        &["AttestationConditionFailed", "could not be evaluated"],
    );
    // Keyless: a Fulcio-like certificate, the Rekor-like entry of kind dsse or intoto.
    let answer = ask("keyless", image("keyless")).await;
    assert_eq!(answer["allowed"], true, "{answer}");
    let answer = ask("keyless", image("keyless_intoto")).await;
    assert_eq!(answer["allowed"], true, "{answer}");
    denied(
        &ask("keyless-other", image("keyless")).await,
        &["AttestationUnverified", "someone-else@stella-ops.example"],
    );
    denied(
        &ask("keyless", image("keyless_other_entry")).await,
        &[
            "AttestationUnverified",
            "the Rekor entry is for another payload",
        ],
    );
    // A keyed-only requirement does not accept the keyless attestation.
    denied(
        &ask("enforce", image("keyless")).await,
        &["AttestationUnverified"],
    );
    // Results are cached like signature verdicts (what the runtime audit reads).
    let digest = image("keyed").rsplit_once('@').unwrap().1.to_string();
    let outcomes = running
        .webhook
        .verified_attestations("enforce", &image("keyed"), &digest)
        .expect("cached");
    assert!(outcomes[0].is_ok(), "{outcomes:?}");
}

#[test]
fn the_platforms_signed_scan_verdict_meets_a_verdict_requirement() {
    use stellaops_store::attestation::{
        FindingCounts, SbomRef, VerdictPredicate, VerdictSigner, generate_key_pair,
    };
    let (private, public) = generate_key_pair();
    let signer = VerdictSigner::from_pem(&private).unwrap();
    let digest = format!("sha256:{}", "ef".repeat(32));
    let envelope = signer.sign(
        &digest,
        &VerdictPredicate {
            image: "registry.example/app:1".into(),
            verdict: "Pass".into(),
            findings: FindingCounts::default(),
            sbom: SbomRef {
                uri: "s3://bucket/sbom".into(),
                sha256: format!("sha256:{}", "00".repeat(32)),
            },
            advisory_snapshot: 7,
            policy_digest: format!("sha256:{}", "11".repeat(32)),
            scanned_at: chrono::Utc::now(),
        },
    );
    // As `scan --attach` stores it: a DSSE referrer announcing the verdict type.
    let found = vec![stellaops_admission_webhook::evidence::FoundAttestation {
        media_type: "application/vnd.dsse.envelope.v1+json".into(),
        blob: envelope,
        predicate_type: Some(stellaops_store::attestation::PREDICATE_TYPE.into()),
        found_at: "referrers API".into(),
        ..Default::default()
    }];
    let policy = compile(
        &named_policy(
            "p",
            keyed(json!([{"predicateType": "verdict", "signedBy": "keys", "conditions": [
                {"expression": "predicate.verdict == 'Pass' && predicate.findings.critical == 0"}]}])),
        ),
        &[public],
    )
    .unwrap();
    let check = &policy.attestations[0];
    assert!(attestation::judge(check, &found, &digest, chrono::Utc::now()).is_ok());
    let failing = compile(
        &named_policy(
            "p",
            keyed(json!([{"predicateType": "verdict", "conditions": [
                {"expression": "predicate.verdict == 'Fail'"}]}])),
        ),
        &[generate_key_pair().1],
    )
    .unwrap();
    // Another key: unverified, whatever the predicate says.
    let failure = attestation::judge(
        &failing.attestations[0],
        &found,
        &digest,
        chrono::Utc::now(),
    )
    .unwrap_err();
    assert_eq!(failure.reason, "AttestationUnverified");
}

/// A scenario judged by us and by sigstore-python: (name, case, root, identity, issuer, what
/// our refusal says or `None` for accepted).
type Scenario<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, Option<&'a str>);

/// The Sigstore bundles of `attestation_material.py` hold DSSE attestations (what `cosign
/// attest --new-bundle-format` and `sigstore attest` push as OCI referrers): judged by us
/// and by sigstore-python with the same trusted root and identity, then through the webhook.
#[tokio::test]
async fn attestations_in_sigstore_bundles_verify_like_sigstore_python_and_are_judged_by_the_webhook()
 {
    let Some(registry) = stellaops_testing::service("STELLAOPS_TEST_REGISTRY") else {
        return;
    };
    let repository = format!("zastava/attest-bundle-{}", std::process::id());
    let Some(material) = material(&registry, &repository) else {
        return;
    };
    let bundles = &material["bundles"];
    let slsa = "https://slsa.dev/provenance/v1";
    let bundle_type = stellaops_admission_webhook::cosign::SIGSTORE_BUNDLE_ARTIFACT_TYPE;
    let keys = [material["key_pem"].as_str().unwrap().to_string()];
    let subject = bundles["subject"].as_str().unwrap();
    let issuer = bundles["issuer"].as_str().unwrap();
    let policy = |name: &str, identity: &str, issuer: &str, root: &str, requirement: Value| {
        compile_with_trusted_roots(
            &named_policy(
                name,
                json!({"mode": "enforce",
                       "requireSignature": {
                           "publicKeys": {"name": "keys", "namespace": "ns"},
                           "keyless": [{"subject": identity, "issuer": issuer,
                                        "trustedRoot": {"name": "root"}}],
                           "imageSignature": false},
                       "requireAttestations": [requirement]}),
            ),
            &keys,
            &[bundles[root].as_str().unwrap().to_string()],
        )
        .expect("compiles")
    };
    let keyless = json!({"predicateType": "slsaprovenance1", "signedBy": "keyless"});

    // Each scenario judged by us, next to sigstore-python's verdict.
    let case = |name: &str| bundles["cases"][name].clone();
    let scenarios: Vec<Scenario> = vec![
        ("bundle", "bundle", "trusted_root", subject, issuer, None),
        (
            "bundle_intoto",
            "bundle_intoto",
            "trusted_root",
            subject,
            issuer,
            None,
        ),
        (
            "bundle_tampered",
            "bundle_tampered",
            "trusted_root",
            subject,
            issuer,
            Some("the bundle's DSSE signature does not verify"),
        ),
        (
            "bundle_other_subject",
            "bundle_other_subject",
            "trusted_root",
            subject,
            issuer,
            Some("its subject names sha256:2222"),
        ),
        (
            "bundle_no_tlog",
            "bundle_no_tlog",
            "trusted_root",
            subject,
            issuer,
            Some("the bundle has no transparency log entry"),
        ),
        (
            "wrong_identity",
            "bundle",
            "trusted_root",
            "someone-else@stella-ops.example",
            issuer,
            Some("the certificate's identity ci@stella-ops.example is not"),
        ),
        (
            "wrong_issuer",
            "bundle",
            "trusted_root",
            subject,
            "https://accounts.example.com",
            Some("the certificate's OIDC issuer"),
        ),
        (
            "untrusted_root",
            "bundle",
            "other_root",
            subject,
            issuer,
            Some("does not chain to the trusted root"),
        ),
    ];
    let mut verdicts = Vec::new();
    for (name, case_name, root, identity, issuer, expected) in &scenarios {
        let compiled = policy("p", identity, issuer, root, keyless.clone());
        let held = case(case_name);
        let digest = held["digest"].as_str().unwrap();
        let found = [stellaops_admission_webhook::evidence::FoundAttestation {
            media_type: bundle_type.into(),
            blob: held["bundle"].as_str().unwrap().as_bytes().to_vec(),
            predicate_type: Some(slsa.into()),
            found_at: "referrers API".into(),
            ..Default::default()
        }];
        let result = attestation::judge(
            &compiled.attestations[0],
            &found,
            digest,
            chrono::Utc::now(),
        );
        match (expected, &result) {
            (None, Ok(signer)) => {
                assert_eq!(signer, &format!("keyless:{subject} ({issuer})"), "{name}")
            }
            (Some(why), Err(failure)) => {
                assert_eq!(failure.reason, "AttestationUnverified", "{name}: {failure}");
                assert!(
                    failure.message.contains(why),
                    "{name}: expected {why:?} in {failure}"
                );
                assert!(
                    failure.message.contains("referrers API"),
                    "{name}: {failure}"
                );
            }
            _ => panic!("{name}: expected {expected:?}, got {result:?}"),
        }
        verdicts.push((*name, result.is_ok()));
    }
    let scratch = Scratch::new("attestation-bundles");
    if let Some(theirs) = sigstore_python_verdicts(bundles, &scratch) {
        assert_eq!(
            theirs.as_object().unwrap().len(),
            verdicts.len(),
            "{theirs}"
        );
        for (name, ours) in &verdicts {
            let their = theirs[*name]
                .as_str()
                .unwrap_or_else(|| panic!("{name} missing: {theirs}"));
            if *name == "bundle_intoto" {
                // The one documented difference: sigstore-python reads only dsse (and Rekor
                // v2 hashedrekord) entries for DSSE bundles; an intoto 0.0.2 entry (cosign's
                // older attestation uploads) is refused by it and checked by us.
                assert!(
                    their.contains("only supported for dsse/hashedrekord"),
                    "{name}: {their}"
                );
                continue;
            }
            assert_eq!(
                *ours,
                their == "ok",
                "{name}: ours {ours}, sigstore-python {their}"
            );
        }
    }

    // Through the webhook: each bundle an OCI referrer of its image, as cosign pushes it.
    for name in [
        "bundle",
        "bundle_intoto",
        "bundle_tampered",
        "bundle_other_subject",
        "bundle_no_tlog",
    ] {
        let held = case(name);
        oci::push_referrer(
            &registry,
            &repository,
            held["digest"].as_str().unwrap(),
            bundle_type,
            &[(
                held["bundle"].as_str().unwrap().as_bytes(),
                bundle_type,
                json!({"dev.sigstore.bundle.content": "dsse-envelope",
                       "dev.sigstore.bundle.predicateType": slsa}),
            )],
            true,
        )
        .await;
    }
    let evidence = Arc::new(RegistryEvidence {
        registry: RegistryClient::new(Credentials::default(), vec![registry.clone()]).unwrap(),
        database: None,
        verdict_keys: Default::default(),
    });
    let running = start(evidence).await;
    let with_condition = |expression: &str| {
        json!({"predicateType": "slsaprovenance1", "signedBy": "keyless",
               "conditions": [{"expression": expression, "message": "built by example's workflow"}]})
    };
    running.webhook.set_policies([
        policy("keyless", subject, issuer, "trusted_root", keyless.clone()),
        policy(
            "keyless-other",
            "someone-else@stella-ops.example",
            issuer,
            "trusted_root",
            keyless.clone(),
        ),
        policy(
            "cel-true",
            subject,
            issuer,
            "trusted_root",
            with_condition(
                "predicate.runDetails.builder.id.startsWith('https://github.com/example/app/')",
            ),
        ),
        policy(
            "cel-false",
            subject,
            issuer,
            "trusted_root",
            with_condition("predicate.runDetails.builder.id.startsWith('https://evil.example/')"),
        ),
        policy(
            "keys-only",
            subject,
            issuer,
            "trusted_root",
            json!({"predicateType": "slsaprovenance1", "signedBy": "keys"}),
        ),
    ]);
    let https = client(&running, &running.cert_pem);
    let ask = |policy: &str, case: &str| {
        let image = material["images"][case].as_str().unwrap().to_string();
        ask_for_pod(
            https.clone(),
            running.addr.port(),
            policy.to_string(),
            image,
        )
    };
    let denied = assert_denied;
    for case in ["bundle", "bundle_intoto"] {
        let answer = ask("keyless", case).await;
        assert_eq!(answer["allowed"], true, "{case}: {answer}");
    }
    let answer = ask("cel-true", "bundle").await;
    assert_eq!(answer["allowed"], true, "{answer}");
    denied(
        &ask("keyless-other", "bundle").await,
        &[
            "AttestationUnverified",
            "Sigstore bundle not valid",
            "someone-else@stella-ops.example",
        ],
    );
    denied(
        &ask("keyless", "bundle_tampered").await,
        &[
            "AttestationUnverified",
            "the bundle's DSSE signature does not verify",
        ],
    );
    denied(
        &ask("keyless", "bundle_other_subject").await,
        &["AttestationUnverified", "not this image's digest"],
    );
    denied(
        &ask("keyless", "bundle_no_tlog").await,
        &["AttestationUnverified", "no transparency log entry"],
    );
    denied(
        &ask("cel-false", "bundle").await,
        &[
            "AttestationConditionFailed",
            "built by example's workflow",
            "is false",
        ],
    );
    // A requirement trusting only the policy's keys does not take the keyless bundle.
    denied(
        &ask("keys-only", "bundle").await,
        &["AttestationUnverified", "no keyless authority"],
    );
}

/// `answer` is a denial whose message names every part of `expected`.
fn assert_denied(answer: &Value, expected: &[&str]) {
    assert_eq!(answer["allowed"], false, "{answer}");
    let message = answer["status"]["message"].as_str().unwrap();
    for part in expected {
        assert!(message.contains(part), "expected {part:?} in {message}");
    }
}
