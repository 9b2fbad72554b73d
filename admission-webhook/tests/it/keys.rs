//! Keyed signatures by every kind of key the policies take (RSA, ECDSA P-256/P-384,
//! Ed25519), made with the OpenSSL command line, not with our code: each verdict of ours is
//! checked against OpenSSL's own verification of the same bytes, through cosign's `.sig`
//! layout, bare DSSE attestations and keyed Sigstore bundles, and end to end through the
//! webhook with signatures stored in the real registry.

use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use stellaops_admission_webhook::attestation::{self, AttestationCheck, pae};
use stellaops_admission_webhook::bundle;
use stellaops_admission_webhook::cosign;
use stellaops_admission_webhook::evidence::FoundAttestation;
use stellaops_admission_webhook::policy::{compile, parse_public_keys};
use stellaops_testing::oci;

use crate::material::Scratch;
use crate::policy::zastava_policy;
use crate::registry::push_image;
use crate::server::RegistryWebhook;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Run `openssl` with `args`; its stdout, or a panic with its stderr.
pub(crate) fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs (scripts/services.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// How a key of one kind is made and signs.
#[derive(Clone, Copy)]
pub(crate) struct Kind {
    /// As our key describes itself.
    pub(crate) name: &'static str,
    /// `openssl genpkey` arguments.
    genpkey: &'static [&'static str],
    /// The digest OpenSSL signs with (`None`: the message itself, Ed25519).
    hash: Option<&'static str>,
    /// `openssl dgst -sigopt` options (RSA-PSS padding).
    pub(crate) sigopt: &'static [&'static str],
}

pub(crate) const RSA_2048: Kind = Kind {
    name: "RSA-2048",
    genpkey: &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    hash: Some("sha256"),
    sigopt: &[],
};
pub(crate) const RSA_3072: Kind = Kind {
    name: "RSA-3072",
    genpkey: &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"],
    hash: Some("sha256"),
    sigopt: &[],
};
pub(crate) const RSA_4096: Kind = Kind {
    name: "RSA-4096",
    genpkey: &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096"],
    hash: Some("sha256"),
    sigopt: &[],
};
pub(crate) const P256: Kind = Kind {
    name: "ECDSA P-256",
    genpkey: &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    hash: Some("sha256"),
    sigopt: &[],
};
pub(crate) const P384: Kind = Kind {
    name: "ECDSA P-384",
    genpkey: &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
    hash: Some("sha384"),
    sigopt: &[],
};
/// A P-384 key signing with SHA-256, as cosign 2 does whatever the curve.
const P384_SHA256: Kind = Kind {
    hash: Some("sha256"),
    ..P384
};
pub(crate) const P521: Kind = Kind {
    name: "ECDSA P-521",
    genpkey: &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"],
    hash: Some("sha512"),
    sigopt: &[],
};
/// A P-521 key signing with SHA-256 (cosign 2; a hash shorter than the curve's field).
const P521_SHA256: Kind = Kind {
    hash: Some("sha256"),
    ..P521
};
/// RSA keys as cosign's KMS signers use them: PSS with SHA-256 (GCP `RSA_SIGN_PSS_3072_SHA256`,
/// AWS `RSASSA_PSS_SHA_256`), PSS with SHA-512, PKCS #1 v1.5 with SHA-512.
const RSA_3072_PSS: Kind = Kind {
    sigopt: &["rsa_padding_mode:pss", "rsa_pss_saltlen:digest"],
    ..RSA_3072
};
const RSA_4096_PSS_SHA512: Kind = Kind {
    hash: Some("sha512"),
    sigopt: &["rsa_padding_mode:pss", "rsa_pss_saltlen:digest"],
    ..RSA_4096
};
const RSA_2048_SHA512: Kind = Kind {
    hash: Some("sha512"),
    ..RSA_2048
};
pub(crate) const ED25519: Kind = Kind {
    name: "Ed25519",
    genpkey: &["-algorithm", "ED25519"],
    hash: None,
    sigopt: &[],
};

/// A private key made by OpenSSL, with its public key in PEM.
pub(crate) struct Key {
    pub(crate) kind: Kind,
    pub(crate) private: PathBuf,
    pub(crate) public: PathBuf,
    scratch: PathBuf,
}

impl Key {
    pub(crate) fn new(kind: Kind, dir: &Scratch, name: &str) -> Key {
        let private = dir.path(&format!("{name}.key"));
        let public = dir.path(&format!("{name}.pub"));
        let mut args = vec!["genpkey", "-out", private.to_str().unwrap()];
        args.extend_from_slice(kind.genpkey);
        openssl(&args);
        openssl(&[
            "pkey",
            "-in",
            private.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ]);
        Key {
            kind,
            private,
            public,
            scratch: dir.path(name),
        }
    }

    pub(crate) fn public_pem(&self) -> String {
        std::fs::read_to_string(&self.public).unwrap()
    }

    /// The fingerprint people compare: SHA-256 of OpenSSL's DER SubjectPublicKeyInfo.
    fn fingerprint(&self) -> String {
        let der = openssl(&[
            "pkey",
            "-pubin",
            "-in",
            self.public.to_str().unwrap(),
            "-outform",
            "DER",
        ]);
        hex::encode(Sha256::digest(der))[..16].to_string()
    }

    fn write_message(&self, message: &[u8]) -> PathBuf {
        let path = self.scratch.with_extension("msg");
        std::fs::write(&path, message).unwrap();
        path
    }

    /// OpenSSL's signature of `message` (DER for ECDSA).
    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        let input = self.write_message(message);
        let key = self.private.to_str().unwrap();
        match self.kind.hash {
            Some(hash) => {
                let digest = format!("-{hash}");
                let mut args = vec!["dgst", &digest, "-sign", key];
                for option in self.kind.sigopt {
                    args.extend(["-sigopt", option]);
                }
                args.push(input.to_str().unwrap());
                openssl(&args)
            }
            None => openssl(&[
                "pkeyutl",
                "-sign",
                "-inkey",
                key,
                "-rawin",
                "-in",
                input.to_str().unwrap(),
            ]),
        }
    }

    /// Whether OpenSSL verifies `signature` over `message` with this public key.
    pub(crate) fn openssl_verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let input = self.write_message(message);
        let sig = self.scratch.with_extension("sig");
        std::fs::write(&sig, signature).unwrap();
        let public = self.public.to_str().unwrap();
        let mut command = Command::new("openssl");
        match self.kind.hash {
            Some(hash) => {
                command.args(["dgst", &format!("-{hash}"), "-verify", public]);
                for option in self.kind.sigopt {
                    command.args(["-sigopt", option]);
                }
                command.args(["-signature", sig.to_str().unwrap(), input.to_str().unwrap()])
            }
            None => command.args([
                "pkeyutl",
                "-verify",
                "-pubin",
                "-inkey",
                public,
                "-rawin",
                "-in",
                input.to_str().unwrap(),
                "-sigfile",
                sig.to_str().unwrap(),
            ]),
        };
        command.output().unwrap().status.success()
    }
}

fn statement(digest_hex: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "registry.example/app", "digest": {"sha256": digest_hex}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"buildDefinition": {"buildType": "https://example/build"}}}))
    .unwrap()
}

/// A keyed Sigstore bundle (v0.3, a `publicKey` hint, no log entries) holding `content`.
fn keyed_bundle(content: (&str, Value)) -> Vec<u8> {
    let mut bundle = json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": "openssl"}, "tlogEntries": []},
    });
    bundle[content.0] = content.1;
    serde_json::to_vec(&bundle).unwrap()
}

/// A case put to both verifiers: its name, the message, the signature, the digest the
/// payload must name, and whether it should verify.
type SignatureCase<'a> = (&'a str, &'a [u8], &'a [u8], &'a str, bool);

#[test]
fn openssl_signatures_by_every_supported_kind_of_key_verify_as_openssl_verifies_them() {
    let dir = Scratch::new("keys-kinds");
    let digest_hex = hex::encode(Sha256::digest(b"the image manifest"));
    let digest = format!("sha256:{digest_hex}");
    let other_digest = format!(
        "sha256:{}",
        hex::encode(Sha256::digest(b"another manifest"))
    );
    let now = chrono::Utc::now();
    let kinds = [
        RSA_2048,
        RSA_3072,
        RSA_4096,
        P256,
        P384,
        P384_SHA256,
        P521,
        P521_SHA256,
        RSA_3072_PSS,
        RSA_4096_PSS_SHA512,
        RSA_2048_SHA512,
        ED25519,
    ];
    for (i, kind) in kinds.into_iter().enumerate() {
        let key = Key::new(kind, &dir, &format!("a{i}"));
        let other = Key::new(kind, &dir, &format!("b{i}"));
        let trusted = parse_public_keys(&key.public_pem()).unwrap();
        assert_eq!(trusted.len(), 1);
        assert_eq!(trusted[0].key.describe(), kind.name);
        assert_eq!(trusted[0].fingerprint, key.fingerprint(), "{}", kind.name);

        // cosign's `.sig` layout: a signature over the simple-signing payload.
        let payload = cosign::payload("registry.example/app", &digest);
        let other_payload = cosign::payload("registry.example/app", &other_digest);
        let signature = key.sign(&payload);
        let mut flipped = signature.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let cases: [SignatureCase; 4] = [
            ("signed payload", &payload, &signature, &digest, true),
            (
                "other payload",
                &other_payload,
                &signature,
                &other_digest,
                false,
            ),
            ("other key", &payload, &other.sign(&payload), &digest, false),
            ("altered signature", &payload, &flipped, &digest, false),
        ];
        for (case, message, sig, named, expected) in cases {
            let ours = cosign::verify(message, &b64(sig), named, &trusted);
            let theirs = key.openssl_verifies(message, sig);
            assert_eq!(theirs, expected, "{} {case}: OpenSSL", kind.name);
            assert_eq!(ours.is_ok(), theirs, "{} {case}: ours {ours:?}", kind.name);
            if expected {
                assert_eq!(ours.unwrap(), trusted[0].fingerprint);
            } else {
                assert!(
                    ours.unwrap_err().contains("not signed by any trusted key"),
                    "{} {case}",
                    kind.name
                );
            }
        }

        // A bare DSSE attestation: the signature is over the envelope's PAE.
        let payload = statement(&digest_hex);
        let message = pae("application/vnd.in-toto+json", &payload);
        let signature = key.sign(&message);
        assert!(key.openssl_verifies(&message, &signature));
        let envelope = json!({"payloadType": "application/vnd.in-toto+json", "payload": b64(&payload),
                              "signatures": [{"keyid": "", "sig": b64(&signature)}]});
        let found = vec![FoundAttestation {
            media_type: "application/vnd.dsse.envelope.v1+json".into(),
            blob: serde_json::to_vec(&envelope).unwrap(),
            predicate_type: Some("https://slsa.dev/provenance/v1".into()),
            found_at: "tag".into(),
            ..Default::default()
        }];
        let check = |keys| AttestationCheck {
            name: "slsaprovenance1".into(),
            predicate_type: "https://slsa.dev/provenance/v1".into(),
            keys,
            keyless: Vec::new(),
            keys_log: None,
            conditions: Vec::new(),
        };
        assert_eq!(
            attestation::judge(&check(trusted.clone()), &found, &digest, now),
            Ok(trusted[0].fingerprint.clone()),
            "{}",
            kind.name
        );
        let others = parse_public_keys(&other.public_pem()).unwrap();
        assert_eq!(
            attestation::judge(&check(others.clone()), &found, &digest, now)
                .unwrap_err()
                .reason,
            "AttestationUnverified"
        );

        // Keyed Sigstore bundles, which follow Sigstore's key details: P-384 signs with
        // SHA-384 there and P-521 with SHA-512, so cosign 2's SHA-256 signatures by them
        // are not accepted.
        let natural = match kind.name {
            "ECDSA P-384" => kind.hash == Some("sha384"),
            "ECDSA P-521" => kind.hash == Some("sha512"),
            // Sigstore's RSA key details are PKCS #1 v1.5 over SHA-256.
            rsa if rsa.starts_with("RSA") => kind.hash == Some("sha256") && kind.sigopt.is_empty(),
            _ => true,
        };
        let dsse = keyed_bundle(("dsseEnvelope", envelope.clone()));
        let judged = bundle::verify_with_check(
            &stellaops_admission_webhook::policy::SignatureCheck {
                keys: trusted.clone(),
                keyless: Vec::new(),
                keys_log: None,
                keys_log_attestations: false,
            },
            &dsse,
            now,
            |_| Ok(()),
        );
        assert_eq!(
            judged.is_ok(),
            natural,
            "{} DSSE bundle: {judged:?}",
            kind.name
        );
        let artifact = b"an artifact signed as a message";
        let message_signature = key.sign(artifact);
        let message = keyed_bundle((
            "messageSignature",
            json!({"messageDigest": {"algorithm": "SHA2_256", "digest": b64(&Sha256::digest(artifact))},
                   "signature": b64(&message_signature)}),
        ));
        let judged = bundle::verify_with_check(
            &stellaops_admission_webhook::policy::SignatureCheck {
                keys: trusted.clone(),
                keyless: Vec::new(),
                keys_log: None,
                keys_log_attestations: false,
            },
            &message,
            now,
            |_| Ok(()),
        );
        match kind.name {
            // Pure Ed25519 signs the artifact, which a bundle does not carry.
            "Ed25519" => assert!(
                judged
                    .as_ref()
                    .unwrap_err()
                    .contains("covers the artifact itself"),
                "{judged:?}"
            ),
            // A message digest is SHA-256: signatures over the SHA-256 of the artifact
            // (RSA: PKCS #1 v1.5, as Sigstore's key details say).
            _ => assert_eq!(
                judged.is_ok(),
                kind.hash == Some("sha256") && kind.sigopt.is_empty(),
                "{} message bundle: {judged:?}",
                kind.name
            ),
        }
        let judged = bundle::verify_with_check(
            &stellaops_admission_webhook::policy::SignatureCheck {
                keys: others,
                keyless: Vec::new(),
                keys_log: None,
                keys_log_attestations: false,
            },
            &dsse,
            now,
            |_| Ok(()),
        );
        assert!(judged.is_err(), "{} other key", kind.name);
    }
}

#[test]
fn rsa_public_keys_in_pkcs1_form_and_several_keys_in_one_secret_value_are_read() {
    let dir = Scratch::new("keys-pkcs1");
    let rsa = Key::new(RSA_2048, &dir, "rsa");
    let ed = Key::new(ED25519, &dir, "ed");
    let pkcs1 = String::from_utf8(openssl(&[
        "rsa",
        "-in",
        rsa.private.to_str().unwrap(),
        "-RSAPublicKey_out",
    ]))
    .unwrap();
    assert!(pkcs1.contains("BEGIN RSA PUBLIC KEY"), "{pkcs1}");
    let value = format!(
        "# release signing keys\n{pkcs1}\nrotated in 2026:\n{}",
        ed.public_pem()
    );
    let keys = parse_public_keys(&value).unwrap();
    let described: Vec<String> = keys.iter().map(|k| k.key.describe()).collect();
    assert_eq!(described, ["RSA-2048", "Ed25519"]);
    // The PKCS #1 form has the same fingerprint as the SubjectPublicKeyInfo form.
    assert_eq!(keys[0].fingerprint, rsa.fingerprint());
    assert_eq!(keys[1].fingerprint, ed.fingerprint());
    let payload = cosign::payload(
        "registry.example/app",
        &format!("sha256:{}", "ab".repeat(32)),
    );
    assert_eq!(
        cosign::verify(
            &payload,
            &b64(&ed.sign(&payload)),
            &format!("sha256:{}", "ab".repeat(32)),
            &keys
        ),
        Ok(keys[1].fingerprint.clone())
    );
}

#[test]
fn keys_openssl_makes_that_policies_do_not_take_are_refused_at_compile_naming_why() {
    let dir = Scratch::new("keys-refused");
    let spec = json!({"mode": "enforce",
        "requireSignature": {"publicKeys": {"name": "keys", "namespace": "stellaops-system"}}});
    let refused = |pem: &str| -> String {
        match compile(&zastava_policy(spec.clone(), 1), &[pem.to_string()]) {
            Ok(_) => panic!("compiled with {pem}"),
            Err(e) => e.to_string(),
        }
    };
    let cases: [(&[&str], &str); 4] = [
        (
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
            "an RSA key of 1024 bits (from 2048 to 4096 are accepted)",
        ),
        (
            &[
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:secp256k1",
            ],
            "an EC key on secp256k1, which is not supported",
        ),
        (
            &["-algorithm", "ED448"],
            "an Ed448 key, which is not supported",
        ),
        (
            &["-algorithm", "RSA-PSS", "-pkeyopt", "rsa_keygen_bits:2048"],
            "an RSASSA-PSS-only key, which is not supported",
        ),
    ];
    for (i, (genpkey, expected)) in cases.into_iter().enumerate() {
        let key = Key::new(
            Kind {
                name: "",
                genpkey,
                hash: None,
                sigopt: &[],
            },
            &dir,
            &format!("k{i}"),
        );
        let message = refused(&key.public_pem());
        assert!(
            message.contains(&format!("PEM block 1 (PUBLIC KEY): {expected}")),
            "{message}"
        );
    }
    // A good key first, then a bad one: the block is named by its place.
    let good = Key::new(P256, &dir, "good");
    let weak = Key::new(
        Kind {
            name: "",
            genpkey: &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
            hash: None,
            sigopt: &[],
        },
        &dir,
        "weak",
    );
    let message = refused(&format!("{}{}", good.public_pem(), weak.public_pem()));
    assert!(message.contains("PEM block 2 (PUBLIC KEY)"), "{message}");
    // A private key or a certificate where public keys belong.
    let private = std::fs::read_to_string(&good.private).unwrap();
    let message = refused(&private);
    assert!(
        message.contains("PEM block 1 holds a private key (PRIVATE KEY): never put"),
        "{message}"
    );
    let certificate = String::from_utf8(openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        good.private.to_str().unwrap(),
        "-subj",
        "/CN=signer",
        "-days",
        "1",
    ]))
    .unwrap();
    assert!(refused(&certificate).contains("PEM block 1 is a CERTIFICATE"));
    // Damaged base64 inside a PUBLIC KEY block.
    let damaged = good.public_pem().replacen("MF", "M!", 1);
    assert!(refused(&damaged).contains("PEM block 1 (PUBLIC KEY)"));
    assert!(
        refused("no PEM here").contains("holds no PEM PUBLIC KEY"),
        "an empty key list is refused"
    );
}

#[tokio::test]
async fn rsa_and_ed25519_signatures_in_the_real_registry_admit_their_images_through_the_webhook() {
    let Some(registry) = stellaops_testing::service("STELLAOPS_TEST_REGISTRY") else {
        return;
    };
    let dir = Scratch::new("keys-registry");
    let rsa = Key::new(RSA_3072, &dir, "rsa");
    let ed = Key::new(ED25519, &dir, "ed");
    let stranger = Key::new(RSA_3072, &dir, "stranger");
    let mut images = Vec::new();
    for (name, key) in [("rsa", &rsa), ("ed25519", &ed), ("stranger", &stranger)] {
        let repository = format!("zastava/keys-{name}");
        let digest = push_image(&registry, &repository, "1.0", name);
        let payload = cosign::payload(&format!("{registry}/{repository}"), &digest);
        let signature = key.sign(&payload);
        assert!(key.openssl_verifies(&payload, &signature));
        oci::push_cosign_signature(&registry, &repository, &digest, &payload, &b64(&signature))
            .await;
        images.push(format!("{registry}/{repository}@{digest}"));
    }
    let policy = compile(
        &zastava_policy(
            json!({"mode": "enforce",
                   "requireSignature": {"publicKeys": {"name": "keys", "namespace": "stellaops-system"}}}),
            1,
        ),
        &[rsa.public_pem(), ed.public_pem()],
    )
    .unwrap();
    let webhook = RegistryWebhook::start(&registry, policy).await;
    assert_eq!(webhook.ask(&images[0]).await["allowed"], true, "RSA-signed");
    assert_eq!(
        webhook.ask(&images[1]).await["allowed"],
        true,
        "Ed25519-signed"
    );
    webhook
        .denies(&images[2], "none valid: not signed by any trusted key")
        .await;
}
