//! Sigstore bundles verified offline, cross-checked with an independent verifier. The
//! material (Fulcio-like CA, Rekor-like log keeping a real Merkle tree with checkpoints and
//! signed entry timestamps, CT log, an RFC 3161 timestamp authority, bundles v0.2 and v0.3
//! with message signatures and DSSE envelopes) is made by Python `cryptography` (and
//! asn1crypto for the timestamp tokens) in `bundle_material.py`; every scenario is
//! also put to sigstore-python (the Sigstore project's Python client, offline with the same
//! custom trusted root) by `bundle_crosscheck.py`, and both verdicts must agree.

use std::ffi::OsStr;
use std::sync::Arc;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use stellaops_admission_webhook::bundle::{self, root_from_inclusion_proof};
use stellaops_admission_webhook::evidence::RegistryEvidence;
use stellaops_admission_webhook::policy::{CompiledPolicy, compile_with_trusted_roots};
use stellaops_registry::{Credentials, RegistryClient};
use stellaops_testing::oci;

use crate::material::{DIGEST, Scratch, generate, sigstore_python_verdicts};
use crate::policy::zastava_policy;
use crate::registry::push_image;
use crate::server::{ask_for_pod, client, start};

/// Bundles for `digest` from the independent generator; `None` without the test Python.
fn material(digest: &str, scratch: &Scratch) -> Option<Value> {
    generate("bundle_material.py", &[OsStr::new(digest)], scratch)
}

fn authority(material: &Value) -> Value {
    json!({"subject": material["subject"], "issuer": material["issuer"],
           "trustedRoot": {"name": "sigstore-root"}})
}

fn policy(authority: Value, root: &str) -> CompiledPolicy {
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

fn ours(policy: &CompiledPolicy, bundle: &str) -> Result<String, String> {
    bundle::verify_image_signature(
        policy.signature.as_ref().unwrap(),
        bundle.as_bytes(),
        DIGEST,
        chrono::Utc::now(),
    )
}

/// One scenario bundle_crosscheck.py also runs: (name, case, root, identity, issuer, what
/// our refusal says or `None` for accepted).
type Scenario = (
    &'static str,
    &'static str,
    &'static str,
    String,
    String,
    Option<&'static str>,
);

/// The scenarios bundle_crosscheck.py also runs.
fn scenarios(material: &Value) -> Vec<Scenario> {
    let subject = material["subject"].as_str().unwrap().to_string();
    let issuer = material["issuer"].as_str().unwrap().to_string();
    let ok = |name, case| {
        (
            name,
            case,
            "trusted_root",
            subject.clone(),
            issuer.clone(),
            None,
        )
    };
    let bad = |name, case, why| {
        (
            name,
            case,
            "trusted_root",
            subject.clone(),
            issuer.clone(),
            Some(why),
        )
    };
    vec![
        ok("good", "good"),
        ok("good_github", "good_github"),
        ok("good_message", "good_message"),
        ok("good_v02_chain", "good_v02_chain"),
        bad("expired", "expired", "not at the signing time"),
        bad("no_tlog", "no_tlog", "no transparency log entry"),
        bad(
            "proof_only",
            "proof_only",
            "the integrated time is unsigned",
        ),
        bad(
            "bad_proof_hash",
            "bad_proof_hash",
            "the inclusion proof leads to root hash",
        ),
        bad(
            "wrong_tree_size",
            "wrong_tree_size",
            "fewer hashes than a tree of 33 leaves needs",
        ),
        bad(
            "rogue_checkpoint",
            "rogue_checkpoint",
            "the checkpoint's signature does not verify with the log's key",
        ),
        bad(
            "untrusted_log",
            "untrusted_log",
            "which the trusted root does not list",
        ),
        bad(
            "tampered_payload",
            "tampered_payload",
            "the bundle's DSSE signature does not verify",
        ),
        bad("other_digest", "other_digest", "not this image's digest"),
        bad(
            "untrusted_ca",
            "untrusted_ca",
            "does not chain to the trusted root",
        ),
        // RFC 3161 timestamps on an entry without a SET: the stamped time is the signing
        // time; a late, misdirected, foreign or altered timestamp is refused.
        ok("tsa_proof_only", "tsa_proof_only"),
        ok("tsa_message", "tsa_message"),
        bad("tsa_late", "tsa_late", "not at the signing time"),
        bad(
            "tsa_other_signature",
            "tsa_other_signature",
            "does not stamp this signature",
        ),
        bad(
            "tsa_untrusted",
            "tsa_untrusted",
            "not from a timestamp authority of the trusted root",
        ),
        bad(
            "tsa_tampered",
            "tsa_tampered",
            "signed message digest is not its TSTInfo's",
        ),
        // Rekor v2: an Ed25519 log named by its signed-note key ID, hashedrekord 0.0.2
        // entries for a message signature and a DSSE envelope, the time from a timestamp.
        ok("v2_message", "v2_message"),
        ok("v2_dsse", "v2_dsse"),
        bad(
            "v2_no_time",
            "v2_no_time",
            "the integrated time is unsigned",
        ),
        bad(
            "v2_rogue_checkpoint",
            "v2_rogue_checkpoint",
            "the checkpoint's signature does not verify with the log's key",
        ),
        bad(
            "v2_other_entry",
            "v2_other_entry",
            "the log entry records another signature",
        ),
        (
            "wrong_identity",
            "good",
            "trusted_root",
            "someone-else@stella-ops.example".into(),
            issuer.clone(),
            Some("the certificate's identity ci@stella-ops.example is not"),
        ),
        (
            "wrong_issuer",
            "good",
            "trusted_root",
            subject.clone(),
            "https://accounts.example.com".into(),
            Some("the certificate's OIDC issuer"),
        ),
        (
            "untrusted_root",
            "good",
            "other_root",
            subject,
            issuer,
            Some("does not chain to the trusted root"),
        ),
    ]
}

/// Scenarios under Fulcio extension requirements, which bundle_crosscheck.py runs under
/// sigstore-python's extension policies: (name, case, `certificateExtensions`, what our
/// refusal says or `None` for accepted). The material's `good_github` certificate states a
/// GitHub Actions build of stella-ops/app at refs/heads/main, on a GitHub-hosted runner,
/// triggered by a push (in Fulcio's v2 extensions and in its first GitHub ones).
fn extension_scenarios() -> Vec<(&'static str, &'static str, Value, Option<&'static str>)> {
    vec![
        (
            "extensions_match",
            "good_github",
            json!({"runnerEnvironment": "github-hosted",
                   "sourceRepositoryURI": "https://github.com/stella-ops/app",
                   "sourceRepositoryDigest": "0123456789abcdef0123456789abcdef01234567",
                   "sourceRepositoryRef": "refs/heads/main",
                   "buildTrigger": "push"}),
            None,
        ),
        (
            "extensions_other_ref",
            "good_github",
            json!({"sourceRepositoryRef": "refs/heads/dev"}),
            Some(
                r#"the certificate's sourceRepositoryRef "refs/heads/main" is not "refs/heads/dev""#,
            ),
        ),
        (
            "extensions_self_hosted",
            "good_github",
            json!({"sourceRepositoryRef": "refs/heads/main", "runnerEnvironment": "self-hosted"}),
            Some(r#"the certificate's runnerEnvironment "github-hosted" is not "self-hosted""#),
        ),
        (
            "extensions_absent",
            "good",
            json!({"sourceRepositoryRef": "refs/heads/main"}),
            Some("the certificate does not carry sourceRepositoryRef once"),
        ),
        // Fulcio's first GitHub extensions, as cosign's --certificate-github-workflow-*
        // flags check them.
        (
            "github_workflow_match",
            "good_github",
            json!({"githubWorkflowTrigger": "push",
                   "githubWorkflowSHA": "0123456789abcdef0123456789abcdef01234567",
                   "githubWorkflowRepository": "stella-ops/app",
                   "githubWorkflowRef": "refs/heads/main"}),
            None,
        ),
        (
            "github_workflow_other_repository",
            "good_github",
            json!({"githubWorkflowRepository": "stella-ops/other"}),
            Some(
                r#"the certificate's githubWorkflowRepository "stella-ops/app" is not "stella-ops/other""#,
            ),
        ),
    ]
}

#[test]
fn bundles_verify_like_sigstore_python_and_every_broken_part_is_refused_by_both() {
    let scratch = Scratch::new("bundle-unit");
    let Some(material) = material(DIGEST, &scratch) else {
        return;
    };
    let cases = &material["cases"];
    let mut verdicts = Vec::new();
    for (name, case, root, identity, issuer, expected) in scenarios(&material) {
        let policy = policy(
            json!({"subject": identity, "issuer": issuer, "trustedRoot": {"name": "r"}}),
            material[root].as_str().unwrap(),
        );
        let result = ours(&policy, cases[case].as_str().unwrap());
        match (expected, &result) {
            (None, Ok(signer)) => assert_eq!(
                signer,
                &format!(
                    "keyless:{} ({})",
                    material["subject"].as_str().unwrap(),
                    material["issuer"].as_str().unwrap()
                ),
                "{name}"
            ),
            (Some(why), Err(error)) => {
                assert!(error.contains(why), "{name}: expected {why:?} in {error:?}")
            }
            _ => panic!("{name}: expected {expected:?}, got {result:?}"),
        }
        verdicts.push((name, result));
    }
    for (name, case, extensions, expected) in extension_scenarios() {
        let policy = policy(
            json!({"subject": material["subject"], "issuer": material["issuer"],
                   "trustedRoot": {"name": "r"}, "certificateExtensions": extensions}),
            material["trusted_root"].as_str().unwrap(),
        );
        let result = ours(&policy, cases[case].as_str().unwrap());
        match (expected, &result) {
            (None, Ok(_)) => {}
            (Some(why), Err(error)) => {
                assert!(error.contains(why), "{name}: expected {why:?} in {error:?}")
            }
            _ => panic!("{name}: expected {expected:?}, got {result:?}"),
        }
        verdicts.push((name, result));
    }

    // The same scenarios through sigstore-python: the same verdict each time.
    let mut material = material.clone();
    material["extension_scenarios"] = extension_scenarios()
        .into_iter()
        .map(|(name, case, extensions, _)| json!([name, case, extensions]))
        .collect();
    if let Some(theirs) = sigstore_python_verdicts(&material, &scratch) {
        assert_eq!(
            theirs.as_object().unwrap().len(),
            verdicts.len(),
            "{theirs}"
        );
        for (name, result) in &verdicts {
            let their = theirs[*name]
                .as_str()
                .unwrap_or_else(|| panic!("{name} missing: {theirs}"));
            assert_eq!(
                result.is_ok(),
                their == "ok",
                "{name}: ours {result:?}, sigstore-python {their}"
            );
        }
    }

    // Our rule differs from sigstore-python's in one documented place: an entry with a
    // valid SET and no inclusion proof counts (sigstore-python wants a proof in a v0.2+
    // bundle). A proof without a checkpoint proves nothing.
    let root = material["trusted_root"].as_str().unwrap();
    let trusted = policy(authority(&material), root);
    let good: Value = serde_json::from_str(cases["good"].as_str().unwrap()).unwrap();
    let mut set_only = good.clone();
    set_only["verificationMaterial"]["tlogEntries"][0]
        .as_object_mut()
        .unwrap()
        .remove("inclusionProof");
    assert!(ours(&trusted, &set_only.to_string()).is_ok());
    let mut unsigned_head = good.clone();
    unsigned_head["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
        .as_object_mut()
        .unwrap()
        .remove("checkpoint");
    let error = ours(&trusted, &unsigned_head.to_string()).unwrap_err();
    assert!(
        error.contains("the inclusion proof has no checkpoint"),
        "{error}"
    );
    // Neither SET nor proof.
    let mut bare = set_only.clone();
    bare["verificationMaterial"]["tlogEntries"][0]
        .as_object_mut()
        .unwrap()
        .remove("inclusionPromise");
    let error = ours(&trusted, &bare.to_string()).unwrap_err();
    assert!(
        error.contains("neither a signed entry timestamp"),
        "{error}"
    );
    // The SET signs the integrated time: moving it breaks the SET.
    let mut moved = good.clone();
    moved["verificationMaterial"]["tlogEntries"][0]["integratedTime"] = json!("1700000000");
    let error = ours(&trusted, &moved.to_string()).unwrap_err();
    assert!(
        error.contains("signed entry timestamp (inclusionPromise) does not verify"),
        "{error}"
    );
    // A valid entry (SET and proof) of another signature next to this one: the body check.
    let message: Value = serde_json::from_str(cases["good_message"].as_str().unwrap()).unwrap();
    let other: Value = serde_json::from_str(cases["other_digest"].as_str().unwrap()).unwrap();
    let mut swapped = message.clone();
    swapped["verificationMaterial"]["tlogEntries"] =
        other["verificationMaterial"]["tlogEntries"].clone();
    let error = ours(&trusted, &swapped.to_string()).unwrap_err();
    assert!(
        error.contains("the log entry is for another artifact"),
        "{error}"
    );
    // A DSSE envelope next to a hashedrekord entry.
    let mut mixed = good.clone();
    mixed["verificationMaterial"]["tlogEntries"] =
        message["verificationMaterial"]["tlogEntries"].clone();
    let error = ours(&trusted, &mixed.to_string()).unwrap_err();
    assert!(
        error.contains("cannot record this bundle's DSSE envelope"),
        "{error}"
    );
    // Without requireTlog a bundle without entries is checked now: the certificate expired.
    let mut optional = authority(&material);
    optional["requireTlog"] = json!(false);
    let error = ours(&policy(optional, root), cases["no_tlog"].as_str().unwrap()).unwrap_err();
    assert!(error.contains("not at the signing time"), "{error}");
    // An attestation bundle (another predicate type) is not an image signature.
    let mut statement: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            good["dsseEnvelope"]["payload"].as_str().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    statement["predicateType"] = json!("https://slsa.dev/provenance/v1");
    assert!(
        bundle::signs_image(
            &bundle::Signed::Payload {
                payload_type: bundle::IN_TOTO_PAYLOAD_TYPE.into(),
                payload: statement.to_string().into_bytes(),
            },
            DIGEST
        )
        .unwrap_err()
        .contains("not an image signature")
    );
    // A keyed bundle (a public-key hint) is checked against the policy's keys.
    let keyed = material["keyed"]["bundle"].as_str().unwrap();
    let keyed_policy = |pem: &str| {
        compile_with_trusted_roots(
            &zastava_policy(
                json!({"mode": "enforce", "requireSignature": {
                    "publicKeys": {"name": "keys", "namespace": "stellaops-system"}}}),
                1,
            ),
            &[pem.to_string()],
            &[],
        )
        .expect("compiles")
    };
    let by_key = keyed_policy(material["keyed"]["public_key"].as_str().unwrap());
    let fingerprint = by_key.signature.as_ref().unwrap().keys[0]
        .fingerprint
        .clone();
    assert_eq!(ours(&by_key, keyed), Ok(fingerprint));
    let other_key = p256::ecdsa::SigningKey::from_slice(&[5; 32]).unwrap();
    let other_pem = p256::pkcs8::EncodePublicKey::to_public_key_pem(
        other_key.verifying_key(),
        p256::pkcs8::LineEnding::LF,
    )
    .unwrap();
    let error = ours(&keyed_policy(&other_pem), keyed).unwrap_err();
    assert!(error.contains("not signed by any trusted key"), "{error}");
    let error = ours(&trusted, keyed).unwrap_err();
    assert!(
        error.contains("a keyed bundle, and the policy trusts no key"),
        "{error}"
    );
    // A keyless bundle under a keyed-only policy.
    let error = ours(&by_key, cases["good"].as_str().unwrap()).unwrap_err();
    assert!(error.contains("no keyless authority"), "{error}");
    // Malformed bundles are refused with a message.
    for (text, why) in [
        ("{", "not a Sigstore bundle"),
        (
            r#"{"mediaType":"application/json","verificationMaterial":{}}"#,
            "is not one of",
        ),
        (
            r#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{}}"#,
            "has no certificate",
        ),
    ] {
        let error = ours(&trusted, text).unwrap_err();
        assert!(error.contains(why), "{text}: {error}");
    }
}

/// RFC 6962's recursive definition of the tree hash and audit path, written here
/// independently of the iterative verifier.
fn tree_hash(leaves: &[[u8; 32]]) -> [u8; 32] {
    if leaves.len() == 1 {
        return leaves[0];
    }
    let k = leaves.len().next_power_of_two() / 2;
    node(&tree_hash(&leaves[..k]), &tree_hash(&leaves[k..]))
}

fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

fn path(m: usize, leaves: &[[u8; 32]]) -> Vec<[u8; 32]> {
    if leaves.len() == 1 {
        return Vec::new();
    }
    let k = leaves.len().next_power_of_two() / 2;
    if m < k {
        let mut p = path(m, &leaves[..k]);
        p.push(tree_hash(&leaves[k..]));
        p
    } else {
        let mut p = path(m - k, &leaves[k..]);
        p.push(tree_hash(&leaves[..k]));
        p
    }
}

#[test]
fn inclusion_proofs_of_every_leaf_of_small_trees_lead_to_the_root_and_wrong_ones_do_not() {
    for size in 1..=33usize {
        let leaves: Vec<[u8; 32]> = (0..size)
            .map(|i| bundle::leaf_hash(format!("entry {i}").as_bytes()))
            .collect();
        let root = tree_hash(&leaves);
        for index in 0..size {
            let proof = path(index, &leaves);
            let (i, n) = (index as u64, size as u64);
            assert_eq!(
                root_from_inclusion_proof(i, n, leaves[index], &proof),
                Ok(root),
                "{index}/{size}"
            );
            // Another leaf, another index, a hash more or less: not this root.
            let other = leaves[(index + 1) % size];
            if size > 1 {
                assert_ne!(root_from_inclusion_proof(i, n, other, &proof), Ok(root));
                assert_ne!(
                    root_from_inclusion_proof((i + 1) % n, n, leaves[index], &proof),
                    Ok(root)
                );
            }
            // (The size alone is not bound by a path: a left-edge leaf has the same path in
            // trees of 5 and 6 leaves. The signed checkpoint binds it, see the material.)
            let mut longer = proof.clone();
            longer.push([0; 32]);
            assert!(root_from_inclusion_proof(i, n, leaves[index], &longer).is_err());
            if !proof.is_empty() {
                assert!(root_from_inclusion_proof(i, n, leaves[index], &proof[1..]).is_err());
            }
        }
        assert!(root_from_inclusion_proof(size as u64, size as u64, leaves[0], &[]).is_err());
    }
}

#[tokio::test]
async fn the_webhook_admits_an_image_signed_by_a_bundle_referrer_and_denies_a_tampered_one() {
    let Some(registry) = stellaops_testing::service("STELLAOPS_TEST_REGISTRY") else {
        return;
    };
    let tag = format!("{}", std::process::id());
    let signed = push_image(
        &registry,
        "zastava/bundle-signed",
        &tag,
        &format!("bundle {tag}"),
    );
    let tampered = push_image(
        &registry,
        "zastava/bundle-tampered",
        &tag,
        &format!("tampered {tag}"),
    );
    let attested = push_image(
        &registry,
        "zastava/bundle-attested",
        &tag,
        &format!("attested {tag}"),
    );
    let scratch = Scratch::new("bundle-e2e");
    let Some(material) = material(&signed, &scratch) else {
        return;
    };
    let layer = |case: &str| {
        material["cases"][case]
            .as_str()
            .unwrap()
            .as_bytes()
            .to_vec()
    };
    let bundle_type = stellaops_admission_webhook::cosign::SIGSTORE_BUNDLE_ARTIFACT_TYPE;
    let annotations = json!({"dev.sigstore.bundle.content": "dsse-envelope",
                             "dev.sigstore.bundle.predicateType": bundle::SIGN_PREDICATE_TYPE});
    let good = layer("good");
    oci::push_referrer(
        &registry,
        "zastava/bundle-signed",
        &signed,
        bundle_type,
        &[(&good, bundle_type, annotations.clone())],
        true,
    )
    .await;
    // An attestation bundle next to it is not taken for a signature (it is not fetched).
    oci::push_referrer(
        &registry,
        "zastava/bundle-signed",
        &signed,
        bundle_type,
        &[(
            b"not even JSON",
            bundle_type,
            json!({"dev.sigstore.bundle.predicateType": "https://slsa.dev/provenance/v1"}),
        )],
        true,
    )
    .await;
    // The other image carries this image's bundle: it signs another digest.
    oci::push_referrer(
        &registry,
        "zastava/bundle-tampered",
        &tampered,
        bundle_type,
        &[(&good, bundle_type, annotations)],
        true,
    )
    .await;
    // A valid signature bundle of the third image, but announced as an attestation (another
    // predicate type): not fetched as a signature, so that image counts as unsigned.
    let Some(attested_material) = self::material(&attested, &scratch) else {
        return;
    };
    let attested_bundle = attested_material["cases"]["good"]
        .as_str()
        .unwrap()
        .as_bytes()
        .to_vec();
    oci::push_referrer(
        &registry,
        "zastava/bundle-attested",
        &attested,
        bundle_type,
        &[(
            &attested_bundle,
            bundle_type,
            json!({"dev.sigstore.bundle.predicateType": "https://slsa.dev/provenance/v1"}),
        )],
        true,
    )
    .await;

    let evidence = Arc::new(RegistryEvidence {
        registry: RegistryClient::new(Credentials::default(), vec![registry.clone()]).unwrap(),
        database: None,
        verdict_keys: Default::default(),
    });
    let running = start(evidence).await;
    running.webhook.set_policies([policy(
        authority(&material),
        material["trusted_root"].as_str().unwrap(),
    )]);
    let https = client(&running, &running.cert_pem);
    let ask = |image: String| ask_for_pod(https.clone(), running.addr.port(), "prod".into(), image);
    let answer = ask(format!("{registry}/zastava/bundle-signed:{tag}")).await;
    assert_eq!(answer["allowed"], true, "{answer}");
    let answer = ask(format!("{registry}/zastava/bundle-tampered@{tampered}")).await;
    assert_eq!(answer["allowed"], false, "{answer}");
    let message = answer["status"]["message"].as_str().unwrap();
    assert!(message.contains("Sigstore bundle"), "{answer}");
    assert!(
        message.contains("names other digests, not this image's"),
        "{answer}"
    );
    // The attested image's bundle is trusted by the same authority (its own material's root
    // is another), so the policy is set for it: still unsigned, the referrer is an attestation.
    running.webhook.set_policies([policy(
        authority(&attested_material),
        attested_material["trusted_root"].as_str().unwrap(),
    )]);
    let answer = ask(format!("{registry}/zastava/bundle-attested@{attested}")).await;
    assert_eq!(answer["allowed"], false, "{answer}");
    assert!(
        answer["status"]["message"]
            .as_str()
            .unwrap()
            .contains("no cosign signature"),
        "{answer}"
    );
}

/// The committed pair the `rfc3161_timestamp` fuzz target starts from (written by
/// fuzz/rfc3161_seed.py with the same material as above): the response verifies against
/// its root, stamping the fixed bytes (not others), and a change to any byte of its
/// stamped time or message imprint is refused.
#[test]
fn the_fuzz_seed_timestamp_verifies_and_altered_copies_do_not() {
    use stellaops_admission_webhook::{keyless, timestamp};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let root = keyless::parse_trusted_root(
        &std::fs::read_to_string(dir.join("rfc3161_trusted_root.json")).unwrap(),
    )
    .unwrap();
    let response = std::fs::read(dir.join("corpus/rfc3161_timestamp/granted")).unwrap();
    let signature = b"stellaops fuzz signature";
    let at = timestamp::verify(&response, signature, &root.timestamp_authorities).unwrap();
    assert!(root.timestamp_authorities[0].valid_for.contains(at));
    assert!(timestamp::verify(&response, b"other bytes", &root.timestamp_authorities).is_err());
    assert!(timestamp::verify(&response, signature, &[]).is_err());
    // What it says is sealed: a change to any byte of the stamped time or of the message
    // imprint is refused (the signed attributes carry the TSTInfo's digest).
    let gen_time = response
        .windows(2)
        .position(|w| w == [0x18, 0x0f])
        .expect("a GeneralizedTime of 15 characters");
    let imprint = response
        .windows(32)
        .position(|w| w == Sha256::digest(signature).as_slice())
        .expect("the imprint");
    for i in (gen_time + 2..gen_time + 17).chain(imprint..imprint + 32) {
        let mut altered = response.clone();
        altered[i] ^= 0x01;
        assert!(
            timestamp::verify(&altered, signature, &root.timestamp_authorities).is_err(),
            "byte {i} altered"
        );
    }
}
