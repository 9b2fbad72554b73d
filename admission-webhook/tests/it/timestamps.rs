//! Keyless signatures checked against certificate chains and timestamp authorities the
//! OpenSSL command line made, not our code: CAs and Fulcio-like signing certificates
//! (`openssl ca`, with the validity each case needs; code signing, an email SAN and
//! Fulcio's OIDC issuer extension) for ECDSA, RSA and Ed25519 keys, signatures (`openssl
//! dgst` / `pkeyutl`), and RFC 3161 timestamps by OpenSSL's own timestamp authority
//! (`openssl ts -reply`), carried as cosign carries them in its `.sig` and `.att` layouts
//! (the `dev.sigstore.cosign/rfc3161timestamp` annotation). Where OpenSSL judges the same
//! thing (`openssl verify -attime`, `openssl ts -verify`), its verdict must be ours.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use stellaops_admission_webhook::attestation::{self, AttestationCheck, pae};
use stellaops_admission_webhook::cosign;
use stellaops_admission_webhook::evidence::FoundAttestation;
use stellaops_admission_webhook::keyless::KeylessSignature;
use stellaops_admission_webhook::policy::{CompiledPolicy, compile_with_trusted_roots};
use stellaops_testing::oci;

use crate::keys::{ED25519, Key, Kind, P256, P384, P521, RSA_2048, RSA_3072, RSA_4096, openssl};
use crate::material::{DIGEST, Scratch, refused};
use crate::policy::zastava_policy;
use crate::registry::push_image;
use crate::server::RegistryWebhook;

const SUBJECT: &str = "dev@example.com";
const ISSUER: &str = "https://issuer.example";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `openssl ca`'s configuration: no subject policy beyond a CN, and the extensions of a CA,
/// a Fulcio-like signing certificate and a timestamp authority's signing certificate.
const CA_CONFIG: &str = r#"
[ ca ]
default_ca = CA_default
[ CA_default ]
database = DIR/index.txt
new_certs_dir = DIR/issued
serial = DIR/serial
default_md = default
policy = policy_any
email_in_dn = no
unique_subject = no
copy_extensions = none
[ policy_any ]
commonName = supplied
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
[ ca_ext ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ leaf_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = codeSigning
subjectAltName = email:SUBJECT
1.3.6.1.4.1.57264.1.8 = ASN1:UTF8String:ISSUER
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ tsa_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = critical, timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"#;

/// A certificate OpenSSL issued, with its key.
struct Certificate {
    key: Key,
    pem: PathBuf,
}

impl Certificate {
    fn pem_text(&self) -> String {
        std::fs::read_to_string(&self.pem).unwrap()
    }

    fn der(&self) -> Vec<u8> {
        openssl(&["x509", "-in", path(&self.pem), "-outform", "DER"])
    }
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// An OpenSSL CA workspace: every certificate, query and response of one test.
struct Pki {
    dir: Scratch,
    config: PathBuf,
    files: AtomicUsize,
}

impl Pki {
    fn new(label: &str) -> Pki {
        let dir = Scratch::new(&format!("pki-{label}"));
        let base = dir.path("");
        let base = base.to_str().unwrap().trim_end_matches('/');
        std::fs::create_dir_all(dir.path("issued")).unwrap();
        std::fs::write(dir.path("index.txt"), "").unwrap();
        std::fs::write(dir.path("serial"), "1000\n").unwrap();
        std::fs::write(dir.path("tsaserial"), "01\n").unwrap();
        let config = dir.path("ca.cnf");
        std::fs::write(
            &config,
            CA_CONFIG
                .replace("DIR", base)
                .replace("SUBJECT", SUBJECT)
                .replace("ISSUER", ISSUER),
        )
        .unwrap();
        Pki {
            dir,
            config,
            files: AtomicUsize::new(0),
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        let n = self.files.fetch_add(1, Ordering::Relaxed);
        self.dir.path(&format!("{n}-{name}"))
    }

    /// A certificate for a new key of `kind`, issued by `issuer` (self-signed without),
    /// valid from `from` to `until`, with the extensions of section `extensions`.
    fn issue(
        &self,
        name: &str,
        kind: Kind,
        issuer: Option<&Certificate>,
        validity: (DateTime<Utc>, DateTime<Utc>),
        extensions: &str,
    ) -> Certificate {
        self.issue_signing_with(name, kind, issuer, validity, extensions, &[])
    }

    /// [`Pki::issue`], the issuer signing with more `openssl ca` options (RSA-PSS).
    fn issue_signing_with(
        &self,
        name: &str,
        kind: Kind,
        issuer: Option<&Certificate>,
        (from, until): (DateTime<Utc>, DateTime<Utc>),
        extensions: &str,
        signing: &[&str],
    ) -> Certificate {
        let key = Key::new(kind, &self.dir, name);
        let csr = self.dir.path(&format!("{name}.csr"));
        let pem = self.dir.path(&format!("{name}.pem"));
        let subject = format!("/CN={name}");
        openssl(&[
            "req",
            "-new",
            "-key",
            path(&key.private),
            "-subj",
            &subject,
            "-config",
            path(&self.config),
            "-out",
            path(&csr),
        ]);
        let (start, end) = (
            from.format("%Y%m%d%H%M%SZ").to_string(),
            until.format("%Y%m%d%H%M%SZ").to_string(),
        );
        let mut args = vec![
            "ca",
            "-batch",
            "-notext",
            "-config",
            path(&self.config),
            "-in",
            path(&csr),
            "-out",
            path(&pem),
            "-startdate",
            &start,
            "-enddate",
            &end,
            "-extensions",
            extensions,
        ];
        match issuer {
            Some(issuer) => args.extend([
                "-cert",
                path(&issuer.pem),
                "-keyfile",
                path(&issuer.key.private),
            ]),
            None => args.extend(["-selfsign", "-keyfile", path(&key.private)]),
        }
        args.extend(signing);
        openssl(&args);
        Certificate { key, pem }
    }

    /// A Fulcio-like P-384 root and intermediate: (intermediate, root).
    fn fulcio(&self) -> (Certificate, Certificate) {
        let root = self.issue("fulcio-root", P384, None, ca_window(), "ca_ext");
        let intermediate = self.issue(
            "fulcio-intermediate",
            P384,
            Some(&root),
            ca_window(),
            "ca_ext",
        );
        (intermediate, root)
    }

    /// A timestamp authority named `name`: its signing certificate for a key of `kind`
    /// under a root of `root_kind`: (signing certificate, root).
    fn timestamp_authority(
        &self,
        name: &str,
        kind: Kind,
        root_kind: Kind,
    ) -> (Certificate, Certificate) {
        let root = self.issue(
            &format!("{name}-root"),
            root_kind,
            None,
            ca_window(),
            "ca_ext",
        );
        let tsa = self.issue(name, kind, Some(&root), ca_window(), "tsa_ext");
        (tsa, root)
    }

    /// OpenSSL's timestamp authority's response stamping `data` (SHA-256 imprint, its
    /// signing certificate included, as cosign asks).
    fn stamp(&self, tsa: &Certificate, data: &[u8]) -> Vec<u8> {
        let input = self.file("stamped");
        std::fs::write(&input, data).unwrap();
        let query = self.file("query.tsq");
        openssl(&[
            "ts",
            "-query",
            "-data",
            path(&input),
            "-sha256",
            "-cert",
            "-no_nonce",
            "-out",
            path(&query),
        ]);
        let config = self.file("tsa.cnf");
        std::fs::write(
            &config,
            format!(
                "[ tsa ]\ndefault_tsa = t\n[ t ]\nserial = {}\nsigner_cert = {}\nsigner_key = {}\n\
                 signer_digest = sha256\ndefault_policy = 1.2.3.4.1\ndigests = sha256\n\
                 accuracy = secs:1\ness_cert_id_chain = no\ness_cert_id_alg = sha256\n",
                path(&self.dir.path("tsaserial")),
                path(&tsa.pem),
                path(&tsa.key.private),
            ),
        )
        .unwrap();
        let response = self.file("response.tsr");
        openssl(&[
            "ts",
            "-reply",
            "-config",
            path(&config),
            "-queryfile",
            path(&query),
            "-out",
            path(&response),
        ]);
        std::fs::read(&response).unwrap()
    }

    /// Whether `openssl ts -verify` finds `response` a timestamp of `data` by `tsa`,
    /// trusting `root`.
    fn openssl_stamp_verifies(
        &self,
        response: &[u8],
        data: &[u8],
        tsa: &Certificate,
        root: &Certificate,
    ) -> bool {
        let (input, reply) = (self.file("data"), self.file("reply.tsr"));
        std::fs::write(&input, data).unwrap();
        std::fs::write(&reply, response).unwrap();
        std::process::Command::new("openssl")
            .args([
                "ts",
                "-verify",
                "-data",
                path(&input),
                "-in",
                path(&reply),
                "-CAfile",
                path(&root.pem),
                "-untrusted",
                path(&tsa.pem),
            ])
            .output()
            .unwrap()
            .status
            .success()
    }

    /// Whether `openssl verify` finds `leaf` issued through `intermediate` by `root` at `at`.
    fn openssl_chain_verifies(
        &self,
        leaf: &Certificate,
        intermediate: &Certificate,
        root: &Certificate,
        at: DateTime<Utc>,
    ) -> bool {
        std::process::Command::new("openssl")
            .args([
                "verify",
                "-attime",
                &at.timestamp().to_string(),
                "-CAfile",
                path(&root.pem),
                "-untrusted",
                path(&intermediate.pem),
                path(&leaf.pem),
            ])
            .output()
            .unwrap()
            .status
            .success()
    }
}

fn window(from: Duration, until: Duration) -> (DateTime<Utc>, DateTime<Utc>) {
    let now = Utc::now();
    (now + from, now + until)
}

/// A CA's validity: from a day ago for ten days.
fn ca_window() -> (DateTime<Utc>, DateTime<Utc>) {
    window(Duration::days(-1), Duration::days(10))
}

/// A trusted root naming `fulcio` (nearest first) and the timestamp authorities' chains.
fn trusted_root(fulcio: &[&Certificate], tsas: &[&[&Certificate]]) -> String {
    let chain = |certificates: &[&Certificate]| {
        json!({"certChain": {"certificates": certificates.iter()
                   .map(|c| json!({"rawBytes": b64(&c.der())})).collect::<Vec<_>>()},
               "validFor": {"start": "2020-01-01T00:00:00Z"}})
    };
    json!({
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [], "ctlogs": [],
        "certificateAuthorities": [chain(fulcio)],
        "timestampAuthorities": tsas.iter().map(|c| chain(c)).collect::<Vec<_>>(),
    })
    .to_string()
}

fn authority(require_timestamp: bool) -> Value {
    json!({"subject": SUBJECT, "issuer": ISSUER, "trustedRoot": {"name": "root"},
           "requireTlog": false, "requireSCT": false, "requireTimestamp": require_timestamp})
}

fn keyless_policy(root: &str, require_timestamp: bool) -> Result<CompiledPolicy, String> {
    compile_with_trusted_roots(
        &zastava_policy(
            json!({"mode": "enforce", "requireSignature": {"keyless": [authority(require_timestamp)]}}),
            1,
        ),
        &[],
        &[root.to_string()],
    )
    .map_err(|e| e.to_string())
}

/// cosign's timestamp annotation around a response.
fn annotation(response: &[u8]) -> String {
    json!({"SignedRFC3161Timestamp": b64(response)}).to_string()
}

/// Our verdict on a signature in cosign's `.sig` layout.
fn verdict(
    policy: &CompiledPolicy,
    payload: &[u8],
    signature: &[u8],
    leaf: &Certificate,
    timestamp: Option<&str>,
    now: DateTime<Utc>,
) -> Result<String, String> {
    let certificate = leaf.pem_text();
    cosign::verify_with(
        policy.signature.as_ref().unwrap(),
        &KeylessSignature {
            payload,
            signature_b64: &b64(signature),
            certificate_pem: Some(&certificate),
            rekor_bundle: None,
            rfc3161_timestamp: timestamp,
        },
        DIGEST,
        now,
    )
}

fn accepted() -> String {
    format!("keyless:{SUBJECT} ({ISSUER})")
}

#[test]
fn signing_certificates_of_every_kind_of_key_and_ca_are_judged_as_openssl_judges_them() {
    let pki = Pki::new("kinds");
    let payload = cosign::payload("registry.example/app", DIGEST);
    let now = Utc::now();
    let leaf_window = window(Duration::minutes(-10), Duration::minutes(10));
    // Fulcio's own shape (P-384 CA, P-256 leaf), and the keys Fulcio issues for beside it,
    // under CAs of each kind a private Fulcio or a company PKI uses.
    const PSS: &[&str] = &[
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:digest",
    ];
    const PSS_SHA512: &[&str] = &[
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:digest",
        "-md",
        "sha512",
    ];
    for (ca_kind, leaf_kind, signing) in [
        (P384, P256, &[][..]),
        (RSA_4096, RSA_3072, &[]),
        (ED25519, ED25519, &[]),
        (P256, P384, &[]),
        (RSA_2048, P256, &[]),
        // OpenSSL signs with SHA-256 under a P-521 CA: a hash shorter than the field.
        (P521, P521, &[]),
        // CAs signing with RSASSA-PSS (its parameters in each signature algorithm).
        (RSA_3072, RSA_2048, PSS),
        (RSA_4096, P256, PSS_SHA512),
    ] {
        let label =
            format!("{}-{}-{}", ca_kind.name, leaf_kind.name, signing.len()).replace(' ', "");
        let root = pki.issue_signing_with(
            &format!("{label}-root"),
            ca_kind,
            None,
            ca_window(),
            "ca_ext",
            signing,
        );
        let intermediate = pki.issue_signing_with(
            &format!("{label}-intermediate"),
            ca_kind,
            Some(&root),
            ca_window(),
            "ca_ext",
            signing,
        );
        let leaf = pki.issue_signing_with(
            &format!("{label}-leaf"),
            leaf_kind,
            Some(&intermediate),
            leaf_window,
            "leaf_ext",
            signing,
        );
        let policy = keyless_policy(&trusted_root(&[&intermediate, &root], &[]), false).unwrap();
        let signature = leaf.key.sign(&payload);
        assert!(pki.openssl_chain_verifies(&leaf, &intermediate, &root, now));
        assert!(leaf.key.openssl_verifies(&payload, &signature));
        assert_eq!(
            verdict(&policy, &payload, &signature, &leaf, None, now),
            Ok(accepted()),
            "{label}"
        );

        // A leaf of another CA with the same names: OpenSSL and we refuse its chain.
        let other_root = pki.issue(
            &format!("{label}-other-root"),
            ca_kind,
            None,
            ca_window(),
            "ca_ext",
        );
        let stray = pki.issue(
            &format!("{label}-stray-leaf"),
            leaf_kind,
            Some(&other_root),
            leaf_window,
            "leaf_ext",
        );
        assert!(!pki.openssl_chain_verifies(&stray, &intermediate, &root, now));
        let stray_signature = stray.key.sign(&payload);
        refused(
            verdict(&policy, &payload, &stray_signature, &stray, None, now),
            "does not chain to the trusted root",
        );

        // The leaf's signature over another payload, and its own with one bit changed.
        let other_payload = cosign::payload("registry.example/other", DIGEST);
        let misplaced = leaf.key.sign(&other_payload);
        let mut altered = signature.clone();
        let middle = altered.len() / 2;
        altered[middle] ^= 0x01;
        for bad in [&misplaced, &altered] {
            assert!(!leaf.key.openssl_verifies(&payload, bad));
            refused(
                verdict(&policy, &payload, bad, &leaf, None, now),
                "does not verify with the signing certificate's key",
            );
        }

        // Checked at a time the leaf was not valid: OpenSSL and we refuse.
        let later = now + Duration::hours(1);
        assert!(!pki.openssl_chain_verifies(&leaf, &intermediate, &root, later));
        refused(
            verdict(&policy, &payload, &signature, &leaf, None, later),
            "not at the signing time",
        );
    }
}

#[test]
fn rfc3161_timestamps_in_cosigns_signature_layout_are_verified_as_openssl_verifies_them() {
    let pki = Pki::new("stamps");
    let payload = cosign::payload("registry.example/app", DIGEST);
    let (intermediate, root) = pki.fulcio();
    // Ten minutes of life around now, as Fulcio's certificates have.
    let leaf = pki.issue(
        "leaf",
        P256,
        Some(&intermediate),
        window(Duration::minutes(-5), Duration::minutes(5)),
        "leaf_ext",
    );
    let expired = pki.issue(
        "expired-leaf",
        P256,
        Some(&intermediate),
        window(Duration::hours(-3), Duration::hours(-2)),
        "leaf_ext",
    );
    // Timestamp authorities: an ECDSA one under an Ed25519 root, an RSA one under an RSA
    // root (OpenSSL names its signature `rsaEncryption`, the digest apart), and one the
    // trusted root does not list.
    let (ec_tsa, ec_root) = pki.timestamp_authority("tsa-ec", P256, ED25519);
    let (rsa_tsa, rsa_root) = pki.timestamp_authority("tsa-rsa", RSA_2048, RSA_3072);
    let (stray_tsa, stray_root) = pki.timestamp_authority("tsa-stray", P256, P256);
    let root_json = trusted_root(
        &[&intermediate, &root],
        &[&[&ec_tsa, &ec_root], &[&rsa_tsa, &rsa_root]],
    );
    let policy = keyless_policy(&root_json, false).unwrap();
    let requiring = keyless_policy(&root_json, true).unwrap();

    let signature = leaf.key.sign(&payload);
    // A day later the leaf has long expired: only a signed time can admit the signature.
    let later = Utc::now() + Duration::days(1);
    // The leaf's signature with `stamp`, judged a day later.
    let judged = |stamp: Option<&str>| verdict(&policy, &payload, &signature, &leaf, stamp, later);
    refused(judged(None), "not at the signing time");
    for (tsa, tsa_root) in [(&ec_tsa, &ec_root), (&rsa_tsa, &rsa_root)] {
        let response = pki.stamp(tsa, &signature);
        assert!(pki.openssl_stamp_verifies(&response, &signature, tsa, tsa_root));
        let stamped = annotation(&response);
        assert_eq!(judged(Some(&stamped)), Ok(accepted()));
        assert_eq!(
            verdict(
                &requiring,
                &payload,
                &signature,
                &leaf,
                Some(&stamped),
                later
            ),
            Ok(accepted())
        );

        // A timestamp of other bytes (the payload, not the signature).
        let of_payload = pki.stamp(tsa, &payload);
        assert!(!pki.openssl_stamp_verifies(&of_payload, &signature, tsa, tsa_root));
        refused(
            judged(Some(&annotation(&of_payload))),
            "does not stamp this signature",
        );

        // One bit of the authority's signature changed (its last byte).
        let mut altered = response.clone();
        let last = altered.len() - 1;
        altered[last] ^= 0x01;
        assert!(!pki.openssl_stamp_verifies(&altered, &signature, tsa, tsa_root));
        refused(judged(Some(&annotation(&altered))), "RFC 3161 timestamp");
    }

    // An authority the trusted root does not list: OpenSSL, trusting the listed roots,
    // refuses it too.
    let stray_stamp = pki.stamp(&stray_tsa, &signature);
    assert!(pki.openssl_stamp_verifies(&stray_stamp, &signature, &stray_tsa, &stray_root));
    assert!(!pki.openssl_stamp_verifies(&stray_stamp, &signature, &stray_tsa, &ec_root));
    refused(
        judged(Some(&annotation(&stray_stamp))),
        "not from a timestamp authority of the trusted root",
    );

    // A signature stamped now by a certificate that expired two hours ago.
    let late = expired.key.sign(&payload);
    let late_stamp = annotation(&pki.stamp(&ec_tsa, &late));
    refused(
        verdict(
            &policy,
            &payload,
            &late,
            &expired,
            Some(&late_stamp),
            Utc::now(),
        ),
        "not at the signing time",
    );

    // requireTimestamp: none refused even while the certificate is valid; a broken
    // annotation is refused by name.
    refused(
        verdict(&requiring, &payload, &signature, &leaf, None, Utc::now()),
        "no RFC 3161 timestamp (the authority requires one",
    );
    refused(
        judged(Some("{\"SignedRFC3161Timestamp\": 5}")),
        "dev.sigstore.cosign/rfc3161timestamp annotation is not cosign's timestamp JSON",
    );
    let oversized = annotation(&vec![0u8; 64 << 10]);
    refused(
        judged(Some(&oversized)),
        "dev.sigstore.cosign/rfc3161timestamp annotation is larger than 64 KiB",
    );
    // A policy requiring timestamps from a root that lists no authority does not compile.
    let error = keyless_policy(&trusted_root(&[&intermediate, &root], &[]), true).unwrap_err();
    assert!(
        error.contains(
            "requireTimestamp is true but the trusted root lists no timestampAuthorities"
        ),
        "{error}"
    );
}

#[test]
fn rfc3161_timestamps_of_attestations_stamp_the_envelope_or_its_signature() {
    let pki = Pki::new("attestation-stamps");
    let (intermediate, root) = pki.fulcio();
    let leaf = pki.issue(
        "leaf",
        RSA_3072,
        Some(&intermediate),
        window(Duration::minutes(-5), Duration::minutes(5)),
        "leaf_ext",
    );
    let (tsa, tsa_root) = pki.timestamp_authority("tsa", P256, P384);
    let policy = keyless_policy(
        &trusted_root(&[&intermediate, &root], &[&[&tsa, &tsa_root]]),
        false,
    )
    .unwrap();
    let statement = serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "app", "digest": {"sha256": DIGEST.trim_start_matches("sha256:")}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"buildDefinition": {"buildType": "https://example/build"}},
    }))
    .unwrap();
    let payload_type = "application/vnd.in-toto+json";
    let dsse_signature = leaf.key.sign(&pae(payload_type, &statement));
    let envelope = serde_json::to_vec(&json!({
        "payloadType": payload_type, "payload": b64(&statement),
        "signatures": [{"keyid": "", "sig": b64(&dsse_signature)}],
    }))
    .unwrap();
    let check = AttestationCheck {
        name: "slsaprovenance1".into(),
        predicate_type: "https://slsa.dev/provenance/v1".into(),
        keys: Vec::new(),
        keyless: policy.signature.as_ref().unwrap().keyless.clone(),
        keys_log: None,
        conditions: Vec::new(),
    };
    let judge = |timestamp: Option<String>, now: DateTime<Utc>| {
        let found = [FoundAttestation {
            media_type: cosign::DSSE_MEDIA_TYPE.into(),
            blob: envelope.clone(),
            predicate_type: Some("https://slsa.dev/provenance/v1".into()),
            certificate: Some(leaf.pem_text()),
            rfc3161_timestamp: timestamp,
            found_at: "tag".into(),
            ..Default::default()
        }];
        attestation::judge(&check, &found, DIGEST, now).map_err(|f| f.to_string())
    };
    let later = Utc::now() + Duration::days(1);
    assert_eq!(judge(None, Utc::now()), Ok(accepted()));
    refused(judge(None, later), "not at the signing time");
    // cosign 2 stamped the whole envelope (what its verifier reads); cosign 3 writes its
    // bundle's timestamp, which stamps the DSSE signature.
    for stamped in [&envelope, &dsse_signature] {
        let response = pki.stamp(&tsa, stamped);
        assert!(pki.openssl_stamp_verifies(&response, stamped, &tsa, &tsa_root));
        assert_eq!(judge(Some(annotation(&response)), later), Ok(accepted()));
    }
    let of_statement = pki.stamp(&tsa, &statement);
    refused(
        judge(Some(annotation(&of_statement)), later),
        "does not stamp this signature",
    );
}

#[tokio::test]
async fn timestamped_keyless_signatures_in_the_real_registry_admit_their_images() {
    let Some(registry) = stellaops_testing::service("STELLAOPS_TEST_REGISTRY") else {
        return;
    };
    let pki = Pki::new("stamps-registry");
    let (intermediate, root) = pki.fulcio();
    let leaf = pki.issue(
        "leaf",
        P256,
        Some(&intermediate),
        window(Duration::minutes(-5), Duration::minutes(30)),
        "leaf_ext",
    );
    let (tsa, tsa_root) = pki.timestamp_authority("tsa", RSA_2048, RSA_3072);
    let root_json = trusted_root(&[&intermediate, &root], &[&[&tsa, &tsa_root]]);
    let mut images = Vec::new();
    for (name, stamped) in [("stamped", true), ("unstamped", false)] {
        let repository = format!("zastava/timestamp-{name}");
        let digest = push_image(&registry, &repository, "1.0", name);
        let payload = cosign::payload(&format!("{registry}/{repository}"), &digest);
        let signature = leaf.key.sign(&payload);
        let mut annotations = serde_json::Map::new();
        annotations.insert(cosign::SIGNATURE_ANNOTATION.into(), json!(b64(&signature)));
        annotations.insert(
            cosign::CERTIFICATE_ANNOTATION.into(),
            json!(leaf.pem_text()),
        );
        annotations.insert(
            cosign::CHAIN_ANNOTATION.into(),
            json!(format!("{}{}", intermediate.pem_text(), root.pem_text())),
        );
        if stamped {
            annotations.insert(
                cosign::RFC3161_TIMESTAMP_ANNOTATION.into(),
                json!(annotation(&pki.stamp(&tsa, &signature))),
            );
        }
        let annotations = Value::Object(annotations);
        oci::push_cosign_signature_annotated(
            &registry,
            &repository,
            &digest,
            &payload,
            annotations,
        )
        .await;
        images.push(format!("{registry}/{repository}@{digest}"));
    }
    let webhook =
        RegistryWebhook::start(&registry, keyless_policy(&root_json, true).unwrap()).await;
    assert_eq!(
        webhook.ask(&images[0]).await["allowed"],
        true,
        "timestamped"
    );
    webhook
        .denies(
            &images[1],
            "no RFC 3161 timestamp (the authority requires one",
        )
        .await;
}
