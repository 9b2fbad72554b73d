//! Sealed layer-cache fragments: what the scanner found in one layer is reused by later
//! scans only when the scanner itself wrote it.
//!
//! A fragment object (`scanner/layers/<hex>/sbom.cdx.json.zst`, compressed by the caller) is
//! one header line of JSON, then the fragment's bytes. The header binds the bytes to the
//! layer digest and the analyzer version and carries an HMAC-SHA256 over all three, keyed by
//! a [`FragmentKey`] derived from the verdict signing key, which exists only in the platform
//! namespace (docs/security.md, "Layer-cache fragments"). [`FragmentKey::open`] refuses an
//! object that anything else wrote or changed: the caller analyses the layer again.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::attestation::{VerdictSigner, pae};

/// The type the MAC's pre-authentication encoding names (binding layer and analyzer).
pub const FRAGMENT_TYPE: &str = "application/vnd.stella-ops.layer-fragment.v1+json";
/// Label of the key derivation: the fragment key is HMAC-SHA256(verdict key, this).
const DERIVATION_LABEL: &[u8] = b"stella-ops.org/layer-fragment-key/v1";
/// Largest header line read.
const MAX_HEADER: usize = 4096;

/// The key fragments are sealed and checked with. Only a holder of the verdict signing key
/// can make it, so a fragment that opens was written by a platform scan worker.
#[derive(Clone)]
pub struct FragmentKey {
    key: [u8; 32],
    id: String,
}

/// Only the id: the key never reaches a log.
impl std::fmt::Debug for FragmentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FragmentKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The header line of a fragment object.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Header {
    /// [`FRAGMENT_TYPE`].
    #[serde(rename = "type")]
    type_: String,
    /// The layer digest (`sha256:<hex>`) the fragment describes.
    layer: String,
    /// The analyzer version that made it.
    analyzer: u32,
    /// Id of the verdict key the MAC key was derived from (its public key's SHA-256).
    keyid: String,
    /// Hex HMAC-SHA256 over [`pae`] of the type with layer and analyzer, and the bytes.
    mac: String,
}

/// What the analysis of image manifest `manifest_digest` (its layers stacked, the Usage
/// view worked out; `scanner/images/<hex>/analysis.v<N>.json.zst`) is sealed for, in place
/// of a layer digest: a form no layer digest takes, so neither object passes for the other.
pub fn image_subject(manifest_digest: &str) -> String {
    format!("image {manifest_digest}")
}

/// Why a fragment object is not used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FragmentRefusal {
    /// Made by the same key for an older (or newer) analyzer: analysed again, not an attack.
    #[error("was made by analyzer version {0}")]
    Stale(u32),
    /// Anything else: written or changed by something other than the scanner, by another
    /// key (a rotation), or for another layer.
    #[error("{0}")]
    Refused(String),
}

impl FragmentKey {
    /// The fragment key of the verdict signing key `signer`.
    pub fn derive(signer: &VerdictSigner) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(signer.secret_bytes().as_slice())
            .expect("HMAC takes any key length");
        mac.update(DERIVATION_LABEL);
        FragmentKey {
            key: mac.finalize().into_bytes().into(),
            id: signer.key_id().to_string(),
        }
    }

    /// Id of the verdict key this key comes from (what logs name).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn mac(&self, layer: &str, analyzer: u32, bytes: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(&pae(
            &format!("{FRAGMENT_TYPE}; layer={layer}; analyzer={analyzer}"),
            bytes,
        ));
        mac
    }

    /// The object for the fragment `bytes` of `layer` made by analyzer version `analyzer`.
    pub fn seal(&self, layer: &str, analyzer: u32, bytes: &[u8]) -> Vec<u8> {
        let header = Header {
            type_: FRAGMENT_TYPE.into(),
            layer: layer.into(),
            analyzer,
            keyid: self.id.clone(),
            mac: hex::encode(self.mac(layer, analyzer, bytes).finalize().into_bytes()),
        };
        let mut out = serde_json::to_vec(&header).expect("a header serializes");
        out.push(b'\n');
        out.extend_from_slice(bytes);
        out
    }

    /// The fragment bytes of `object`, when this key sealed it for `layer` and analyzer
    /// version `analyzer`.
    pub fn open<'a>(
        &self,
        layer: &str,
        analyzer: u32,
        object: &'a [u8],
    ) -> Result<&'a [u8], FragmentRefusal> {
        let refuse = |why: &str| FragmentRefusal::Refused(why.to_string());
        let Some(newline) = object.iter().take(MAX_HEADER).position(|b| *b == b'\n') else {
            return Err(refuse(
                "has no seal (written by something other than the scanner, or before fragments were sealed)",
            ));
        };
        let header: Header = serde_json::from_slice(&object[..newline])
            .map_err(|_| refuse("has no seal (written by something other than the scanner, or before fragments were sealed)"))?;
        let bytes = &object[newline + 1..];
        if header.type_ != FRAGMENT_TYPE {
            return Err(refuse(&format!("is sealed as {:?}", header.type_)));
        }
        if header.keyid != self.id {
            return Err(refuse(&format!(
                "is sealed by key {}, not the current key {} (rotated, or forged)",
                header.keyid, self.id
            )));
        }
        let expected =
            hex::decode(&header.mac).map_err(|_| refuse("has a seal that is not hex"))?;
        self.mac(&header.layer, header.analyzer, bytes)
            .verify_slice(&expected)
            .map_err(|_| {
                refuse(&format!(
                    "does not match its seal by key {} (changed after the scanner wrote it)",
                    self.id
                ))
            })?;
        if header.layer != layer {
            return Err(refuse(&format!(
                "is sealed for layer {}, not {layer} (copied from another layer)",
                header.layer
            )));
        }
        if header.analyzer != analyzer {
            return Err(FragmentRefusal::Stale(header.analyzer));
        }
        Ok(bytes)
    }
}
