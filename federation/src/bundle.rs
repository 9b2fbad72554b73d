//! The federation bundle: a zstd-compressed tar holding `MANIFEST.json`,
//! `canonicals.ndjson`, `edges.ndjson`, `deletions.ndjson` and an optional
//! `SIGNATURE.json`. See docs/federation-bundle.md for the exact construction.
//!
//! Integrity: the manifest pins the SHA-256 and size of every data member; the DSSE
//! signature covers the manifest bytes; and the tar must be the canonical serialisation
//! of its members (fixed order, headers and padding), so no byte of the archive can
//! change without detection.

use std::collections::BTreeMap;
use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use stellaops_store::advisories::{CanonicalAdvisory, Deletion, SourceEdge, sha256_hex};

use crate::dsse::{Envelope, PAYLOAD_TYPE, Signer, TrustedKeys};

/// Format version written into every manifest.
pub const FORMAT_VERSION: &str = "feedser-bundle/1.0";
/// Members in archive order.
pub const MEMBERS: [&str; 5] = [
    "MANIFEST.json",
    "canonicals.ndjson",
    "edges.ndjson",
    "deletions.ndjson",
    "SIGNATURE.json",
];
const DATA_MEMBERS: [&str; 3] = ["canonicals.ndjson", "edges.ndjson", "deletions.ndjson"];

/// Item counts of a bundle.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    /// Canonical advisories.
    pub canonicals: u64,
    /// Source edges.
    pub edges: u64,
    /// Deletions.
    pub deletions: u64,
}

impl Counts {
    /// All items.
    pub fn total(&self) -> u64 {
        self.canonicals + self.edges + self.deletions
    }
}

/// Digest and size of one member.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MemberDigest {
    /// `sha256:<hex>` of the member's bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// `MANIFEST.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `feedser-bundle/1.0`.
    pub version: String,
    /// The exporting site.
    pub site_id: String,
    /// Cursor the bundle starts after; `null` for a full export.
    pub since_cursor: Option<String>,
    /// Cursor of the last change in the bundle.
    pub cursor: String,
    /// Item counts.
    pub counts: Counts,
    /// Digest of each data member.
    pub files: BTreeMap<String, MemberDigest>,
}

/// Why a bundle was refused. Messages start with the seed's wording.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Over the size limit.
    #[error("Bundle too large: {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Bundle size.
        size: u64,
        /// Limit.
        max: u64,
    },
    /// Not a valid archive, or a member does not match the manifest.
    #[error("Bundle is corrupt: {0}")]
    Corrupt(String),
    /// A format version we do not read.
    #[error("Unsupported bundle format {0:?}: expected {FORMAT_VERSION}")]
    UnsupportedVersion(String),
    /// Signature required but absent.
    #[error("Signature verification failed: the bundle is not signed")]
    Unsigned,
    /// Signature present but not by a trusted key, or not over this manifest.
    #[error("Signature verification failed: {0}")]
    BadSignature(String),
}

/// An opened, integrity-checked bundle (the signature is checked separately).
#[derive(Clone, Debug)]
pub struct OpenedBundle {
    /// `sha256:<hex>` of the compressed bytes.
    pub bundle_hash: String,
    /// Size of the compressed bytes.
    pub size: u64,
    /// The manifest.
    pub manifest: Manifest,
    /// The manifest bytes (what the signature covers).
    pub manifest_bytes: Vec<u8>,
    /// Canonicals in file order.
    pub canonicals: Vec<CanonicalAdvisory>,
    /// Edges in file order.
    pub edges: Vec<SourceEdge>,
    /// Deletions in file order.
    pub deletions: Vec<Deletion>,
    /// The DSSE envelope, when signed.
    pub signature: Option<Envelope>,
}

fn ndjson<T: Serialize>(items: &[T]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        serde_json::to_writer(&mut out, item).expect("items serialize");
        out.push(b'\n');
    }
    out
}

/// The canonical tar of `members` (name, bytes), in the given order.
fn canonical_tar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in members {
        let mut header = tar::Header::new_ustar();
        header.set_path(name).expect("member names are short");
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, *bytes).expect("writing to memory");
    }
    builder.into_inner().expect("writing to memory")
}

/// What goes into a bundle.
pub struct Contents<'a> {
    /// The exporting site.
    pub site_id: &'a str,
    /// Cursor the bundle starts after; `None` for a full export.
    pub since_cursor: Option<String>,
    /// Cursor of the last change in the bundle.
    pub cursor: String,
    /// Canonicals, in change order.
    pub canonicals: &'a [CanonicalAdvisory],
    /// Edges, in change order.
    pub edges: &'a [SourceEdge],
    /// Deletions, in change order.
    pub deletions: &'a [Deletion],
}

/// Write a bundle. The same inputs (and key) give byte-identical output.
pub fn write(contents: &Contents<'_>, signer: Option<&Signer>, compression_level: i32) -> Vec<u8> {
    let members = NdjsonMembers {
        canonicals: ndjson(contents.canonicals),
        edges: ndjson(contents.edges),
        deletions: ndjson(contents.deletions),
        counts: Counts {
            canonicals: contents.canonicals.len() as u64,
            edges: contents.edges.len() as u64,
            deletions: contents.deletions.len() as u64,
        },
    };
    write_members(
        contents.site_id,
        contents.since_cursor.clone(),
        contents.cursor.clone(),
        members,
        signer,
        compression_level,
    )
}

/// The three data members, already serialised one compact JSON object per line.
pub struct NdjsonMembers {
    /// `canonicals.ndjson`.
    pub canonicals: Vec<u8>,
    /// `edges.ndjson`.
    pub edges: Vec<u8>,
    /// `deletions.ndjson`.
    pub deletions: Vec<u8>,
    /// Lines in each.
    pub counts: Counts,
}

/// Write a bundle from serialised members (what export streams out of the store).
pub fn write_members(
    site_id: &str,
    since_cursor: Option<String>,
    cursor: String,
    members: NdjsonMembers,
    signer: Option<&Signer>,
    compression_level: i32,
) -> Vec<u8> {
    let NdjsonMembers {
        canonicals,
        edges,
        deletions,
        counts,
    } = members;
    let data = [canonicals, edges, deletions];
    let files = DATA_MEMBERS
        .iter()
        .zip(&data)
        .map(|(name, bytes)| {
            (
                name.to_string(),
                MemberDigest {
                    sha256: sha256_hex(bytes),
                    size: bytes.len() as u64,
                },
            )
        })
        .collect();
    let manifest = Manifest {
        version: FORMAT_VERSION.to_string(),
        site_id: site_id.to_string(),
        since_cursor,
        cursor,
        counts,
        files,
    };
    let mut manifest_bytes = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
    manifest_bytes.push(b'\n');
    let signature = signer.map(|s| {
        let mut bytes =
            serde_json::to_vec_pretty(&s.sign(&manifest_bytes)).expect("envelope serializes");
        bytes.push(b'\n');
        bytes
    });
    let mut members: Vec<(&str, &[u8])> = vec![(MEMBERS[0], &manifest_bytes)];
    members.extend(
        DATA_MEMBERS
            .iter()
            .copied()
            .zip(data.iter().map(Vec::as_slice)),
    );
    if let Some(signature) = &signature {
        members.push((MEMBERS[4], signature));
    }
    let tar = canonical_tar(&members);
    zstd::bulk::compress(&tar, compression_level).expect("zstd compresses in memory")
}

fn parse_ndjson<T: serde::de::DeserializeOwned>(
    name: &str,
    bytes: &[u8],
) -> Result<Vec<T>, BundleError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| BundleError::Corrupt(format!("{name} is not UTF-8")))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| BundleError::Corrupt(format!("{name} line {}: {e}", i + 1)))
        })
        .collect()
}

/// Open and check a bundle: size limit, archive structure, canonical form, format
/// version, member digests and counts, merge hashes, and the envelope's payload.
pub fn open(bytes: &[u8], max_size: u64) -> Result<OpenedBundle, BundleError> {
    let size = bytes.len() as u64;
    if size > max_size {
        return Err(BundleError::TooLarge {
            size,
            max: max_size,
        });
    }
    let bundle_hash = sha256_hex(bytes);
    // Bound decompression so a small bomb cannot exhaust memory.
    let limit = max_size.saturating_mul(64).max(1 << 20);
    let mut tar_bytes = Vec::new();
    zstd::stream::read::Decoder::new(bytes)
        .map_err(|e| BundleError::Corrupt(format!("not zstd: {e}")))?
        .take(limit + 1)
        .read_to_end(&mut tar_bytes)
        .map_err(|e| BundleError::Corrupt(format!("zstd: {e}")))?;
    if tar_bytes.len() as u64 > limit {
        return Err(BundleError::Corrupt(format!(
            "expands to more than {limit} bytes"
        )));
    }

    let mut members: Vec<(String, Vec<u8>)> = Vec::new();
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    for entry in archive
        .entries()
        .map_err(|e| BundleError::Corrupt(format!("tar: {e}")))?
    {
        let mut entry = entry.map_err(|e| BundleError::Corrupt(format!("tar: {e}")))?;
        let name = entry
            .path()
            .map_err(|e| BundleError::Corrupt(format!("tar: {e}")))?
            .to_string_lossy()
            .into_owned();
        if !MEMBERS.contains(&name.as_str()) {
            return Err(BundleError::Corrupt(format!("unexpected member {name:?}")));
        }
        let mut content = Vec::new();
        entry
            .read_to_end(&mut content)
            .map_err(|e| BundleError::Corrupt(format!("{name}: {e}")))?;
        members.push((name, content));
    }
    let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
    let expected: &[&str] = if names.len() == 5 {
        &MEMBERS
    } else {
        &MEMBERS[..4]
    };
    if names != expected {
        return Err(BundleError::Corrupt(format!(
            "members {names:?}, expected {expected:?} in that order"
        )));
    }
    let borrowed: Vec<(&str, &[u8])> = members
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    if canonical_tar(&borrowed) != tar_bytes {
        return Err(BundleError::Corrupt(
            "archive is not in canonical form (headers or padding altered)".into(),
        ));
    }

    let member = |name: &str| {
        members
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
    };
    let manifest_bytes = member("MANIFEST.json").expect("checked above").to_vec();
    let manifest_value: serde_json::Value = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| BundleError::Corrupt(format!("MANIFEST.json: {e}")))?;
    match manifest_value.get("version").and_then(|v| v.as_str()) {
        Some(FORMAT_VERSION) => {}
        other => {
            return Err(BundleError::UnsupportedVersion(
                other.unwrap_or("none").to_string(),
            ));
        }
    }
    let manifest: Manifest = serde_json::from_value(manifest_value)
        .map_err(|e| BundleError::Corrupt(format!("MANIFEST.json: {e}")))?;
    for name in DATA_MEMBERS {
        let bytes = member(name).expect("checked above");
        let want = manifest
            .files
            .get(name)
            .ok_or_else(|| BundleError::Corrupt(format!("manifest lacks {name}")))?;
        if want.size != bytes.len() as u64 || want.sha256 != sha256_hex(bytes) {
            return Err(BundleError::Corrupt(format!(
                "{name} does not match its digest in the manifest"
            )));
        }
    }
    if manifest.files.len() != DATA_MEMBERS.len() {
        return Err(BundleError::Corrupt("manifest lists unknown files".into()));
    }
    let canonicals: Vec<CanonicalAdvisory> =
        parse_ndjson("canonicals.ndjson", member("canonicals.ndjson").unwrap())?;
    let edges: Vec<SourceEdge> = parse_ndjson("edges.ndjson", member("edges.ndjson").unwrap())?;
    let deletions: Vec<Deletion> =
        parse_ndjson("deletions.ndjson", member("deletions.ndjson").unwrap())?;
    let counts = Counts {
        canonicals: canonicals.len() as u64,
        edges: edges.len() as u64,
        deletions: deletions.len() as u64,
    };
    if counts != manifest.counts {
        return Err(BundleError::Corrupt(format!(
            "counts {:?} do not match the manifest {:?}",
            counts, manifest.counts
        )));
    }
    if let Some(bad) = canonicals
        .iter()
        .find(|c| c.merge_hash != CanonicalAdvisory::merge_hash_of(&c.vuln_id, &c.affects_key))
    {
        return Err(BundleError::Corrupt(format!(
            "canonical {} has a merge hash that does not match its identity",
            bad.merge_hash
        )));
    }
    let signature = match member("SIGNATURE.json") {
        None => None,
        Some(bytes) => {
            let envelope: Envelope = serde_json::from_slice(bytes).map_err(|e| {
                BundleError::BadSignature(format!("SIGNATURE.json is not a DSSE envelope: {e}"))
            })?;
            Some(envelope)
        }
    };
    Ok(OpenedBundle {
        bundle_hash,
        size,
        manifest,
        manifest_bytes,
        canonicals,
        edges,
        deletions,
        signature,
    })
}

impl OpenedBundle {
    /// Verify the DSSE signature against `trusted`; returns the signing key's id.
    pub fn verify_signature(&self, trusted: &TrustedKeys) -> Result<String, BundleError> {
        let envelope = self.signature.as_ref().ok_or(BundleError::Unsigned)?;
        if envelope.payload_type != PAYLOAD_TYPE {
            return Err(BundleError::BadSignature(format!(
                "payload type {:?}",
                envelope.payload_type
            )));
        }
        let payload = STANDARD
            .decode(&envelope.payload)
            .map_err(|_| BundleError::BadSignature("payload is not base64".into()))?;
        if payload != self.manifest_bytes {
            return Err(BundleError::BadSignature(
                "the signed payload is not this bundle's manifest".into(),
            ));
        }
        trusted.verify(envelope, &payload).ok_or_else(|| {
            BundleError::BadSignature("no trusted key verifies the signature (key mismatch)".into())
        })
    }
}
