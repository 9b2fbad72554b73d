//! Signed scan verdicts: an in-toto Statement (subject: the image digest; predicate: the
//! verdict, finding counts, SBOM digest, advisory snapshot, policy digest) in a DSSE envelope
//! signed with ES256 (ECDSA P-256, SHA-256) by a key that exists only in the platform
//! namespace. The scan and evaluate workers sign; whatever trusts a verdict (the webhook, the
//! Scan controller) calls [`VerdictKeys::verify`] first and treats a row whose envelope does
//! not verify as "not scanned".
//!
//! The envelope is stored in S3 under [`object_key`] (`attest/<sha256>.dsse.json`, the
//! SHA-256 of the envelope bytes) and its bytes with that key in the result row, so a
//! verifier needs one database read, and a reader of the bucket finds the same bytes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// DSSE payload type of an in-toto Statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The Statement's `_type`.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate type of a scan verdict.
pub const PREDICATE_TYPE: &str = "https://stella-ops.org/attestations/scan-verdict/v1";
/// Largest envelope a verifier reads (a verdict is a few hundred bytes).
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;

/// Finding counts by severity.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FindingCounts {
    /// Critical.
    pub critical: i64,
    /// High.
    pub high: i64,
    /// Medium.
    pub medium: i64,
    /// Low.
    pub low: i64,
}

/// The SBOM a verdict was decided on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SbomRef {
    /// Where it is stored.
    pub uri: String,
    /// `sha256:<hex>` of its bytes.
    pub sha256: String,
}

/// What a scan (or a re-evaluation) decided about one image.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerdictPredicate {
    /// The image reference as asked.
    pub image: String,
    /// `Pass`, `Warn` or `Fail`.
    pub verdict: String,
    /// Findings by severity.
    pub findings: FindingCounts,
    /// The SBOM.
    pub sbom: SbomRef,
    /// The advisory change sequence the findings were matched at.
    pub advisory_snapshot: i64,
    /// `sha256:<hex>` of the policy the verdict was decided by (its canonical JSON).
    pub policy_digest: String,
    /// When the verdict was decided (RFC 3339).
    pub scanned_at: chrono::DateTime<chrono::Utc>,
}

/// One subject of a Statement.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// The image reference (informative).
    pub name: String,
    /// Digests by algorithm (`sha256` → hex).
    pub digest: std::collections::BTreeMap<String, String>,
}

/// An in-toto Statement (v1) carrying a verdict.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Statement {
    /// [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub type_: String,
    /// The image, by digest.
    pub subject: Vec<Subject>,
    /// [`PREDICATE_TYPE`].
    pub predicate_type: String,
    /// The verdict.
    pub predicate: VerdictPredicate,
}

/// A DSSE envelope (field names as the DSSE specification spells them).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// [`PAYLOAD_TYPE`].
    pub payload_type: String,
    /// Base64 of the Statement's bytes.
    pub payload: String,
    /// Signatures over the pre-authentication encoding.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of an envelope.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeSignature {
    /// `sha256:<hex>` of the signer's public key (SubjectPublicKeyInfo DER).
    pub keyid: String,
    /// Base64 of the ASN.1 DER ECDSA signature.
    pub sig: String,
}

/// Why a key or an envelope was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttestationError {
    /// The PEM does not hold a usable P-256 key.
    #[error("not a PEM ECDSA P-256 {0} key")]
    BadKey(&'static str),
    /// The envelope cannot be used; the message says why.
    #[error("{0}")]
    Refused(String),
}

/// DSSE pre-authentication encoding: `DSSEv1 <len(type)> <type> <len(body)> <body>`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// `sha256:<hex>` of a public key's SubjectPublicKeyInfo DER.
pub fn key_id(key: &VerifyingKey) -> String {
    let der = key.to_public_key_der().expect("P-256 keys encode");
    format!("sha256:{}", hex::encode(Sha256::digest(der.as_bytes())))
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The S3 key of an envelope: `attest/<hex of its SHA-256>.dsse.json`.
pub fn object_key(envelope: &[u8]) -> String {
    format!("attest/{}.dsse.json", hex::encode(Sha256::digest(envelope)))
}

/// The verdict signing key (the workers hold it; it never leaves the platform namespace).
pub struct VerdictSigner {
    key: SigningKey,
    key_id: String,
}

/// Only the key id: the private key never reaches a log.
impl std::fmt::Debug for VerdictSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerdictSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl VerdictSigner {
    /// From a PEM private key (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<Self, AttestationError> {
        let key = SigningKey::from_pkcs8_pem(pem.trim())
            .or_else(|_| p256::SecretKey::from_sec1_pem(pem.trim()).map(SigningKey::from))
            .map_err(|_| AttestationError::BadKey("private"))?;
        let key_id = key_id(key.verifying_key());
        Ok(VerdictSigner { key, key_id })
    }

    /// This key's id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The private scalar's bytes: only for deriving other keys of the platform (the
    /// layer-cache key of [`crate::layer_cache::FragmentKey::derive`]).
    pub(crate) fn secret_bytes(&self) -> p256::elliptic_curve::zeroize::Zeroizing<[u8; 32]> {
        p256::elliptic_curve::zeroize::Zeroizing::new(self.key.to_bytes().into())
    }

    /// The envelope (JSON bytes) of a Statement about `digest` (`sha256:<hex>`).
    pub fn sign(&self, digest: &str, predicate: &VerdictPredicate) -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let statement = Statement {
            type_: STATEMENT_TYPE.into(),
            subject: vec![Subject {
                name: predicate.image.clone(),
                digest: [("sha256".to_string(), hex.to_string())].into(),
            }],
            predicate_type: PREDICATE_TYPE.into(),
            predicate: predicate.clone(),
        };
        let payload = serde_json::to_vec(&statement).expect("a Statement serializes");
        let signature: DerSignature = self.key.sign(&pae(PAYLOAD_TYPE, &payload));
        let envelope = Envelope {
            payload_type: PAYLOAD_TYPE.into(),
            payload: STANDARD.encode(&payload),
            signatures: vec![EnvelopeSignature {
                keyid: self.key_id.clone(),
                sig: STANDARD.encode(signature.as_bytes()),
            }],
        };
        serde_json::to_vec(&envelope).expect("an envelope serializes")
    }
}

/// The public keys a verdict must be signed by (several during a rotation).
#[derive(Clone, Debug, Default)]
pub struct VerdictKeys {
    keys: Vec<(String, VerifyingKey)>,
}

impl VerdictKeys {
    /// From a text holding one or more PEM `PUBLIC KEY` blocks.
    pub fn from_pem_bundle(text: &str) -> Result<Self, AttestationError> {
        const END: &str = "-----END PUBLIC KEY-----";
        let mut keys = Vec::new();
        let mut rest = text;
        while let Some(end) = rest.find(END) {
            let block = &rest[..end + END.len()];
            let key = VerifyingKey::from_public_key_pem(block.trim())
                .map_err(|_| AttestationError::BadKey("public"))?;
            keys.push((key_id(&key), key));
            rest = &rest[end + END.len()..];
        }
        if !rest.trim().is_empty() {
            return Err(AttestationError::BadKey("public"));
        }
        Ok(VerdictKeys { keys })
    }

    /// The public half of `signer` (tests, single-process setups).
    pub fn of(signer: &VerdictSigner) -> Self {
        let key = *signer.key.verifying_key();
        VerdictKeys {
            keys: vec![(key_id(&key), key)],
        }
    }

    /// True when no key is configured (then no verdict is trusted).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verify `envelope` (stored as `key`, its `attest/…` object key) for the image `digest`:
    /// its bytes hash to `key`, a configured key signed it, it is an in-toto Statement of a
    /// scan verdict whose subject is `digest`. Returns the verdict. Every refusal names the
    /// envelope.
    pub fn verify(
        &self,
        key: &str,
        envelope: &[u8],
        digest: &str,
    ) -> Result<VerdictPredicate, AttestationError> {
        let refuse =
            |why: String| AttestationError::Refused(format!("verdict envelope {key} {why}"));
        if envelope.len() > MAX_ENVELOPE_BYTES {
            return Err(refuse(format!(
                "is {} bytes, more than {MAX_ENVELOPE_BYTES}",
                envelope.len()
            )));
        }
        if object_key(envelope) != key {
            return Err(refuse("does not hash to its name (tampered)".into()));
        }
        if self.keys.is_empty() {
            return Err(refuse(
                "cannot be checked: no verdict public key is configured".into(),
            ));
        }
        let parsed: Envelope = serde_json::from_slice(envelope)
            .map_err(|e| refuse(format!("is not a DSSE envelope: {e}")))?;
        if parsed.payload_type != PAYLOAD_TYPE {
            return Err(refuse(format!(
                "has payload type {:?}, not {PAYLOAD_TYPE}",
                parsed.payload_type
            )));
        }
        let payload = STANDARD
            .decode(&parsed.payload)
            .map_err(|_| refuse("has a payload that is not base64".into()))?;
        let message = pae(&parsed.payload_type, &payload);
        let signed = parsed.signatures.iter().any(|sig| {
            let Some(signature) = STANDARD
                .decode(&sig.sig)
                .ok()
                .and_then(|b| Signature::from_der(&b).ok())
            else {
                return false;
            };
            self.keys
                .iter()
                .filter(|(id, _)| sig.keyid.is_empty() || *id == sig.keyid)
                .any(|(_, k)| k.verify(&message, &signature).is_ok())
        });
        if !signed {
            return Err(refuse(
                "has no signature by a configured verdict key (tampered or signed by another key)"
                    .into(),
            ));
        }
        let statement: Statement = serde_json::from_slice(&payload)
            .map_err(|e| refuse(format!("holds no verdict Statement: {e}")))?;
        if statement.type_ != STATEMENT_TYPE || statement.predicate_type != PREDICATE_TYPE {
            return Err(refuse(format!(
                "holds a {} of predicate type {}, not a scan verdict",
                statement.type_, statement.predicate_type
            )));
        }
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        if !statement
            .subject
            .iter()
            .any(|s| s.digest.get("sha256").map(String::as_str) == Some(hex))
        {
            return Err(refuse(format!("is about another image, not {digest}")));
        }
        Ok(statement.predicate)
    }
}

/// A verdict row's envelope, checked against the row: the signed verdict must be the one
/// the row claims (a row edited after signing is refused).
pub fn check_row(
    keys: &VerdictKeys,
    digest: &str,
    row_verdict: &str,
    key: Option<&str>,
    envelope: Option<&[u8]>,
) -> Result<VerdictPredicate, String> {
    let (Some(key), Some(envelope)) = (key, envelope) else {
        return Err(format!(
            "the scan result of {digest} has no signed verdict envelope"
        ));
    };
    let predicate = keys
        .verify(key, envelope, digest)
        .map_err(|e| e.to_string())?;
    if predicate.verdict != row_verdict {
        return Err(format!(
            "verdict envelope {key} says {}, its row says {row_verdict} (the row was changed)",
            predicate.verdict
        ));
    }
    Ok(predicate)
}

/// A new verdict key pair as (PKCS#8 private key PEM, public key PEM), for
/// `stellaops-worker verdict-keygen` and tests.
pub fn generate_key_pair() -> (String, String) {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    let key = SigningKey::random(&mut rand_core::OsRng);
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .expect("P-256 keys encode")
        .to_string();
    let public = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("P-256 keys encode");
    (private, public)
}

/// The verdict public keys in force, shared by everything that verifies (the webhook and
/// the Scan controller of one process) and replaced whole when the key file changes.
#[derive(Clone, Debug, Default)]
pub struct SharedVerdictKeys(std::sync::Arc<std::sync::RwLock<std::sync::Arc<VerdictKeys>>>);

impl From<VerdictKeys> for SharedVerdictKeys {
    fn from(keys: VerdictKeys) -> Self {
        SharedVerdictKeys(std::sync::Arc::new(std::sync::RwLock::new(
            std::sync::Arc::new(keys),
        )))
    }
}

impl SharedVerdictKeys {
    /// The keys in force now.
    pub fn current(&self) -> std::sync::Arc<VerdictKeys> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Put `keys` in force.
    pub fn replace(&self, keys: VerdictKeys) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = std::sync::Arc::new(keys);
    }

    /// The ids of the keys in force.
    pub fn ids(&self) -> Vec<String> {
        self.current().ids()
    }
}

impl VerdictKeys {
    /// The ids (`sha256:<hex>` of each SubjectPublicKeyInfo) of these keys.
    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|(id, _)| id.clone()).collect()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

/// What one look at the verdict public key file found.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyFileChange {
    /// Nothing changed since the last look.
    Unchanged,
    /// New keys are in force (their ids).
    Loaded(Vec<String>),
    /// The file changed but cannot be used: the keys in force before stay; why.
    Refused(String),
}

/// A verdict public key file (a mounted Secret's `pub.pem`) followed for changes: each
/// [`KeyFile::check`] reads it and, when its bytes changed, puts the new keys in force, or
/// keeps the old ones and says why when the new file is unusable.
#[derive(Debug)]
pub struct KeyFile {
    path: std::path::PathBuf,
    keys: SharedVerdictKeys,
    /// SHA-256 of the bytes last looked at (`None`: absent).
    seen: Option<Option<[u8; 32]>>,
}

/// Largest key file read (a bundle of a few PEM public keys is well under a kilobyte each).
pub const MAX_KEY_FILE_BYTES: u64 = 256 * 1024;

impl KeyFile {
    /// Follow `path`, putting its keys into `keys`.
    pub fn new(path: impl Into<std::path::PathBuf>, keys: SharedVerdictKeys) -> Self {
        KeyFile {
            path: path.into(),
            keys,
            seen: None,
        }
    }

    /// The keys this file feeds.
    pub fn keys(&self) -> &SharedVerdictKeys {
        &self.keys
    }

    /// Read the file; load it when it changed since the last look.
    pub fn check(&mut self) -> KeyFileChange {
        use std::io::Read as _;
        let path = self.path.display().to_string();
        let bytes = match std::fs::File::open(&self.path) {
            Ok(file) => {
                let mut bytes = Vec::new();
                match file.take(MAX_KEY_FILE_BYTES + 1).read_to_end(&mut bytes) {
                    Ok(_) => Some(bytes),
                    Err(e) => {
                        return KeyFileChange::Refused(format!(
                            "verdict public key file {path} cannot be read: {e}; keeping the {} key(s) in force",
                            self.keys.current().len()
                        ));
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return KeyFileChange::Refused(format!(
                    "verdict public key file {path} cannot be read: {e}; keeping the {} key(s) in force",
                    self.keys.current().len()
                ));
            }
        };
        let digest = bytes
            .as_deref()
            .map(|b| <[u8; 32]>::from(Sha256::digest(b)));
        if self.seen == Some(digest) {
            return KeyFileChange::Unchanged;
        }
        self.seen = Some(digest);
        let in_force = self.keys.current().len();
        let Some(bytes) = bytes else {
            return if in_force == 0 {
                KeyFileChange::Refused(format!(
                    "verdict public key file {path} does not exist: no verdict is trusted until it does (the Secret stellaops-verdict-signing)"
                ))
            } else {
                KeyFileChange::Refused(format!(
                    "verdict public key file {path} is gone; keeping the {in_force} key(s) in force (to revoke a key, remove it from the file)"
                ))
            };
        };
        if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
            return KeyFileChange::Refused(format!(
                "verdict public key file {path} is larger than {MAX_KEY_FILE_BYTES} bytes; keeping the {in_force} key(s) in force"
            ));
        }
        let parsed = std::str::from_utf8(&bytes)
            .map_err(|_| "is not text".to_string())
            .and_then(|text| VerdictKeys::from_pem_bundle(text).map_err(|e| e.to_string()))
            .and_then(|keys| {
                if keys.is_empty() {
                    Err("holds no PEM public key".into())
                } else {
                    Ok(keys)
                }
            });
        match parsed {
            Ok(keys) => {
                let ids = keys.ids();
                self.keys.replace(keys);
                KeyFileChange::Loaded(ids)
            }
            Err(why) => KeyFileChange::Refused(format!(
                "verdict public key file {path} {why}; keeping the {in_force} key(s) in force"
            )),
        }
    }
}
