//! Sigstore bundles (`application/vnd.dev.sigstore.bundle+json;version=0.1|0.2` and
//! `application/vnd.dev.sigstore.bundle.v0.3+json`), verified offline: the signing
//! certificate (v0.3 `certificate`, or the first of an older bundle's
//! `x509CertificateChain`) or a public-key hint (keyed), the signed content (a
//! `messageSignature` over the artifact's SHA-256, or a `dsseEnvelope` signed over its PAE),
//! and each Rekor entry in `tlogEntries` (Rekor v1, or v2 with its Ed25519 checkpoints):
//! its signed entry timestamp (`inclusionPromise`) and/or its RFC 6962 inclusion proof
//! checked against a checkpoint (a signed note) signed by the log's key from the trusted
//! root, and its `canonicalizedBody` describing this very signature; and its RFC 3161
//! timestamps (timestamp.rs). The certificate checks (chain at the signed time, SCT, issuer, identity) are
//! keyless.rs's.
//!
//! The rule for the log (docs/zastava.md): an entry counts when everything it carries
//! verifies and it carries at least a valid SET or a valid inclusion proof with a valid
//! checkpoint. Only a SET signs the integrated time; without one the certificate is checked
//! at the current time (as without any entry), which a short-lived Fulcio certificate fails.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use rsa::traits::PublicKeyParts as _;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256, Sha384};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::keyless::{self, Authority, EcKey, Hash, TransparencyLog, TrustedRoot};
use crate::keys::{PublicKey, TrustedKey};
use crate::policy::SignatureCheck;

/// Media types of the bundles this verifier reads.
pub const BUNDLE_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
];
/// The predicate type of cosign 3's image signature (a DSSE in-toto statement whose subject
/// is the image's manifest digest).
pub const SIGN_PREDICATE_TYPE: &str = "https://sigstore.dev/cosign/sign/v1";
/// The DSSE payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// Largest bundle accepted (an attestation may carry an SBOM).
pub const MAX_BUNDLE_BYTES: usize = 16 << 20;
const MAX_TLOG_ENTRIES: usize = 8;
/// An audit path of a tree of 2^64 leaves has 64 hashes.
const MAX_PROOF_HASHES: usize = 64;
const MAX_CHECKPOINT_BYTES: usize = 16 << 10;

/// A parsed bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// Its media type (one of [`BUNDLE_MEDIA_TYPES`]).
    pub media_type: String,
    /// Who signed.
    pub signer: Signer,
    /// Its transparency log entries.
    pub entries: Vec<TlogEntry>,
    /// Its RFC 3161 timestamp responses (DER), each stamping the signature.
    pub timestamps: Vec<Vec<u8>>,
    /// What it signs.
    pub content: Content,
}

/// The verification material naming the signer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signer {
    /// A DER signing certificate (keyless).
    Certificate(Vec<u8>),
    /// A hint naming a key (keyed); the policy's keys are tried.
    PublicKey(String),
}

/// One transparency log entry of a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogEntry {
    /// The entry's (global) log index, as the SET signs it.
    pub log_index: i64,
    /// The log's ID: SHA-256 of its DER public key.
    pub log_id: Vec<u8>,
    /// `hashedrekord`, `dsse`…
    pub kind: String,
    /// `0.0.1`…
    pub version: String,
    /// When the log integrated it (signed by the SET only).
    pub integrated_time: Option<i64>,
    /// The SET.
    pub signed_entry_timestamp: Option<Vec<u8>>,
    /// The inclusion proof.
    pub inclusion_proof: Option<InclusionProof>,
    /// The entry as the log stores it (the Merkle leaf).
    pub body: Vec<u8>,
}

/// An RFC 6962 inclusion proof of an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InclusionProof {
    /// The leaf's index in this tree (the shard's, for a sharded log).
    pub log_index: u64,
    /// The tree's root hash.
    pub root_hash: [u8; 32],
    /// The tree's size.
    pub tree_size: u64,
    /// The audit path, lowest level first.
    pub hashes: Vec<[u8; 32]>,
    /// The signed note of the tree head.
    pub checkpoint: Option<String>,
}

impl Content {
    /// The signature bytes: what an RFC 3161 timestamp of the bundle stamps.
    pub fn signature(&self) -> &[u8] {
        match self {
            Content::Message { signature, .. } | Content::Dsse { signature, .. } => signature,
        }
    }
}

/// What a bundle signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// A signature over an artifact given by its SHA-256.
    Message {
        /// The artifact's SHA-256.
        digest: Vec<u8>,
        /// DER (or r‖s) ECDSA signature over it.
        signature: Vec<u8>,
    },
    /// A DSSE envelope with one signature.
    Dsse {
        /// `payloadType`.
        payload_type: String,
        /// The payload bytes.
        payload: Vec<u8>,
        /// The envelope's signature over the PAE.
        signature: Vec<u8>,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Int {
    Text(String),
    Number(i64),
}

fn int(value: Option<&Int>, what: &str) -> Result<i64, String> {
    // proto3 JSON writes int64 as a string and leaves zero out.
    match value {
        None => Ok(0),
        Some(Int::Number(n)) => Ok(*n),
        Some(Int::Text(text)) => text
            .parse()
            .map_err(|_| format!("{what} {text:?} is not an integer")),
    }
}

fn unsigned(value: Option<&Int>, what: &str) -> Result<u64, String> {
    u64::try_from(int(value, what)?).map_err(|_| format!("{what} is negative"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BundleDocument {
    media_type: String,
    verification_material: MaterialDocument,
    #[serde(default)]
    message_signature: Option<MessageDocument>,
    #[serde(default)]
    dsse_envelope: Option<EnvelopeDocument>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MaterialDocument {
    #[serde(default)]
    certificate: Option<RawBytes>,
    #[serde(default)]
    x509_certificate_chain: Option<ChainDocument>,
    #[serde(default)]
    public_key: Option<HintDocument>,
    #[serde(default)]
    tlog_entries: Vec<EntryDocument>,
    #[serde(default)]
    timestamp_verification_data: Option<TimestampDataDocument>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimestampDataDocument {
    #[serde(default)]
    rfc3161_timestamps: Vec<SignedTimestampDocument>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignedTimestampDocument {
    signed_timestamp: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBytes {
    raw_bytes: String,
}

#[derive(Deserialize)]
struct ChainDocument {
    #[serde(default)]
    certificates: Vec<RawBytes>,
}

#[derive(Deserialize)]
struct HintDocument {
    #[serde(default)]
    hint: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntryDocument {
    #[serde(default)]
    log_index: Option<Int>,
    log_id: KeyIdDocument,
    kind_version: KindVersionDocument,
    #[serde(default)]
    integrated_time: Option<Int>,
    #[serde(default)]
    inclusion_promise: Option<PromiseDocument>,
    #[serde(default)]
    inclusion_proof: Option<ProofDocument>,
    canonicalized_body: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyIdDocument {
    key_id: String,
}

#[derive(Deserialize)]
struct KindVersionDocument {
    kind: String,
    version: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromiseDocument {
    signed_entry_timestamp: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProofDocument {
    #[serde(default)]
    log_index: Option<Int>,
    root_hash: String,
    #[serde(default)]
    tree_size: Option<Int>,
    #[serde(default)]
    hashes: Vec<String>,
    #[serde(default)]
    checkpoint: Option<CheckpointDocument>,
}

#[derive(Deserialize)]
struct CheckpointDocument {
    envelope: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageDocument {
    #[serde(default)]
    message_digest: Option<DigestDocument>,
    signature: String,
}

#[derive(Deserialize)]
struct DigestDocument {
    algorithm: String,
    digest: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeDocument {
    payload: String,
    payload_type: String,
    #[serde(default)]
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

fn hash32(text: &str, what: &str) -> Result<[u8; 32], String> {
    keyless::base64(text, what)?
        .try_into()
        .map_err(|_| format!("{what} is not a 32-byte SHA-256 hash"))
}

/// Parse a bundle; every field used later must be well formed here.
pub fn parse_bundle(bytes: &[u8]) -> Result<Bundle, String> {
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(format!(
            "the Sigstore bundle is {} bytes, more than the {MAX_BUNDLE_BYTES} accepted",
            bytes.len()
        ));
    }
    let document: BundleDocument =
        serde_json::from_slice(bytes).map_err(|e| format!("not a Sigstore bundle (JSON): {e}"))?;
    if !BUNDLE_MEDIA_TYPES.contains(&document.media_type.as_str()) {
        return Err(format!(
            "the bundle's mediaType {:?} is not one of {}",
            document.media_type,
            BUNDLE_MEDIA_TYPES.join(", ")
        ));
    }
    let material = &document.verification_material;
    let signer = match (
        &material.certificate,
        &material.x509_certificate_chain,
        &material.public_key,
    ) {
        (Some(certificate), _, _) => Signer::Certificate(keyless::base64(
            &certificate.raw_bytes,
            "the bundle's certificate",
        )?),
        (None, Some(chain), _) => {
            // The first certificate of the chain is the signing one; CA certificates a
            // bundle carries are not trusted (the trusted root holds those).
            let first = chain
                .certificates
                .first()
                .ok_or("the bundle's x509CertificateChain is empty")?;
            Signer::Certificate(keyless::base64(
                &first.raw_bytes,
                "the bundle's signing certificate",
            )?)
        }
        (None, None, Some(key)) => Signer::PublicKey(key.hint.clone()),
        (None, None, None) => {
            return Err("the bundle's verificationMaterial has no certificate, \
                        x509CertificateChain or publicKey"
                .into());
        }
    };
    if material.tlog_entries.len() > MAX_TLOG_ENTRIES {
        return Err(format!(
            "the bundle has {} tlog entries, more than the {MAX_TLOG_ENTRIES} accepted",
            material.tlog_entries.len()
        ));
    }
    let mut entries = Vec::new();
    for (i, entry) in material.tlog_entries.iter().enumerate() {
        let what = |field: &str| format!("tlog entry {}: {field}", i + 1);
        let inclusion_proof = match &entry.inclusion_proof {
            None => None,
            Some(proof) => {
                if proof.hashes.len() > MAX_PROOF_HASHES {
                    return Err(what("the inclusion proof has too many hashes"));
                }
                Some(InclusionProof {
                    log_index: unsigned(
                        proof.log_index.as_ref(),
                        &what("inclusionProof.logIndex"),
                    )?,
                    root_hash: hash32(&proof.root_hash, &what("inclusionProof.rootHash"))?,
                    tree_size: unsigned(
                        proof.tree_size.as_ref(),
                        &what("inclusionProof.treeSize"),
                    )?,
                    hashes: proof
                        .hashes
                        .iter()
                        .map(|h| hash32(h, &what("an inclusion proof hash")))
                        .collect::<Result<_, _>>()?,
                    checkpoint: proof.checkpoint.as_ref().map(|c| c.envelope.clone()),
                })
            }
        };
        entries.push(TlogEntry {
            log_index: int(entry.log_index.as_ref(), &what("logIndex"))?,
            log_id: keyless::base64(&entry.log_id.key_id, &what("logId.keyId"))?,
            kind: entry.kind_version.kind.clone(),
            version: entry.kind_version.version.clone(),
            integrated_time: match &entry.integrated_time {
                None => None,
                Some(time) => Some(int(Some(time), &what("integratedTime"))?),
            },
            signed_entry_timestamp: entry
                .inclusion_promise
                .as_ref()
                .map(|p| keyless::base64(&p.signed_entry_timestamp, &what("signedEntryTimestamp")))
                .transpose()?,
            inclusion_proof,
            body: keyless::base64(&entry.canonicalized_body, &what("canonicalizedBody"))?,
        });
    }
    let stamped = material
        .timestamp_verification_data
        .as_ref()
        .map(|t| t.rfc3161_timestamps.as_slice())
        .unwrap_or_default();
    if stamped.len() > crate::timestamp::MAX_TIMESTAMPS {
        return Err(format!(
            "the bundle carries {} RFC 3161 timestamps, more than the {} accepted",
            stamped.len(),
            crate::timestamp::MAX_TIMESTAMPS
        ));
    }
    let mut timestamps: Vec<Vec<u8>> = Vec::new();
    for (i, stamp) in stamped.iter().enumerate() {
        let der = keyless::base64(
            &stamp.signed_timestamp,
            &format!("RFC 3161 timestamp {}", i + 1),
        )?;
        if timestamps.contains(&der) {
            return Err(format!("RFC 3161 timestamp {} is there twice", i + 1));
        }
        timestamps.push(der);
    }
    let content = match (&document.message_signature, &document.dsse_envelope) {
        (Some(message), None) => {
            let digest = message
                .message_digest
                .as_ref()
                .ok_or("the bundle's messageSignature has no messageDigest")?;
            if digest.algorithm != "SHA2_256" {
                return Err(format!(
                    "the bundle's messageDigest uses {}, not SHA2_256",
                    digest.algorithm
                ));
            }
            Content::Message {
                digest: hash32(&digest.digest, "the bundle's messageDigest")?.to_vec(),
                signature: keyless::base64(&message.signature, "the bundle's signature")?,
            }
        }
        (None, Some(envelope)) => {
            let [signature] = envelope.signatures.as_slice() else {
                return Err(format!(
                    "the bundle's DSSE envelope has {} signatures, not one",
                    envelope.signatures.len()
                ));
            };
            Content::Dsse {
                payload_type: envelope.payload_type.clone(),
                payload: keyless::base64(&envelope.payload, "the DSSE payload")?,
                signature: keyless::base64(&signature.sig, "the DSSE signature")?,
            }
        }
        _ => {
            return Err(
                "the bundle must hold exactly one of messageSignature and dsseEnvelope".into(),
            );
        }
    };
    Ok(Bundle {
        media_type: document.media_type,
        signer,
        entries,
        timestamps,
        content,
    })
}

/// RFC 6962 leaf hash: SHA-256(0x00 ‖ leaf).
pub fn leaf_hash(leaf: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(leaf);
    hasher.finalize().into()
}

fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root hash an inclusion proof leads to (RFC 9162 §2.1.3.2): `leaf` at `index` of a
/// tree of `size` leaves, `proof` lowest level first. A proof of the wrong length for the
/// index and size is an error, not a different root.
pub fn root_from_inclusion_proof(
    index: u64,
    size: u64,
    leaf: [u8; 32],
    proof: &[[u8; 32]],
) -> Result<[u8; 32], String> {
    if index >= size {
        return Err(format!(
            "the inclusion proof's index {index} is outside its tree of {size} leaves"
        ));
    }
    let (mut f, mut s) = (index, size - 1);
    let mut root = leaf;
    for hash in proof {
        if s == 0 {
            return Err(format!(
                "the inclusion proof has more hashes than a tree of {size} leaves needs"
            ));
        }
        if f & 1 == 1 || f == s {
            root = node_hash(hash, &root);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            root = node_hash(&root, hash);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(format!(
            "the inclusion proof has fewer hashes than a tree of {size} leaves needs"
        ));
    }
    Ok(root)
}

/// A tree head as a checkpoint states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The origin line (the log's name and shard).
    pub origin: String,
    /// The tree size.
    pub tree_size: u64,
    /// The root hash.
    pub root_hash: Vec<u8>,
}

/// One signature line of a signed note: the signer's name, its 4-byte key hint and the
/// signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// The name after the em dash.
    pub name: String,
    /// The first four bytes of the key's ID.
    pub key_hint: [u8; 4],
    /// The signature (DER ECDSA for Rekor).
    pub signature: Vec<u8>,
}

/// Parse a checkpoint (a signed note: the origin, the tree size and the base64 root hash on
/// lines of their own, optional further lines, a blank line, then lines
/// `— <name> <base64(key hint ‖ signature)>`). Returns the tree head, the note text the
/// signatures sign (everything up to and including the newline before the blank line) and
/// the signatures.
pub fn parse_checkpoint(text: &str) -> Result<(Checkpoint, &str, Vec<NoteSignature>), String> {
    if text.len() > MAX_CHECKPOINT_BYTES {
        return Err("the checkpoint is too large".into());
    }
    let split = text
        .find("\n\n")
        .ok_or("the checkpoint is not a signed note (no blank line before its signatures)")?;
    let (note, signatures) = (&text[..split + 1], &text[split + 2..]);
    let mut lines = note.lines();
    let origin = lines
        .next()
        .filter(|l| !l.is_empty())
        .ok_or("the checkpoint has no origin line")?;
    let tree_size = lines
        .next()
        .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|l| l.parse::<u64>().ok())
        .ok_or("the checkpoint's second line is not a tree size")?;
    let root_hash = lines
        .next()
        .and_then(|l| STANDARD.decode(l).ok())
        .filter(|h| h.len() == 32)
        .ok_or("the checkpoint's third line is not a base64 SHA-256 root hash")?;
    if signatures.is_empty() || !signatures.ends_with('\n') {
        return Err("the checkpoint's signature lines are missing or unterminated".into());
    }
    let mut parsed = Vec::new();
    for line in signatures.split_terminator('\n') {
        let (name, signature) = line
            .strip_prefix("\u{2014} ")
            .and_then(|rest| rest.split_once(' '))
            .ok_or("a checkpoint signature line is not `— <name> <signature>`")?;
        let raw = STANDARD
            .decode(signature)
            .map_err(|_| "a checkpoint signature is not base64")?;
        let (Some(hint), Some(signature)) = (raw.get(..4), raw.get(4..)) else {
            return Err("a checkpoint signature is too short".into());
        };
        if signature.is_empty() {
            return Err("a checkpoint signature is too short".into());
        }
        parsed.push(NoteSignature {
            name: name.to_string(),
            key_hint: hint
                .try_into()
                .map_err(|_| "a checkpoint key hint is not 4 bytes")?,
            signature: signature.to_vec(),
        });
    }
    Ok((
        Checkpoint {
            origin: origin.to_string(),
            tree_size,
            root_hash,
        },
        note,
        parsed,
    ))
}

/// Verify a checkpoint ([`parse_checkpoint`]) with `log`'s key: a signature whose key hint
/// is the start of the log's ID must verify (ECDSA SHA-256) over the note text.
pub fn verify_checkpoint(text: &str, log: &TransparencyLog) -> Result<Checkpoint, String> {
    let (head, note, signatures) = parse_checkpoint(text)?;
    let log_id = hex::decode(&log.log_id).map_err(|_| "the log's ID is not hex")?;
    let hint = log_id.get(..4).ok_or("the log's ID is too short")?;
    let mut hinted = false;
    for signature in &signatures {
        if signature.key_hint != hint {
            continue;
        }
        hinted = true;
        if log
            .key
            .verifies(Hash::Sha256, note.as_bytes(), &signature.signature)
        {
            return Ok(head);
        }
    }
    Err(if hinted {
        "the checkpoint's signature does not verify with the log's key".into()
    } else {
        format!(
            "the checkpoint carries no signature by the log (key hint {})",
            hex::encode(hint)
        )
    })
}

/// How a log entry was verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryVerdict {
    /// The integrated time, when a verified SET signs it.
    pub signed_time: Option<i64>,
    /// What was verified (for messages and logs).
    pub how: String,
}

/// Verify a log entry against `root`: the log is one of the root's; a SET, when present,
/// verifies (and the log's key was trusted at the integrated time); an inclusion proof,
/// when present, leads from the body's leaf hash to its root hash, which a checkpoint
/// signed by the log states for the same tree size. At least one of the two is required.
/// The body is checked against the signature by the caller ([`check_body`]).
pub fn verify_entry(entry: &TlogEntry, root: &TrustedRoot) -> Result<EntryVerdict, String> {
    let log_id = hex::encode(&entry.log_id);
    let log = root
        .tlogs
        .iter()
        .find(|log| log.log_id.eq_ignore_ascii_case(&log_id))
        .ok_or_else(|| {
            format!("the entry is from log {log_id}, which the trusted root does not list")
        })?;
    let mut how = Vec::new();
    let mut signed_time = None;
    if let Some(set) = &entry.signed_entry_timestamp {
        let time = entry
            .integrated_time
            .ok_or("the entry has a signed entry timestamp but no integratedTime")?;
        let message = keyless::set_message(
            &STANDARD.encode(&entry.body),
            time,
            &log_id,
            entry.log_index,
        );
        if !log.key.verifies(Hash::Sha256, message.as_bytes(), set) {
            return Err(
                "the signed entry timestamp (inclusionPromise) does not verify with the log's key"
                    .into(),
            );
        }
        if !log.valid_for.contains(time) {
            return Err(format!(
                "the log's key is not trusted at the entry's time {}",
                keyless::time(time)
            ));
        }
        signed_time = Some(time);
        how.push("signed entry timestamp".to_string());
    }
    if let Some(proof) = &entry.inclusion_proof {
        let checkpoint = proof.checkpoint.as_deref().ok_or(
            "the inclusion proof has no checkpoint (a root hash nobody signed proves nothing)",
        )?;
        let computed = root_from_inclusion_proof(
            proof.log_index,
            proof.tree_size,
            leaf_hash(&entry.body),
            &proof.hashes,
        )?;
        if computed != proof.root_hash {
            return Err(format!(
                "the inclusion proof leads to root hash {}, not its rootHash {}",
                hex::encode(computed),
                hex::encode(proof.root_hash)
            ));
        }
        let head = verify_checkpoint(checkpoint, log)?;
        if head.tree_size != proof.tree_size || head.root_hash != proof.root_hash {
            return Err(format!(
                "the checkpoint signs a tree of {} leaves with root {}, not the proof's {} with {}",
                head.tree_size,
                hex::encode(&head.root_hash),
                proof.tree_size,
                hex::encode(proof.root_hash)
            ));
        }
        how.push(format!(
            "inclusion proof (leaf {} of {}, checkpoint {:?})",
            proof.log_index, proof.tree_size, head.origin
        ));
    }
    if how.is_empty() {
        return Err(
            "the entry has neither a signed entry timestamp (inclusionPromise) nor an inclusion proof"
                .into(),
        );
    }
    Ok(EntryVerdict {
        signed_time,
        how: how.join(" and "),
    })
}

/// Who the log entry must name as the signer.
#[derive(Clone, Copy, Debug)]
pub enum SignerRef<'a> {
    /// This DER certificate.
    Certificate(&'a [u8]),
    /// This DER SubjectPublicKeyInfo.
    Key(&'a [u8]),
}

fn pem_blocks(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let text: String = pem[start..stop].split_whitespace().collect();
    STANDARD.decode(text).ok()
}

/// Whether a log entry's base64 PEM `verifier`/`publicKey` names `signer`.
fn names_signer(content: &Value, signer: SignerRef<'_>) -> bool {
    let Some(pem) = content
        .as_str()
        .and_then(|b64| STANDARD.decode(b64).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
    else {
        return false;
    };
    match signer {
        SignerRef::Certificate(der) => pem_blocks(&pem, "CERTIFICATE").is_some_and(|d| d == der),
        SignerRef::Key(spki) => pem_blocks(&pem, "PUBLIC KEY").is_some_and(|d| d == spki),
    }
}

fn is_sha256_of(hash: &Value, expected: &[u8]) -> bool {
    hash["algorithm"] == "sha256"
        && hash["value"]
            .as_str()
            .is_some_and(|v| v.eq_ignore_ascii_case(&hex::encode(expected)))
}

/// Check that a log entry's body records this content and signer: a `hashedrekord` 0.0.1
/// with the message digest, signature and signer; a `dsse` 0.0.1 with the payload's hash
/// and the envelope's signature by the signer; an `intoto` 0.0.2 (what cosign's older
/// `attest` logged) with the payload's hash, the payload type and the envelope's signature
/// by the signer; a Rekor v2 `hashedrekord` 0.0.2 with the message digest (or the PAE's)
/// and the signature by the signer. The envelope hash of `dsse` and `intoto` entries is not
/// checked: it is over a JSON serialization the bundle does not keep.
pub fn check_body(
    entry: &TlogEntry,
    content: &Content,
    signer: SignerRef<'_>,
) -> Result<(), String> {
    let body: Value = serde_json::from_slice(&entry.body)
        .map_err(|e| format!("the entry's body is not JSON: {e}"))?;
    if body["kind"] != entry.kind.as_str() || body["apiVersion"] != entry.version.as_str() {
        return Err(format!(
            "the entry's body is a {} {}, not the {} {} its kindVersion says",
            body["kind"], body["apiVersion"], entry.kind, entry.version
        ));
    }
    let spec = &body["spec"];
    match (entry.kind.as_str(), entry.version.as_str(), content) {
        ("hashedrekord", "0.0.1", Content::Message { digest, signature }) => {
            if !is_sha256_of(&spec["data"]["hash"], digest) {
                return Err("the log entry is for another artifact (its hash differs)".into());
            }
            let logged = spec["signature"]["content"]
                .as_str()
                .and_then(|s| STANDARD.decode(s).ok());
            if logged.as_deref() != Some(signature.as_slice()) {
                return Err("the log entry records another signature".into());
            }
            if !names_signer(&spec["signature"]["publicKey"]["content"], signer) {
                return Err("the log entry records another signer".into());
            }
            Ok(())
        }
        (
            "dsse",
            "0.0.1",
            Content::Dsse {
                payload, signature, ..
            },
        ) => {
            if !is_sha256_of(&spec["payloadHash"], &Sha256::digest(payload)) {
                return Err("the log entry is for another DSSE payload (its hash differs)".into());
            }
            let logged = spec["signatures"].as_array().cloned().unwrap_or_default();
            let [logged] = logged.as_slice() else {
                return Err(format!(
                    "the log entry records {} DSSE signatures, not the envelope's one",
                    logged.len()
                ));
            };
            let logged_signature = logged["signature"]
                .as_str()
                .and_then(|s| STANDARD.decode(s).ok());
            if logged_signature.as_deref() != Some(signature.as_slice()) {
                return Err("the log entry records another DSSE signature".into());
            }
            if !names_signer(&logged["verifier"], signer) {
                return Err("the log entry records another signer".into());
            }
            Ok(())
        }
        (
            "intoto",
            "0.0.2",
            Content::Dsse {
                payload_type,
                payload,
                signature,
            },
        ) => {
            let content = &spec["content"];
            if !is_sha256_of(&content["payloadHash"], &Sha256::digest(payload)) {
                return Err("the log entry is for another DSSE payload (its hash differs)".into());
            }
            let envelope = &content["envelope"];
            if envelope["payloadType"] != payload_type.as_str() {
                return Err(format!(
                    "the log entry records payload type {}, not the envelope's {payload_type:?}",
                    envelope["payloadType"]
                ));
            }
            let logged = envelope["signatures"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let [logged] = logged.as_slice() else {
                return Err(format!(
                    "the log entry records {} DSSE signatures, not the envelope's one",
                    logged.len()
                ));
            };
            // intoto 0.0.2 keeps the envelope's base64 `sig` text, base64-encoded again.
            let logged_signature = logged["sig"]
                .as_str()
                .and_then(|s| STANDARD.decode(s).ok())
                .and_then(|text| STANDARD.decode(text.trim_ascii()).ok());
            if logged_signature.as_deref() != Some(signature.as_slice()) {
                return Err("the log entry records another DSSE signature".into());
            }
            if !names_signer(&logged["publicKey"], signer) {
                return Err("the log entry records another signer".into());
            }
            Ok(())
        }
        // Rekor v2 logs both kinds of content as a hashedrekord 0.0.2 (rekor-v2 spec
        // 6.1.4): the digest of the artifact, or of the DSSE PAE hashed as the signer's
        // key details say, and the signature with its verifier.
        ("hashedrekord", "0.0.2", content) => {
            let record = &spec["hashedRekordV002"];
            let (key_details, natural) = signer_key_details(signer)?;
            let (algorithm, digest) = match content {
                Content::Message { digest, .. } => ("SHA2_256", digest.clone()),
                Content::Dsse {
                    payload_type,
                    payload,
                    ..
                } => {
                    let pae = crate::attestation::pae(payload_type, payload);
                    match natural {
                        Hash::Sha384 => ("SHA2_384", Sha384::digest(&pae).to_vec()),
                        _ => ("SHA2_256", Sha256::digest(&pae).to_vec()),
                    }
                }
            };
            let data = &record["data"];
            if data["algorithm"] != algorithm
                || data["digest"]
                    .as_str()
                    .and_then(|d| STANDARD.decode(d).ok())
                    != Some(digest)
            {
                return Err("the log entry is for another artifact (its digest differs)".into());
            }
            let logged = &record["signature"];
            let logged_signature = logged["content"]
                .as_str()
                .and_then(|s| STANDARD.decode(s).ok());
            if logged_signature.as_deref() != Some(content.signature()) {
                return Err("the log entry records another signature".into());
            }
            let verifier = &logged["verifier"];
            let named = match signer {
                SignerRef::Certificate(der) => verifier["x509Certificate"]["rawBytes"]
                    .as_str()
                    .and_then(|b| STANDARD.decode(b).ok())
                    .is_some_and(|d| d == der),
                SignerRef::Key(spki) => verifier["publicKey"]["rawBytes"]
                    .as_str()
                    .and_then(|b| STANDARD.decode(b).ok())
                    .is_some_and(|d| d == spki),
            };
            if !named || verifier["keyDetails"] != key_details {
                return Err("the log entry records another signer".into());
            }
            Ok(())
        }
        (kind, version, _) => Err(format!(
            "a {kind} {version} log entry cannot record this bundle's {}",
            match content {
                Content::Message { .. } => "message signature",
                Content::Dsse { .. } => "DSSE envelope",
            }
        )),
    }
}

/// The Sigstore key details of a signer's key (`PKIX_ECDSA_P256_SHA_256`, …) and its hash.
fn signer_key_details(signer: SignerRef<'_>) -> Result<(&'static str, Hash), String> {
    let spki = match signer {
        SignerRef::Certificate(der) => {
            let (_, certificate) = X509Certificate::from_der(der)
                .map_err(|e| format!("the signing certificate does not parse: {e}"))?;
            certificate.public_key().raw.to_vec()
        }
        SignerRef::Key(spki) => spki.to_vec(),
    };
    match PublicKey::from_spki(&spki)? {
        PublicKey::Ecdsa(EcKey::P256(_)) => Ok(("PKIX_ECDSA_P256_SHA_256", Hash::Sha256)),
        PublicKey::Ecdsa(EcKey::P384(_)) => Ok(("PKIX_ECDSA_P384_SHA_384", Hash::Sha384)),
        PublicKey::Ecdsa(EcKey::P521(_)) => Ok(("PKIX_ECDSA_P521_SHA_512", Hash::Sha512)),
        PublicKey::Rsa(key) => match key.n().bits() {
            2048 => Ok(("PKIX_RSA_PKCS1V15_2048_SHA256", Hash::Sha256)),
            3072 => Ok(("PKIX_RSA_PKCS1V15_3072_SHA256", Hash::Sha256)),
            4096 => Ok(("PKIX_RSA_PKCS1V15_4096_SHA256", Hash::Sha256)),
            bits => Err(format!(
                "Sigstore's key details name no RSA key of {bits} bits (2048, 3072 or 4096)"
            )),
        },
        PublicKey::Ed25519(_) => {
            Err("an Ed25519 signer in a hashedrekord 0.0.2 entry is not supported".into())
        }
    }
}

/// What a verified bundle signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signed {
    /// An artifact with this SHA-256.
    Digest(Vec<u8>),
    /// A DSSE payload.
    Payload {
        /// Its type.
        payload_type: String,
        /// Its bytes.
        payload: Vec<u8>,
    },
}

/// A verified bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// `subject (issuer)` of a keyless signer, a key fingerprint of a keyed one.
    pub signer: String,
    /// What it signed.
    pub signed: Signed,
    /// How its log entries were verified (empty: none checked).
    pub tlog: Vec<String>,
    /// The times its RFC 3161 timestamps stamp, verified (empty: it carries none).
    pub stamped: Vec<i64>,
}

fn verify_content(content: &Content, key: &PublicKey) -> Result<Signed, String> {
    match content {
        Content::Message { digest, signature } => {
            if !key.verifies_digest(digest, signature)? {
                return Err(
                    "the bundle's message signature does not verify with the signer's key".into(),
                );
            }
            Ok(Signed::Digest(digest.clone()))
        }
        Content::Dsse {
            payload_type,
            payload,
            signature,
        } => {
            if !key.verifies(&crate::attestation::pae(payload_type, payload), signature) {
                return Err(
                    "the bundle's DSSE signature does not verify with the signer's key".into(),
                );
            }
            Ok(Signed::Payload {
                payload_type: payload_type.clone(),
                payload: payload.clone(),
            })
        }
    }
}

/// Verify a keyless bundle against `authority`: the content signed by the certificate's
/// key, every log entry verified ([`verify_entry`]) and recording this signature, at least
/// one when the authority requires the log, every RFC 3161 timestamp verified against the
/// trusted root's timestamp authorities ([`crate::timestamp::verify`]), and the certificate
/// checked at every signed time (a SET's integrated time, a timestamp's `genTime`), or now
/// when nothing signs a time.
pub fn verify_keyless(
    bundle: &Bundle,
    authority: &Authority,
    now: DateTime<Utc>,
) -> Result<Verified, String> {
    let Signer::Certificate(der) = &bundle.signer else {
        return Err("the bundle names a public key, not a signing certificate".into());
    };
    let (_, leaf) = X509Certificate::from_der(der)
        .map_err(|e| format!("the bundle's signing certificate does not parse: {e}"))?;
    let key = PublicKey::from_spki(leaf.public_key().raw)
        .map_err(|e| format!("the bundle's signing certificate: {e}"))?;
    let signed = verify_content(&bundle.content, &key)?;
    if bundle.entries.is_empty() && authority.require_tlog {
        return Err("the bundle has no transparency log entry (the authority requires one)".into());
    }
    if bundle.timestamps.is_empty() && authority.require_timestamp {
        return Err(keyless::NO_TIMESTAMP.into());
    }
    let mut signed_times = Vec::new();
    let mut tlog = Vec::new();
    for (i, entry) in bundle.entries.iter().enumerate() {
        let verdict = verify_entry(entry, &authority.root)
            .and_then(|v| {
                check_body(entry, &bundle.content, SignerRef::Certificate(der)).map(|()| v)
            })
            .map_err(|e| format!("tlog entry {}: {e}", i + 1))?;
        signed_times.extend(verdict.signed_time);
        tlog.push(verdict.how);
    }
    // Like a log entry, a timestamp the bundle carries must verify, not merely be ignored.
    let mut stamped = Vec::new();
    for (i, response) in bundle.timestamps.iter().enumerate() {
        let at = crate::timestamp::verify(
            response,
            bundle.content.signature(),
            &authority.root.timestamp_authorities,
        )
        .map_err(|e| format!("RFC 3161 timestamp {}: {e}", i + 1))?;
        stamped.push(at);
    }
    signed_times.extend(&stamped);
    let unsigned = signed_times.is_empty();
    let signer =
        keyless::check_certificate_at(&leaf, authority, &signed_times, now).map_err(|e| {
            if unsigned && !bundle.entries.is_empty() {
                format!(
                    "no log entry has a signed entry timestamp and the bundle no RFC 3161 \
                     timestamp, so the integrated time is unsigned and the certificate is \
                     checked now: {e}"
                )
            } else {
                e
            }
        })?;
    Ok(Verified {
        signer,
        signed,
        tlog,
        stamped,
    })
}

/// Verify a keyed bundle (a `publicKey` hint) with one of `keys`: the content signed by it.
/// With `keys_log` (`publicKeysTlog`) it must carry a log entry, and every entry must
/// verify against that root ([`verify_entry`]) and record this content and key; without,
/// its log entries are not read (as for keyed signatures in cosign's `.sig` layout).
pub fn verify_keyed(
    bundle: &Bundle,
    keys: &[TrustedKey],
    keys_log: Option<&TrustedRoot>,
) -> Result<Verified, String> {
    if !matches!(bundle.signer, Signer::PublicKey(_)) {
        return Err("the bundle carries a certificate, not a public-key hint".into());
    }
    let mut last = "the policy trusts no key".to_string();
    let Some((key, signed)) = keys.iter().find_map(|key| {
        verify_content(&bundle.content, &key.key)
            .map_err(|e| last = e)
            .ok()
            .map(|signed| (key, signed))
    }) else {
        return Err(format!("not signed by any trusted key: {last}"));
    };
    let mut tlog = Vec::new();
    if let Some(root) = keys_log {
        if bundle.entries.is_empty() {
            return Err(
                "the bundle has no transparency log entry (publicKeysTlog requires one)".into(),
            );
        }
        let spki = key.key.spki_der();
        for (i, entry) in bundle.entries.iter().enumerate() {
            let verdict = verify_entry(entry, root)
                .and_then(|v| check_body(entry, &bundle.content, SignerRef::Key(&spki)).map(|()| v))
                .map_err(|e| format!("tlog entry {}: {e}", i + 1))?;
            tlog.push(verdict.how);
        }
    }
    Ok(Verified {
        signer: key.fingerprint.clone(),
        signed,
        tlog,
        stamped: Vec::new(),
    })
}

/// Whether `signed` is a signature of the image `digest`: the message digest is the
/// manifest's, or the DSSE payload is cosign's image-signature statement naming it.
pub fn signs_image(signed: &Signed, digest: &str) -> Result<(), String> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("{digest} is not a sha256 digest"))?;
    match signed {
        Signed::Digest(signed) if hex::encode(signed).eq_ignore_ascii_case(hex) => Ok(()),
        Signed::Digest(signed) => Err(format!(
            "the bundle signs sha256:{}, not this image's digest",
            hex::encode(signed)
        )),
        Signed::Payload {
            payload_type,
            payload,
        } => {
            if payload_type != IN_TOTO_PAYLOAD_TYPE {
                return Err(format!(
                    "the bundle's DSSE payload is {payload_type:?}, not an in-toto statement"
                ));
            }
            let statement: Value = serde_json::from_slice(payload)
                .map_err(|e| format!("the bundle's statement is not JSON: {e}"))?;
            if statement["predicateType"] != SIGN_PREDICATE_TYPE {
                return Err(format!(
                    "the bundle's statement has predicate type {}, not an image signature ({SIGN_PREDICATE_TYPE})",
                    statement["predicateType"]
                ));
            }
            let subjects = statement["subject"].as_array().cloned().unwrap_or_default();
            if subjects.iter().any(|s| {
                s["digest"]["sha256"]
                    .as_str()
                    .is_some_and(|d| d.eq_ignore_ascii_case(hex))
            }) {
                Ok(())
            } else {
                Err("the bundle's statement names other digests, not this image's".into())
            }
        }
    }
}

/// Verify a bundle against everything a policy trusts: its keys (a keyed bundle), then each
/// keyless authority, with `accept` judging what it signed (e.g. [`signs_image`], or an
/// attestation's predicate checks). Returns what accepted it (a key fingerprint, or
/// `keyless:<subject> (<issuer>)`) with what was signed, or every reason it was refused.
pub fn verify_with_check(
    check: &SignatureCheck,
    bytes: &[u8],
    now: DateTime<Utc>,
    accept: impl Fn(&Signed) -> Result<(), String>,
) -> Result<(String, Signed), String> {
    verify_parsed(
        &parse_bundle(bytes)?,
        (&check.keys, check.keys_log.as_deref()),
        &check.keyless,
        now,
        accept,
    )
}

/// [`verify_with_check`] of a parsed bundle, trusting `keys` (with the root whose logs must
/// record their signatures, if any) and `keyless` (an attestation requirement's signers,
/// which may be fewer than the policy's).
pub fn verify_parsed(
    bundle: &Bundle,
    (keys, keys_log): (&[TrustedKey], Option<&TrustedRoot>),
    keyless: &[Authority],
    now: DateTime<Utc>,
    accept: impl Fn(&Signed) -> Result<(), String>,
) -> Result<(String, Signed), String> {
    if let Signer::PublicKey(_) = bundle.signer {
        if keys.is_empty() {
            return Err("a keyed bundle, and the policy trusts no key".into());
        }
        let verified = verify_keyed(bundle, keys, keys_log)?;
        accept(&verified.signed)?;
        return Ok((verified.signer, verified.signed));
    }
    let mut refused = Vec::new();
    for (i, authority) in keyless.iter().enumerate() {
        match verify_keyless(bundle, authority, now).and_then(|v| {
            accept(&v.signed)?;
            Ok(v)
        }) {
            Ok(verified) => return Ok((format!("keyless:{}", verified.signer), verified.signed)),
            Err(e) => refused.push(format!("keyless authority {}: {e}", i + 1)),
        }
    }
    if refused.is_empty() {
        refused.push("a keyless bundle, and the policy has no keyless authority".into());
    }
    Err(refused.join("; "))
}

/// Verify a bundle as the signature of the image `digest` ([`verify_with_check`] with
/// [`signs_image`]). Returns what accepted it, or every reason it was refused.
pub fn verify_image_signature(
    check: &SignatureCheck,
    bytes: &[u8],
    digest: &str,
    now: DateTime<Utc>,
) -> Result<String, String> {
    verify_with_check(check, bytes, now, |signed| signs_image(signed, digest)).map(|(by, _)| by)
}
