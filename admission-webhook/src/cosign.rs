//! Cosign signatures as cosign stores them: an OCI manifest tagged `sha256-<hex>.sig` in the
//! image's repository, one layer per signature holding the "simple signing" payload, the
//! base64 ECDSA signature of that payload in the layer's
//! `dev.cosignproject.cosign/signature` annotation.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::Signature;
use p256::ecdsa::signature::Verifier;
use serde_json::{Value, json};

use crate::policy::TrustedKey;

/// Annotation holding a layer's signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// `critical.type` of an image signature payload.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";

/// The tag cosign stores the signatures of `digest` under (`sha256-<hex>.sig`).
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// One signature layer of a signature manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureLayer {
    /// Digest of the payload blob.
    pub payload_digest: String,
    /// Base64 signature from the annotation.
    pub signature: String,
}

/// The signature layers of a `.sig` manifest (layers of another media type are ignored).
pub fn signature_layers(manifest: &[u8]) -> Result<Vec<SignatureLayer>, String> {
    let manifest: Value =
        serde_json::from_slice(manifest).map_err(|e| format!("signature manifest: {e}"))?;
    let layers = manifest["layers"]
        .as_array()
        .ok_or("signature manifest has no layers")?;
    Ok(layers
        .iter()
        .filter(|l| l["mediaType"] == SIMPLE_SIGNING_MEDIA_TYPE)
        .filter_map(|l| {
            Some(SignatureLayer {
                payload_digest: l["digest"].as_str()?.to_string(),
                signature: l["annotations"][SIGNATURE_ANNOTATION].as_str()?.to_string(),
            })
        })
        .collect())
}

/// The simple-signing payload cosign signs for `digest` pushed as `reference`.
pub fn payload(reference: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": PAYLOAD_TYPE,
        },
        "optional": null,
    }))
    .unwrap_or_default()
}

/// Verify one signature: the payload must be signed by one of `keys` and name `digest`.
/// Returns the fingerprint of the key that signed.
pub fn verify(
    payload: &[u8],
    signature_b64: &str,
    digest: &str,
    keys: &[TrustedKey],
) -> Result<String, String> {
    let raw = STANDARD
        .decode(signature_b64.trim())
        .map_err(|_| "signature annotation is not base64".to_string())?;
    let signature = Signature::from_der(&raw)
        .or_else(|_| Signature::from_slice(&raw))
        .map_err(|_| "signature is not an ECDSA P-256 signature".to_string())?;
    let signer = keys
        .iter()
        .find(|k| k.key.verify(payload, &signature).is_ok())
        .ok_or("not signed by any trusted key".to_string())?;
    let claims: Value =
        serde_json::from_slice(payload).map_err(|e| format!("signed payload is not JSON: {e}"))?;
    if claims["critical"]["type"] != PAYLOAD_TYPE {
        return Err("signed payload is not a cosign image signature".into());
    }
    let signed_digest = claims["critical"]["image"]["docker-manifest-digest"]
        .as_str()
        .unwrap_or_default();
    if signed_digest != digest {
        return Err(format!(
            "signature is for {signed_digest}, not this image's digest"
        ));
    }
    Ok(signer.fingerprint.clone())
}
