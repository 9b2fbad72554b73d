//! Keyless (Fulcio/Rekor) cosign signatures, verified offline against a Sigstore
//! `trusted_root.json`: the signing certificate must chain to one of the root's Fulcio CAs
//! at every signed time (the Rekor log's integrated time, an RFC 3161 timestamp's time),
//! the log's signed entry timestamp (SET) must verify with one of the root's log keys and
//! describe this very signature, and the certificate must carry the identity (SAN), OIDC
//! issuer and Fulcio extensions the policy names.
//!
//! Built on x509-parser and the RustCrypto crates already in the build (ECDSA, RSA,
//! Ed25519) rather than the `sigstore` crate (see docs/zastava.md). The certificate's
//! embedded SCT is verified against the root's CT logs when the authority requires it.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::pkcs8::DecodePublicKey;
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::keys::{PublicKey, SignatureScheme};

/// Media types of a trusted root this verifier reads.
pub const TRUSTED_ROOT_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
    "application/vnd.dev.sigstore.trustedroot.v0.1+json",
];
/// `id-ecPublicKey`, the algorithm of an ECDSA SubjectPublicKeyInfo.
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";
/// Fulcio's OIDC issuer extension, DER UTF8String (current).
const OID_ISSUER_V2: &str = "1.3.6.1.4.1.57264.1.8";
/// Fulcio's OIDC issuer extension, raw string (legacy).
const OID_ISSUER_V1: &str = "1.3.6.1.4.1.57264.1.1";
/// Largest trusted root accepted (the public-good one is about 10 KiB).
const MAX_TRUSTED_ROOT_BYTES: usize = 1 << 20;
/// Largest Rekor bundle annotation accepted.
const MAX_BUNDLE_BYTES: usize = 256 << 10;

/// An ECDSA public key on one of the curves Sigstore uses.
#[derive(Clone, Debug)]
pub enum EcKey {
    /// NIST P-256 (cosign's signing keys, Rekor's log key).
    P256(p256::ecdsa::VerifyingKey),
    /// NIST P-384 (Fulcio's root and intermediate).
    P384(p384::ecdsa::VerifyingKey),
    /// NIST P-521 (KMS keys, e.g. AWS KMS `ECC_NIST_P521`).
    P521(P521Key),
}

/// A P-521 verifying key (the p521 crate's own has no `Debug`).
#[derive(Clone)]
pub struct P521Key(p521::ecdsa::VerifyingKey);

impl std::fmt::Debug for P521Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("P521Key")
    }
}

/// The DER of a P-521 SubjectPublicKeyInfo up to its uncompressed point: SEQUENCE {
/// SEQUENCE { id-ecPublicKey, secp521r1 }, BIT STRING (0 unused bits) }.
const P521_SPKI_PREFIX: [u8; 25] = [
    0x30, 0x81, 0x9b, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05,
    0x2b, 0x81, 0x04, 0x00, 0x23, 0x03, 0x81, 0x86, 0x00,
];
/// Bytes of a P-521 field element (and so of a prehash the ECDSA crate takes whole).
const P521_FIELD_BYTES: usize = 66;

/// A hash function of a signature algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Hash {
    /// Its output length in bytes.
    pub fn output_bytes(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    /// The digest of `message`.
    pub(crate) fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(message).to_vec(),
            Hash::Sha384 => Sha384::digest(message).to_vec(),
            Hash::Sha512 => Sha512::digest(message).to_vec(),
        }
    }
}

impl EcKey {
    /// The key of a DER SubjectPublicKeyInfo.
    pub fn from_spki(der: &[u8]) -> Result<EcKey, String> {
        if let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_der(der) {
            return Ok(EcKey::P256(key));
        }
        if let Ok(key) = p384::ecdsa::VerifyingKey::from_public_key_der(der) {
            return Ok(EcKey::P384(key));
        }
        der.strip_prefix(&P521_SPKI_PREFIX[..])
            .and_then(|point| p521::ecdsa::VerifyingKey::from_sec1_bytes(point).ok())
            .map(|key| EcKey::P521(P521Key(key)))
            .ok_or_else(|| "not an ECDSA P-256, P-384 or P-521 public key".to_string())
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Vec<u8> {
        use p256::pkcs8::EncodePublicKey as _;
        match self {
            EcKey::P256(key) => key.to_public_key_der().map(|d| d.as_bytes().to_vec()),
            EcKey::P384(key) => key.to_public_key_der().map(|d| d.as_bytes().to_vec()),
            EcKey::P521(key) => {
                let mut der = P521_SPKI_PREFIX.to_vec();
                der.extend_from_slice(key.0.to_encoded_point(false).as_bytes());
                Ok(der)
            }
        }
        .unwrap_or_default()
    }

    /// The hash a message signature by this key uses (the curve's own size, as cosign does).
    pub fn natural_hash(&self) -> Hash {
        match self {
            EcKey::P256(_) => Hash::Sha256,
            EcKey::P384(_) => Hash::Sha384,
            EcKey::P521(_) => Hash::Sha512,
        }
    }

    /// Whether `signature` (DER, or fixed-size r‖s) signs `message` hashed with `hash`.
    pub fn verifies(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        self.verifies_prehash(&hash.digest(message), signature)
    }

    /// Whether `signature` (DER, or fixed-size r‖s) signs the hash `prehash`.
    pub fn verifies_prehash(&self, prehash: &[u8], signature: &[u8]) -> bool {
        match self {
            EcKey::P256(key) => p256::ecdsa::Signature::from_der(signature)
                .or_else(|_| p256::ecdsa::Signature::from_slice(signature))
                .is_ok_and(|s| key.verify_prehash(prehash, &s).is_ok()),
            EcKey::P384(key) => p384::ecdsa::Signature::from_der(signature)
                .or_else(|_| p384::ecdsa::Signature::from_slice(signature))
                .is_ok_and(|s| key.verify_prehash(prehash, &s).is_ok()),
            EcKey::P521(key) => {
                // A hash shorter than the field is taken as an integer as it is (FIPS
                // 186-5): left-padded, which the ECDSA crate does itself only for hashes
                // of at least half the field (so P-521 with SHA-256 would be refused).
                let mut padded = [0u8; P521_FIELD_BYTES];
                let prehash = if prehash.len() < P521_FIELD_BYTES {
                    padded[P521_FIELD_BYTES - prehash.len()..].copy_from_slice(prehash);
                    &padded[..]
                } else {
                    prehash
                };
                p521::ecdsa::Signature::from_der(signature)
                    .or_else(|_| p521::ecdsa::Signature::from_slice(signature))
                    .is_ok_and(|s| key.0.verify_prehash(prehash, &s).is_ok())
            }
        }
    }
}

/// The key of a transparency log: ECDSA (Rekor v1, CT logs) or Ed25519 (Rekor v2, whose
/// checkpoints are C2SP signed notes).
#[derive(Clone, Debug)]
pub enum LogKey {
    /// An ECDSA key: signatures over a message hashed with the given hash.
    Ecdsa(EcKey),
    /// An Ed25519 key: signatures over the message itself (the hash does not apply).
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl LogKey {
    /// Whether `signature` signs `message` (ECDSA: hashed with `hash`).
    pub fn verifies(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        match self {
            LogKey::Ecdsa(key) => key.verifies(hash, message, signature),
            LogKey::Ed25519(key) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|s| key.verify_strict(message, &s).is_ok()),
        }
    }
}

/// A time window (`validFor`): open-ended when `end` is absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// First second it is valid (Unix time).
    pub start: i64,
    /// Last second it is valid, if it ends.
    pub end: Option<i64>,
}

impl Window {
    pub fn contains(&self, at: i64) -> bool {
        at >= self.start && self.end.is_none_or(|end| at <= end)
    }
}

/// A Fulcio CA of a trusted root: its chain, intermediate(s) first and the root last.
#[derive(Clone, Debug)]
pub struct CertificateAuthority {
    /// DER certificates, the one closest to the signing certificate first.
    pub chain: Vec<Vec<u8>>,
    /// When it may have issued certificates.
    pub valid_for: Window,
}

/// A Rekor log of a trusted root.
#[derive(Clone, Debug)]
pub struct TransparencyLog {
    /// The log ID entries name, in hex: the root's `logId.keyId` (Rekor v1 and CT logs: the
    /// SHA-256 of the DER key; Rekor v2: the checkpoint key's C2SP signed-note ID), else the
    /// SHA-256 of the DER key.
    pub log_id: String,
    /// Its key.
    pub key: LogKey,
    /// When entries it integrated are trusted.
    pub valid_for: Window,
}

/// The parts of a Sigstore trusted root this verifier uses.
#[derive(Clone, Debug)]
pub struct TrustedRoot {
    /// Fulcio CAs.
    pub certificate_authorities: Vec<CertificateAuthority>,
    /// Rekor logs with ECDSA or Ed25519 keys.
    pub tlogs: Vec<TransparencyLog>,
    /// Logs listed with keys of other kinds (RSA), not used.
    pub skipped_tlogs: usize,
    /// Certificate transparency logs with ECDSA or Ed25519 keys.
    pub ctlogs: Vec<TransparencyLog>,
    /// RFC 3161 timestamp authorities: each chain the signing certificate first, the root
    /// last.
    pub timestamp_authorities: Vec<CertificateAuthority>,
    /// First 16 hex digits of the SHA-256 of the document (names it in cache keys).
    pub fingerprint: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RootDocument {
    media_type: String,
    #[serde(default)]
    tlogs: Vec<LogDocument>,
    #[serde(default)]
    certificate_authorities: Vec<CaDocument>,
    #[serde(default)]
    ctlogs: Vec<LogDocument>,
    #[serde(default)]
    timestamp_authorities: Vec<CaDocument>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogDocument {
    public_key: PublicKeyDocument,
    #[serde(default)]
    log_id: Option<LogIdDocument>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogIdDocument {
    key_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublicKeyDocument {
    raw_bytes: String,
    #[serde(default)]
    valid_for: Option<WindowDocument>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CaDocument {
    cert_chain: ChainDocument,
    #[serde(default)]
    valid_for: Option<WindowDocument>,
}

#[derive(Deserialize)]
struct ChainDocument {
    certificates: Vec<RawBytes>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBytes {
    raw_bytes: String,
}

#[derive(Deserialize)]
struct WindowDocument {
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    end: Option<String>,
}

fn window(document: Option<&WindowDocument>, what: &str) -> Result<Window, String> {
    let parse = |text: &str| {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp())
            .map_err(|e| format!("{what}: validFor time {text:?}: {e}"))
    };
    let Some(document) = document else {
        return Ok(Window::default());
    };
    Ok(Window {
        start: document
            .start
            .as_deref()
            .map(parse)
            .transpose()?
            .unwrap_or(0),
        end: document.end.as_deref().map(parse).transpose()?,
    })
}

pub(crate) fn base64(text: &str, what: &str) -> Result<Vec<u8>, String> {
    STANDARD
        .decode(text.trim())
        .map_err(|_| format!("{what} is not base64"))
}

/// Parse a Sigstore `trusted_root.json`. Every CA certificate and log key must parse, so a
/// broken root is refused when the policy is compiled rather than when an image arrives.
pub fn parse_trusted_root(text: &str) -> Result<TrustedRoot, String> {
    if text.len() > MAX_TRUSTED_ROOT_BYTES {
        return Err(format!(
            "trusted root is {} bytes, more than the {MAX_TRUSTED_ROOT_BYTES} accepted",
            text.len()
        ));
    }
    let document: RootDocument =
        serde_json::from_str(text).map_err(|e| format!("trusted root is not valid JSON: {e}"))?;
    if !TRUSTED_ROOT_MEDIA_TYPES.contains(&document.media_type.as_str()) {
        return Err(format!(
            "trusted root has mediaType {:?}, not {}",
            document.media_type, TRUSTED_ROOT_MEDIA_TYPES[0]
        ));
    }
    let certificate_authorities =
        parse_authorities(&document.certificate_authorities, "certificateAuthorities")?;
    let timestamp_authorities =
        parse_authorities(&document.timestamp_authorities, "timestampAuthorities")?;
    let (tlogs, skipped_tlogs) = parse_logs(&document.tlogs, "tlogs")?;
    let (ctlogs, _) = parse_logs(&document.ctlogs, "ctlogs")?;
    Ok(TrustedRoot {
        certificate_authorities,
        tlogs,
        skipped_tlogs,
        ctlogs,
        timestamp_authorities,
        fingerprint: hex::encode(Sha256::digest(text.as_bytes()))[..16].to_string(),
    })
}

/// The certificate chains of a trusted root's CAs or timestamp authorities: every
/// certificate must parse, and every chain hold one.
fn parse_authorities(
    authorities: &[CaDocument],
    field: &str,
) -> Result<Vec<CertificateAuthority>, String> {
    let mut parsed = Vec::new();
    for (i, ca) in authorities.iter().enumerate() {
        let what = format!("{field}[{i}]");
        let mut chain = Vec::new();
        for (j, certificate) in ca.cert_chain.certificates.iter().enumerate() {
            let der = base64(&certificate.raw_bytes, &format!("{what} certificate {j}"))?;
            X509Certificate::from_der(&der)
                .map_err(|e| format!("{what} certificate {j} is not a DER certificate: {e}"))?;
            chain.push(der);
        }
        if chain.is_empty() {
            return Err(format!("{what} has no certificates"));
        }
        parsed.push(CertificateAuthority {
            chain,
            valid_for: window(ca.valid_for.as_ref(), &what)?,
        });
    }
    Ok(parsed)
}

/// The logs of a trusted root with ECDSA or Ed25519 keys, and how many were left out for
/// another key kind.
fn parse_logs(logs: &[LogDocument], field: &str) -> Result<(Vec<TransparencyLog>, usize), String> {
    let (mut tlogs, mut skipped_tlogs) = (Vec::new(), 0);
    for (i, log) in logs.iter().enumerate() {
        let what = format!("{field}[{i}]");
        let der = base64(&log.public_key.raw_bytes, &format!("{what} public key"))?;
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&der)
            .map_err(|e| format!("{what}: public key is not a DER SubjectPublicKeyInfo: {e}"))?;
        let key = match spki.algorithm.algorithm.to_id_string().as_str() {
            OID_EC_PUBLIC_KEY => {
                LogKey::Ecdsa(EcKey::from_spki(&der).map_err(|e| format!("{what}: {e}"))?)
            }
            OID_ED25519 => {
                let raw: [u8; 32] = spki
                    .subject_public_key
                    .data
                    .as_ref()
                    .try_into()
                    .map_err(|_| format!("{what}: an Ed25519 key is 32 bytes"))?;
                LogKey::Ed25519(
                    ed25519_dalek::VerifyingKey::from_bytes(&raw)
                        .map_err(|e| format!("{what}: not an Ed25519 key: {e}"))?,
                )
            }
            // Logs with other keys (RSA) are left out, not refused: a root may list such
            // logs next to the ones this verifier uses.
            _ => {
                skipped_tlogs += 1;
                continue;
            }
        };
        let log_id = match &log.log_id {
            Some(id) => {
                let id = base64(&id.key_id, &format!("{what} logId.keyId"))?;
                if id.len() != 32 {
                    return Err(format!("{what}: logId.keyId is {} bytes, not 32", id.len()));
                }
                hex::encode(id)
            }
            None => hex::encode(Sha256::digest(&der)),
        };
        tlogs.push(TransparencyLog {
            log_id,
            key,
            valid_for: window(log.public_key.valid_for.as_ref(), &what)?,
        });
    }
    Ok((tlogs, skipped_tlogs))
}

/// An exact string or an anchored regular expression.
#[derive(Clone, Debug)]
pub enum Matcher {
    /// Equal to this.
    Exact(String),
    /// Matches this in full.
    Pattern(Regex),
}

impl Matcher {
    /// `exact`, or `pattern` anchored at both ends (so `.*@example.com` cannot match
    /// `x@example.com.evil`). Exactly one must be given.
    pub fn new(exact: Option<&str>, pattern: Option<&str>, what: &str) -> Result<Matcher, String> {
        match (exact, pattern) {
            (Some(exact), None) => Ok(Matcher::Exact(exact.to_string())),
            (None, Some(pattern)) => regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
                .size_limit(1 << 20)
                .build()
                .map(Matcher::Pattern)
                .map_err(|e| format!("{what}RegExp {pattern:?} is not a valid expression: {e}")),
            _ => Err(format!("set exactly one of {what} or {what}RegExp")),
        }
    }

    fn matches(&self, text: &str) -> bool {
        match self {
            Matcher::Exact(exact) => exact == text,
            Matcher::Pattern(pattern) => pattern.is_match(text),
        }
    }

    fn describe(&self) -> String {
        match self {
            Matcher::Exact(exact) => format!("{exact:?}"),
            Matcher::Pattern(pattern) => {
                let text = pattern.as_str();
                let inner = &text[4..text.len() - 2];
                format!("/{inner}/")
            }
        }
    }
}

/// A keyless authority of a policy, ready to verify with.
#[derive(Clone, Debug)]
pub struct Authority {
    /// The identity (SAN) the certificate must carry.
    pub subject: Matcher,
    /// The OIDC issuer the certificate must record.
    pub issuer: Matcher,
    /// Fulcio CAs and Rekor keys trusted.
    pub root: Arc<TrustedRoot>,
    /// Require a verified Rekor entry and check the certificate at its integrated time.
    pub require_tlog: bool,
    /// Require an embedded SCT by a CT log of the root.
    pub require_sct: bool,
    /// Require an RFC 3161 timestamp by a timestamp authority of the root, and check the
    /// certificate at its time.
    pub require_timestamp: bool,
    /// Fulcio certificate extensions that must hold exactly these values.
    pub extensions: Vec<RequiredExtension>,
}

/// A Fulcio certificate extension (`1.3.6.1.4.1.57264.1.9` to `.22`, a DER UTF8String)
/// whose value a policy requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequiredExtension {
    /// Its name in the policy (`sourceRepositoryRef`).
    pub name: &'static str,
    /// Its OID.
    pub oid: &'static str,
    /// Whether the extension holds the value's bytes as they are (Fulcio's first GitHub
    /// extensions) rather than a DER UTF8String.
    pub raw: bool,
    /// The value required.
    pub value: String,
}

/// Fulcio's certificate extensions a policy may require, by name and OID
/// (fulcio/docs/oid-info.md: the OIDC token's claims, as the CI system states them).
pub const FULCIO_EXTENSIONS: [(&str, &str); 14] = [
    ("buildSignerURI", "1.3.6.1.4.1.57264.1.9"),
    ("buildSignerDigest", "1.3.6.1.4.1.57264.1.10"),
    ("runnerEnvironment", "1.3.6.1.4.1.57264.1.11"),
    ("sourceRepositoryURI", "1.3.6.1.4.1.57264.1.12"),
    ("sourceRepositoryDigest", "1.3.6.1.4.1.57264.1.13"),
    ("sourceRepositoryRef", "1.3.6.1.4.1.57264.1.14"),
    ("sourceRepositoryIdentifier", "1.3.6.1.4.1.57264.1.15"),
    ("sourceRepositoryOwnerURI", "1.3.6.1.4.1.57264.1.16"),
    ("sourceRepositoryOwnerIdentifier", "1.3.6.1.4.1.57264.1.17"),
    ("buildConfigURI", "1.3.6.1.4.1.57264.1.18"),
    ("buildConfigDigest", "1.3.6.1.4.1.57264.1.19"),
    ("buildTrigger", "1.3.6.1.4.1.57264.1.20"),
    ("runInvocationURI", "1.3.6.1.4.1.57264.1.21"),
    (
        "sourceRepositoryVisibilityAtSigning",
        "1.3.6.1.4.1.57264.1.22",
    ),
];

/// Fulcio's first GitHub Actions extensions (`1.3.6.1.4.1.57264.1.2` to `.6`, the value's
/// bytes as they are), which cosign's `--certificate-github-workflow-*` flags check.
pub const FULCIO_GITHUB_EXTENSIONS: [(&str, &str); 5] = [
    ("githubWorkflowTrigger", "1.3.6.1.4.1.57264.1.2"),
    ("githubWorkflowSHA", "1.3.6.1.4.1.57264.1.3"),
    ("githubWorkflowName", "1.3.6.1.4.1.57264.1.4"),
    ("githubWorkflowRepository", "1.3.6.1.4.1.57264.1.5"),
    ("githubWorkflowRef", "1.3.6.1.4.1.57264.1.6"),
];

/// Check the Fulcio extensions `required` of a certificate: each present once, a DER
/// UTF8String (or raw UTF-8 for the first GitHub ones), equal to the value required.
fn check_extensions(
    certificate: &X509Certificate<'_>,
    required: &[RequiredExtension],
) -> Result<(), String> {
    for wanted in required {
        let mut found = certificate
            .extensions()
            .iter()
            .filter(|e| e.oid.to_id_string() == wanted.oid);
        let (Some(extension), None) = (found.next(), found.next()) else {
            return Err(format!(
                "the certificate does not carry {} once (extension {})",
                wanted.name, wanted.oid
            ));
        };
        let value = if wanted.raw {
            std::str::from_utf8(extension.value)
                .ok()
                .map(str::to_string)
        } else {
            x509_parser::der_parser::der::parse_der_utf8string(extension.value)
                .ok()
                .filter(|(rest, _)| rest.is_empty())
                .and_then(|(_, value)| value.as_str().ok().map(str::to_string))
        }
        .ok_or_else(|| {
            format!(
                "the certificate's {} (extension {}) is not a UTF8String",
                wanted.name, wanted.oid
            )
        })?;
        if value != wanted.value {
            return Err(format!(
                "the certificate's {} {value:?} is not {:?}",
                wanted.name, wanted.value
            ));
        }
    }
    Ok(())
}

/// One keyless signature as found in the registry.
#[derive(Clone, Copy, Debug)]
pub struct KeylessSignature<'a> {
    /// The signed payload.
    pub payload: &'a [u8],
    /// Base64 signature of the payload.
    pub signature_b64: &'a str,
    /// PEM signing certificate.
    pub certificate_pem: Option<&'a str>,
    /// Rekor bundle JSON (cosign's `dev.sigstore.cosign/bundle` annotation).
    pub rekor_bundle: Option<&'a str>,
    /// RFC 3161 timestamp of the signature (cosign's `dev.sigstore.cosign/rfc3161timestamp`
    /// annotation, JSON).
    pub rfc3161_timestamp: Option<&'a str>,
}

/// The DER of the first `CERTIFICATE` block of `pem`.
pub fn first_pem_certificate(pem: &str) -> Result<Vec<u8>, String> {
    let begin = "-----BEGIN CERTIFICATE-----";
    let end = "-----END CERTIFICATE-----";
    let start = pem
        .find(begin)
        .ok_or("the certificate annotation holds no PEM CERTIFICATE")?;
    let body = &pem[start + begin.len()..];
    let stop = body
        .find(end)
        .ok_or("the certificate's PEM block has no END line")?;
    let text: String = body[..stop].split_whitespace().collect();
    STANDARD
        .decode(text)
        .map_err(|_| "the certificate's PEM block is not base64".to_string())
}

/// Whether `issuer` signed `certificate`: by the algorithm the certificate names (ECDSA,
/// RSA PKCS #1 v1.5, RSASSA-PSS or Ed25519) with the issuer's key.
fn signed_by(
    certificate: &X509Certificate<'_>,
    issuer: &X509Certificate<'_>,
) -> Result<(), String> {
    let subject = || certificate.subject().to_string();
    let scheme = SignatureScheme::of_algorithm(&certificate.signature_algorithm, None)
        .map_err(|e| format!("certificate {:?} is signed with {e}", subject()))?;
    let key = PublicKey::from_spki(issuer.public_key().raw)
        .map_err(|e| format!("issuer {:?}: {e}", issuer.subject().to_string()))?;
    if key.verifies_by(
        scheme,
        certificate.tbs_certificate.as_ref(),
        &certificate.signature_value.data,
    ) {
        Ok(())
    } else {
        Err(format!(
            "certificate {:?} is not signed by {:?}",
            subject(),
            issuer.subject().to_string()
        ))
    }
}

pub(crate) fn valid_at(
    certificate: &X509Certificate<'_>,
    at: i64,
    what: &str,
) -> Result<(), String> {
    let validity = certificate.validity();
    let (from, until) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    if at < from || at > until {
        return Err(format!(
            "{what} is valid from {} to {}, not at the signing time {}",
            time(from),
            time(until),
            time(at)
        ));
    }
    Ok(())
}

pub(crate) fn time(at: i64) -> String {
    DateTime::<Utc>::from_timestamp(at, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| at.to_string())
}

/// Verify that `leaf` chains to `ca` at `at`: each certificate signed by the next, each a
/// CA valid at `at`, the CA itself valid then. The last certificate is the trust anchor.
fn chains_to(
    leaf: &X509Certificate<'_>,
    ca: &CertificateAuthority,
    at: i64,
) -> Result<Vec<u8>, String> {
    if !ca.valid_for.contains(at) {
        return Err(format!(
            "the Fulcio CA is trusted only from {} to {}",
            time(ca.valid_for.start),
            ca.valid_for.end.map(time).unwrap_or_else(|| "now".into())
        ));
    }
    issued_through(leaf, &ca.chain, at)?;
    let (_, issuer) = X509Certificate::from_der(&ca.chain[0])
        .map_err(|e| format!("trusted root certificate: {e}"))?;
    Ok(issuer.public_key().raw.to_vec())
}

/// Verify that `leaf` was issued through `issuers` (DER, the nearest first, the trust
/// anchor last) at `at`: each certificate signed by the next, each issuer a CA valid at
/// `at`. Fulcio's chains and timestamp authorities' are checked alike.
pub(crate) fn issued_through(
    leaf: &X509Certificate<'_>,
    issuers: &[Vec<u8>],
    at: i64,
) -> Result<(), String> {
    let mut parsed = Vec::new();
    for der in issuers {
        let (_, certificate) =
            X509Certificate::from_der(der).map_err(|e| format!("trusted root certificate: {e}"))?;
        parsed.push(certificate);
    }
    let mut child = leaf;
    for issuer in &parsed {
        if !issuer.is_ca() {
            return Err(format!(
                "trusted certificate {:?} is not a CA",
                issuer.subject().to_string()
            ));
        }
        valid_at(
            issuer,
            at,
            &format!("CA certificate {:?}", issuer.subject().to_string()),
        )?;
        signed_by(child, issuer)?;
        child = issuer;
    }
    Ok(())
}

/// The identities (email and URI SANs) of a certificate.
fn identities(certificate: &X509Certificate<'_>) -> Result<Vec<String>, String> {
    let san = certificate
        .subject_alternative_name()
        .map_err(|e| format!("signing certificate's SAN extension: {e}"))?
        .ok_or("signing certificate has no subject alternative name (identity)")?;
    Ok(san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::RFC822Name(email) => Some(email.to_string()),
            GeneralName::URI(uri) => Some(uri.to_string()),
            _ => None,
        })
        .collect())
}

/// The OIDC issuer Fulcio recorded in a certificate.
fn oidc_issuer(certificate: &X509Certificate<'_>) -> Result<String, String> {
    let mut legacy = None;
    for extension in certificate.extensions() {
        match extension.oid.to_id_string().as_str() {
            OID_ISSUER_V2 => {
                let (_, value) =
                    x509_parser::der_parser::der::parse_der_utf8string(extension.value)
                        .map_err(|_| "the issuer extension (…57264.1.8) is not a UTF8String")?;
                return value
                    .as_str()
                    .map(str::to_string)
                    .map_err(|_| "the issuer extension (…57264.1.8) is not UTF-8".to_string());
            }
            OID_ISSUER_V1 => {
                legacy = Some(
                    std::str::from_utf8(extension.value)
                        .map_err(|_| "the issuer extension (…57264.1.1) is not UTF-8")?
                        .to_string(),
                )
            }
            _ => {}
        }
    }
    legacy.ok_or_else(|| {
        "signing certificate records no OIDC issuer (not a Fulcio certificate)".into()
    })
}

/// DER of the OID of the embedded SCT list extension (1.3.6.1.4.1.11129.2.4.2).
const SCT_OID_DER: [u8; 12] = [
    0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x02,
];

/// Tag, header length and content length of the DER element at the start of `data`.
fn der_header(data: &[u8]) -> Result<(u8, usize, usize), String> {
    der_header_in(data, "the signing certificate")
}

/// [`der_header`] for DER in `what`.
pub(crate) fn der_header_in(data: &[u8], what: &str) -> Result<(u8, usize, usize), String> {
    let malformed = || format!("malformed DER in {what}");
    let (&tag, rest) = data.split_first().ok_or_else(malformed)?;
    let (&first, rest) = rest.split_first().ok_or_else(malformed)?;
    let (header, length) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return Err(malformed());
        }
        let length = rest[..count]
            .iter()
            .fold(0usize, |n, &b| (n << 8) | usize::from(b));
        (2 + count, length)
    };
    if data.len() < header + length {
        return Err(malformed());
    }
    Ok((tag, header, length))
}

fn der_wrap(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let length = content.len();
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let bytes: Vec<u8> = length
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// The TBS certificate as the CT log signed it (the precertificate's): without the SCT
/// list extension, everything else byte for byte.
fn precertificate_tbs(tbs: &[u8]) -> Result<Vec<u8>, String> {
    let (_, header, length) = der_header(tbs)?;
    let mut fields = &tbs[header..header + length];
    let mut out = Vec::new();
    while !fields.is_empty() {
        let (tag, header, length) = der_header(fields)?;
        let field = &fields[..header + length];
        if tag == 0xa3 {
            let sequence = &field[header..];
            let (_, inner_header, inner_length) = der_header(sequence)?;
            let mut extensions = &sequence[inner_header..inner_header + inner_length];
            let mut kept = Vec::new();
            while !extensions.is_empty() {
                let (_, header, length) = der_header(extensions)?;
                let extension = &extensions[..header + length];
                if !extension[header..].starts_with(&SCT_OID_DER) {
                    kept.extend_from_slice(extension);
                }
                extensions = &extensions[header + length..];
            }
            out.extend(der_wrap(0xa3, &der_wrap(0x30, &kept)));
        } else {
            out.extend_from_slice(field);
        }
        fields = &fields[header + length..];
    }
    Ok(der_wrap(0x30, &out))
}

/// Verify that one embedded SCT of `leaf` is signed by a CT log of `root` (RFC 6962: the
/// log's signature over the precertificate entry: the TBS without the SCT extension and
/// the SHA-256 of the issuer's key).
fn verify_sct(
    leaf: &X509Certificate<'_>,
    issuer_spki: &[u8],
    root: &TrustedRoot,
) -> Result<(), String> {
    use x509_parser::extensions::ParsedExtension;
    let scts = leaf
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SCT(list) => Some(list),
            _ => None,
        })
        .ok_or("the signing certificate has no embedded SCT (requireSCT)")?;
    let tbs = precertificate_tbs(leaf.tbs_certificate.as_ref())?;
    let mut refused = Vec::new();
    for sct in scts {
        let log_id = hex::encode(sct.id.key_id);
        let Some(log) = root.ctlogs.iter().find(|l| l.log_id == log_id) else {
            refused.push(format!(
                "SCT from CT log {log_id}, which the trusted root does not list"
            ));
            continue;
        };
        if (sct.signature.hash_alg_id, sct.signature.sign_alg_id) != (4, 3) {
            refused.push("SCT not signed with ECDSA SHA-256".to_string());
            continue;
        }
        let mut signed = vec![sct.version.0, 0];
        signed.extend(sct.timestamp.to_be_bytes());
        signed.extend([0, 1]);
        signed.extend(Sha256::digest(issuer_spki));
        signed.extend(&(tbs.len() as u32).to_be_bytes()[1..]);
        signed.extend(&tbs);
        signed.extend(&(sct.extensions.0.len() as u16).to_be_bytes());
        signed.extend(sct.extensions.0);
        if !log.key.verifies(Hash::Sha256, &signed, sct.signature.data) {
            refused.push(format!("SCT from CT log {log_id} does not verify"));
            continue;
        }
        let at = i64::try_from(sct.timestamp / 1000).unwrap_or(i64::MAX);
        if !log.valid_for.contains(at) {
            refused.push(format!(
                "CT log {log_id} is not trusted at the SCT's time {}",
                time(at)
            ));
            continue;
        }
        return Ok(());
    }
    Err(format!("no valid SCT: {}", refused.join("; ")))
}

#[derive(Deserialize)]
struct RekorBundle {
    #[serde(rename = "SignedEntryTimestamp")]
    signed_entry_timestamp: String,
    #[serde(rename = "Payload")]
    payload: RekorPayload,
}

#[derive(Deserialize)]
struct RekorPayload {
    body: String,
    #[serde(rename = "integratedTime")]
    integrated_time: i64,
    #[serde(rename = "logIndex")]
    log_index: i64,
    #[serde(rename = "logID")]
    log_id: String,
}

/// What a Rekor signed entry timestamp signs: the canonical JSON (keys sorted, no spaces)
/// of the entry's base64 body, integrated time, hex log ID and log index.
pub(crate) fn set_message(
    body_b64: &str,
    integrated_time: i64,
    log_id_hex: &str,
    log_index: i64,
) -> String {
    format!(
        r#"{{"body":{},"integratedTime":{},"logID":{},"logIndex":{}}}"#,
        Value::String(body_b64.to_string()),
        integrated_time,
        Value::String(log_id_hex.to_string()),
        log_index
    )
}

/// Who a log entry must record as the signer.
#[derive(Clone, Copy, Debug)]
pub enum LoggedSigner<'a> {
    /// A signing certificate (DER): a keyless signature.
    Certificate(&'a [u8]),
    /// A public key: a keyed signature.
    Key(&'a PublicKey),
}

impl LoggedSigner<'_> {
    /// Whether `encoded` (base64 of the PEM a Rekor entry records: a certificate for a
    /// keyless signature, a public key for a keyed one) names this signer.
    pub fn is_recorded_as(&self, encoded: &str) -> bool {
        let Ok(pem) = STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let text = String::from_utf8_lossy(&pem);
        match self {
            LoggedSigner::Certificate(der) => {
                first_pem_certificate(&text).is_ok_and(|logged| logged == *der)
            }
            LoggedSigner::Key(key) => crate::keys::parse_public_keys(&text).is_ok_and(|logged| {
                logged.len() == 1 && logged[0].key.spki_der() == key.spki_der()
            }),
        }
    }
}

/// Verify cosign's Rekor bundle offline: the SET (the log key's signature over the
/// canonical JSON of the payload) by a log of `root`, and the entry (a `hashedrekord`)
/// describing this payload hash, signature and signer. Returns the integrated time.
pub fn verify_rekor_bundle(
    bundle: &str,
    root: &TrustedRoot,
    payload: &[u8],
    signature: &[u8],
    signer: LoggedSigner<'_>,
) -> Result<i64, String> {
    if bundle.len() > MAX_BUNDLE_BYTES {
        return Err("the Rekor bundle annotation is too large".into());
    }
    let bundle: RekorBundle = serde_json::from_str(bundle)
        .map_err(|e| format!("the Rekor bundle annotation is not a cosign bundle: {e}"))?;
    let entry = &bundle.payload;
    let log = root
        .tlogs
        .iter()
        .find(|log| log.log_id.eq_ignore_ascii_case(&entry.log_id))
        .ok_or_else(|| {
            format!(
                "the Rekor entry is from log {}, which the trusted root does not list",
                entry.log_id
            )
        })?;
    let canonical = set_message(
        &entry.body,
        entry.integrated_time,
        &entry.log_id,
        entry.log_index,
    );
    let set = base64(&bundle.signed_entry_timestamp, "the SignedEntryTimestamp")?;
    if !log.key.verifies(Hash::Sha256, canonical.as_bytes(), &set) {
        return Err("the Rekor signed entry timestamp does not verify with the log's key".into());
    }
    if !log.valid_for.contains(entry.integrated_time) {
        return Err(format!(
            "the Rekor log's key is not trusted at the entry's time {}",
            time(entry.integrated_time)
        ));
    }
    let body = base64(&entry.body, "the Rekor entry body")?;
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("the Rekor entry body is not JSON: {e}"))?;
    if body["kind"] != "hashedrekord" {
        return Err(format!(
            "the Rekor entry is of kind {}, not hashedrekord",
            body["kind"]
        ));
    }
    let spec = &body["spec"];
    let hash = &spec["data"]["hash"];
    if hash["algorithm"] != "sha256"
        || !hash["value"]
            .as_str()
            .is_some_and(|v| v.eq_ignore_ascii_case(&hex::encode(Sha256::digest(payload))))
    {
        return Err("the Rekor entry is for another payload (its hash differs)".into());
    }
    let logged_signature = base64(
        spec["signature"]["content"].as_str().unwrap_or_default(),
        "the Rekor entry's signature",
    )?;
    if logged_signature != signature {
        return Err("the Rekor entry records another signature".into());
    }
    let logged_signer = spec["signature"]["publicKey"]["content"]
        .as_str()
        .unwrap_or_default();
    if !signer.is_recorded_as(logged_signer) {
        return Err(match signer {
            LoggedSigner::Certificate(_) => "the Rekor entry records another signing certificate",
            LoggedSigner::Key(_) => "the Rekor entry records another public key",
        }
        .into());
    }
    Ok(entry.integrated_time)
}

/// Verify a keyless signature of `payload` against `authority`; returns the identity it
/// was made by (`subject (issuer)`). The signature must verify with the certificate's key;
/// a Rekor bundle (required when the authority requires the log) and an RFC 3161 timestamp
/// of the signature (required when the authority requires one) each give a signed time,
/// and the certificate is checked at every one of them, or now when there is none. The
/// payload's contents (digest) are checked by the caller.
pub fn verify(
    signature: &KeylessSignature<'_>,
    authority: &Authority,
    now: DateTime<Utc>,
) -> Result<String, String> {
    let (der, raw_signature) = signing_certificate(signature)?;
    let leaf = parse_leaf(&der)?;
    check_signature(&leaf, signature.payload, &raw_signature)?;
    let mut signed_times = Vec::new();
    match (signature.rekor_bundle, authority.require_tlog) {
        (Some(bundle), _) => signed_times.push(verify_rekor_bundle(
            bundle,
            &authority.root,
            signature.payload,
            &raw_signature,
            LoggedSigner::Certificate(&der),
        )?),
        (None, true) => {
            return Err("no Rekor bundle (the transparency log entry is required)".into());
        }
        (None, false) => {}
    }
    match (signature.rfc3161_timestamp, authority.require_timestamp) {
        (Some(annotation), _) => signed_times.push(stamped_time(
            annotation,
            &[&raw_signature],
            &authority.root,
        )?),
        (None, true) => return Err(NO_TIMESTAMP.into()),
        (None, false) => {}
    }
    check_certificate_at(&leaf, authority, &signed_times, now)
}

/// Why a signature without a timestamp is refused by an authority that requires one.
pub(crate) const NO_TIMESTAMP: &str =
    "no RFC 3161 timestamp (the authority requires one: sign with cosign's --timestamp-server-url)";

/// Verify a keyless signature whose signed times the caller established (an attestation's
/// log entry and timestamp): the signature by the certificate's key, then the certificate
/// at each of `signed_times` (now when there is none). Its Rekor bundle and timestamp
/// fields are not read.
pub fn verify_at(
    signature: &KeylessSignature<'_>,
    authority: &Authority,
    signed_times: &[i64],
    now: DateTime<Utc>,
) -> Result<String, String> {
    let (der, raw_signature) = signing_certificate(signature)?;
    let leaf = parse_leaf(&der)?;
    check_signature(&leaf, signature.payload, &raw_signature)?;
    check_certificate_at(&leaf, authority, signed_times, now)
}

/// The signing certificate's DER and the raw signature of a keyless signature.
fn signing_certificate(signature: &KeylessSignature<'_>) -> Result<(Vec<u8>, Vec<u8>), String> {
    let certificate_pem = signature
        .certificate_pem
        .ok_or("no signing certificate (not a keyless signature)")?;
    let der = first_pem_certificate(certificate_pem)?;
    let raw_signature = base64(signature.signature_b64, "the signature annotation")?;
    Ok((der, raw_signature))
}

fn parse_leaf(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    X509Certificate::from_der(der)
        .map(|(_, leaf)| leaf)
        .map_err(|e| format!("the signing certificate does not parse: {e}"))
}

/// Whether the certificate's key verifies `raw_signature` over `payload` as cosign checks its
/// own signatures ([`PublicKey::verifies_as_cosign`]).
fn check_signature(
    leaf: &X509Certificate<'_>,
    payload: &[u8],
    raw_signature: &[u8],
) -> Result<(), String> {
    let key = PublicKey::from_spki(leaf.public_key().raw)
        .map_err(|e| format!("signing certificate: {e}"))?;
    if !key.verifies_as_cosign(payload, raw_signature) {
        return Err("the signature does not verify with the signing certificate's key".into());
    }
    Ok(())
}

/// The time cosign's RFC 3161 timestamp annotation signs, verified against the root's
/// timestamp authorities; its imprint must hash one of `stamped` (what the signer may have
/// sent the authority).
pub(crate) fn stamped_time(
    annotation: &str,
    stamped: &[&[u8]],
    root: &TrustedRoot,
) -> Result<i64, String> {
    let response = crate::cosign::rfc3161_timestamp_response(annotation)?;
    let mut refusal = String::new();
    for bytes in stamped {
        match crate::timestamp::verify(&response, bytes, &root.timestamp_authorities) {
            Ok(at) => return Ok(at),
            Err(e) => refusal = e,
        }
    }
    Err(refusal)
}

/// Check the certificate at each of `signed_times`, or now when there is none.
pub(crate) fn check_certificate_at(
    leaf: &X509Certificate<'_>,
    authority: &Authority,
    signed_times: &[i64],
    now: DateTime<Utc>,
) -> Result<String, String> {
    if signed_times.is_empty() {
        return check_certificate(leaf, authority, now.timestamp());
    }
    let mut signer = String::new();
    for &at in signed_times {
        signer = check_certificate(leaf, authority, at)?;
    }
    Ok(signer)
}

/// Check a signing certificate against `authority` at `signed_at`: valid then, for code
/// signing, chained to one of the root's Fulcio CAs, with an SCT by one of its CT logs when
/// required, and the issuer and identity the authority names. Returns `subject (issuer)`.
pub(crate) fn check_certificate(
    leaf: &X509Certificate<'_>,
    authority: &Authority,
    signed_at: i64,
) -> Result<String, String> {
    valid_at(leaf, signed_at, "the signing certificate")?;
    if !leaf
        .extended_key_usage()
        .ok()
        .flatten()
        .is_some_and(|eku| eku.value.code_signing)
    {
        return Err("the signing certificate is not for code signing (extended key usage)".into());
    }
    let mut failures = Vec::new();
    let issuer_spki = authority
        .root
        .certificate_authorities
        .iter()
        .find_map(|ca| match chains_to(leaf, ca, signed_at) {
            Ok(issuer_spki) => Some(issuer_spki),
            Err(e) => {
                failures.push(e);
                None
            }
        });
    let Some(issuer_spki) = issuer_spki else {
        return Err(format!(
            "the signing certificate does not chain to the trusted root: {}",
            failures.join("; ")
        ));
    };
    if authority.require_sct {
        verify_sct(leaf, &issuer_spki, &authority.root)?;
    }
    let issuer = oidc_issuer(leaf)?;
    if !authority.issuer.matches(&issuer) {
        return Err(format!(
            "the certificate's OIDC issuer {issuer:?} is not {}",
            authority.issuer.describe()
        ));
    }
    let names = identities(leaf)?;
    let Some(subject) = names.iter().find(|n| authority.subject.matches(n)) else {
        return Err(format!(
            "the certificate's identity {} is not {}",
            names.join(", "),
            authority.subject.describe()
        ));
    };
    check_extensions(leaf, &authority.extensions)?;
    Ok(format!("{subject} ({issuer})"))
}
