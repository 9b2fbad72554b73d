//! Cosign signatures as cosign stores them: an OCI manifest in the image's repository, one
//! layer per signature holding the "simple signing" payload, the base64 ECDSA signature of
//! that payload in the layer's `dev.cosignproject.cosign/signature` annotation (and, for a
//! keyless signature, the certificate, chain and Rekor bundle in `dev.sigstore.cosign/*`
//! annotations). The manifest is found as an OCI 1.1 referrer of the image (artifact type
//! [`SIGNATURE_ARTIFACT_TYPE`]) or under the legacy tag `sha256-<hex>.sig`; attestations
//! likewise (DSSE envelope layers, legacy tag `sha256-<hex>.att`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use chrono::{DateTime, Utc};

use crate::keyless::{self, KeylessSignature};
use crate::policy::{SignatureCheck, TrustedKey};

/// Annotation holding a layer's signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// `critical.type` of an image signature payload.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";

/// Annotation holding a keyless signature's PEM signing certificate.
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// Annotation holding a keyless signature's PEM intermediate chain.
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// Annotation holding the Rekor bundle (signed entry timestamp and entry) of a signature.
pub const REKOR_BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// Annotation holding an RFC 3161 timestamp of a signature (`cosign sign
/// --timestamp-server-url`): JSON `{"SignedRFC3161Timestamp": "<base64 DER TimeStampResp>"}`.
pub const RFC3161_TIMESTAMP_ANNOTATION: &str = "dev.sigstore.cosign/rfc3161timestamp";
/// Largest timestamp annotation accepted (a response with its TSA chain is a few KiB).
const MAX_TIMESTAMP_ANNOTATION_BYTES: usize = 64 << 10;
/// Artifact type of a cosign signature manifest stored as an OCI 1.1 referrer.
pub const SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// Artifact type of a Sigstore bundle stored as an OCI 1.1 referrer (cosign's bundle spec).
pub const SIGSTORE_BUNDLE_ARTIFACT_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// Artifact type of a cosign attestation manifest stored as an OCI 1.1 referrer.
pub const ATTESTATION_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.att.v1+json";
/// Media type of a DSSE envelope layer (an attestation).
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// Annotation naming an attestation layer's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
/// Annotation naming a Sigstore bundle referrer's predicate type.
pub const BUNDLE_PREDICATE_TYPE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";

/// The tag cosign stores the signatures of `digest` under (`sha256-<hex>.sig`).
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// The tag cosign stores the attestations of `digest` under (`sha256-<hex>.att`).
pub fn attestation_tag(digest: &str) -> String {
    format!("{}.att", digest.replacen(':', "-", 1))
}

/// One signature layer of a signature manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignatureLayer {
    /// Digest of the payload blob.
    pub payload_digest: String,
    /// Base64 signature from the annotation.
    pub signature: String,
    /// PEM signing certificate (keyless), from the annotation.
    pub certificate: Option<String>,
    /// PEM chain up to the root (keyless), from the annotation.
    pub chain: Option<String>,
    /// Rekor bundle JSON, from the annotation.
    pub rekor_bundle: Option<String>,
    /// RFC 3161 timestamp annotation (JSON), from the annotation.
    pub rfc3161_timestamp: Option<String>,
}

/// The DER `TimeStampResp` of cosign's RFC 3161 timestamp annotation.
pub fn rfc3161_timestamp_response(annotation: &str) -> Result<Vec<u8>, String> {
    #[derive(serde::Deserialize)]
    struct Annotation {
        #[serde(rename = "SignedRFC3161Timestamp")]
        signed: String,
    }
    if annotation.len() > MAX_TIMESTAMP_ANNOTATION_BYTES {
        return Err(format!(
            "the {RFC3161_TIMESTAMP_ANNOTATION} annotation is larger than {} KiB",
            MAX_TIMESTAMP_ANNOTATION_BYTES >> 10
        ));
    }
    let parsed: Annotation = serde_json::from_str(annotation).map_err(|e| {
        format!("the {RFC3161_TIMESTAMP_ANNOTATION} annotation is not cosign's timestamp JSON: {e}")
    })?;
    STANDARD.decode(parsed.signed.trim()).map_err(|_| {
        format!(
            "the {RFC3161_TIMESTAMP_ANNOTATION} annotation's SignedRFC3161Timestamp is not base64"
        )
    })
}

fn layers_of(manifest: &[u8], what: &str) -> Result<Vec<Value>, String> {
    let manifest: Value =
        serde_json::from_slice(manifest).map_err(|e| format!("{what} manifest: {e}"))?;
    match manifest.get("layers") {
        Some(Value::Array(layers)) => Ok(layers.clone()),
        _ => Err(format!("{what} manifest has no layers")),
    }
}

/// The signature layers of a signature manifest (layers of another media type, and
/// layers without a digest or signature, are ignored).
pub fn signature_layers(manifest: &[u8]) -> Result<Vec<SignatureLayer>, String> {
    let layers = layers_of(manifest, "signature")?;
    Ok(layers
        .iter()
        .filter(|l| l["mediaType"] == SIMPLE_SIGNING_MEDIA_TYPE)
        .filter_map(|l| {
            let annotation = |key: &str| l["annotations"][key].as_str().map(str::to_string);
            Some(SignatureLayer {
                payload_digest: l["digest"].as_str()?.to_string(),
                signature: annotation(SIGNATURE_ANNOTATION)?,
                certificate: annotation(CERTIFICATE_ANNOTATION),
                chain: annotation(CHAIN_ANNOTATION),
                rekor_bundle: annotation(REKOR_BUNDLE_ANNOTATION),
                rfc3161_timestamp: annotation(RFC3161_TIMESTAMP_ANNOTATION),
            })
        })
        .collect())
}

/// Annotation of a Sigstore bundle referrer (manifest or layer) saying what it holds
/// (`dsse-envelope`, `message-signature`).
pub const BUNDLE_CONTENT_ANNOTATION: &str = "dev.sigstore.bundle.content";

/// The digests of the bundle layers of a Sigstore bundle referrer that may be image
/// signatures: all but those whose predicate-type annotation (on the manifest or the layer)
/// names another predicate than cosign's signature one (those are attestations).
pub fn signature_bundle_layers(manifest: &[u8]) -> Result<Vec<String>, String> {
    let document: Value =
        serde_json::from_slice(manifest).map_err(|e| format!("bundle manifest: {e}"))?;
    let is_attestation = |annotations: &Value| {
        annotations[BUNDLE_PREDICATE_TYPE_ANNOTATION]
            .as_str()
            .is_some_and(|t| t != crate::bundle::SIGN_PREDICATE_TYPE)
    };
    if is_attestation(&document["annotations"]) {
        return Ok(Vec::new());
    }
    let layers = layers_of(manifest, "bundle")?;
    Ok(layers
        .iter()
        .filter(|l| {
            l["mediaType"]
                .as_str()
                .is_some_and(|t| t.starts_with("application/vnd.dev.sigstore.bundle"))
                && !is_attestation(&l["annotations"])
        })
        .filter_map(|l| l["digest"].as_str().map(str::to_string))
        .collect())
}

/// One attestation layer: a DSSE envelope blob (cosign's `.att` layout) or a Sigstore
/// bundle blob (a bundle referrer), with the predicate type its annotation announces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttestationLayer {
    /// Media type of the blob.
    pub media_type: String,
    /// Digest of the blob.
    pub digest: String,
    /// The predicate type the annotation announces (to be checked against the statement).
    pub predicate_type: Option<String>,
    /// PEM signing certificate (keyless), from the annotation.
    pub certificate: Option<String>,
    /// PEM chain (keyless), from the annotation.
    pub chain: Option<String>,
    /// Rekor bundle JSON, from the annotation.
    pub rekor_bundle: Option<String>,
    /// RFC 3161 timestamp annotation (JSON), from the annotation.
    pub rfc3161_timestamp: Option<String>,
}

/// The attestation layers of an attestation manifest: DSSE envelopes and Sigstore bundles.
pub fn attestation_layers(manifest: &[u8]) -> Result<Vec<AttestationLayer>, String> {
    let layers = layers_of(manifest, "attestation")?;
    Ok(layers
        .iter()
        .filter_map(|l| {
            let media_type = l["mediaType"].as_str()?;
            if media_type != DSSE_MEDIA_TYPE
                && !media_type.starts_with("application/vnd.dev.sigstore.bundle")
            {
                return None;
            }
            let annotations = &l["annotations"];
            Some(AttestationLayer {
                media_type: media_type.to_string(),
                digest: l["digest"].as_str()?.to_string(),
                predicate_type: annotations[PREDICATE_TYPE_ANNOTATION]
                    .as_str()
                    .or(annotations[BUNDLE_PREDICATE_TYPE_ANNOTATION].as_str())
                    .map(str::to_string),
                certificate: annotations[CERTIFICATE_ANNOTATION]
                    .as_str()
                    .map(str::to_string),
                chain: annotations[CHAIN_ANNOTATION].as_str().map(str::to_string),
                rekor_bundle: annotations[REKOR_BUNDLE_ANNOTATION]
                    .as_str()
                    .map(str::to_string),
                rfc3161_timestamp: annotations[RFC3161_TIMESTAMP_ANNOTATION]
                    .as_str()
                    .map(str::to_string),
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

/// Verify one signature by a key: the payload must be signed by one of `keys` and name
/// `digest`. Returns the fingerprint of the key that signed.
pub fn verify(
    payload: &[u8],
    signature_b64: &str,
    digest: &str,
    keys: &[TrustedKey],
) -> Result<String, String> {
    verify_logged(
        &KeylessSignature {
            payload,
            signature_b64,
            certificate_pem: None,
            rekor_bundle: None,
            rfc3161_timestamp: None,
        },
        digest,
        keys,
        None,
    )
}

/// [`verify`], and with `keys_log` (`publicKeysTlog`) the signature's Rekor bundle
/// annotation must verify against that root and record this payload, signature and key.
pub fn verify_logged(
    signature: &KeylessSignature<'_>,
    digest: &str,
    keys: &[TrustedKey],
    keys_log: Option<&keyless::TrustedRoot>,
) -> Result<String, String> {
    let raw = STANDARD
        .decode(signature.signature_b64.trim())
        .map_err(|_| "signature annotation is not base64".to_string())?;
    let signer = crate::keys::signing_key(keys, signature.payload, &raw)?;
    check_payload(signature.payload, digest)?;
    if let Some(root) = keys_log {
        let bundle = signature
            .rekor_bundle
            .ok_or(crate::keys::NO_KEYED_LOG_ENTRY)?;
        keyless::verify_rekor_bundle(
            bundle,
            root,
            signature.payload,
            &raw,
            keyless::LoggedSigner::Key(&signer.key),
        )?;
    }
    Ok(signer.fingerprint.clone())
}

/// Check that a signed payload is a cosign image signature naming `digest`.
pub fn check_payload(payload: &[u8], digest: &str) -> Result<(), String> {
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
    Ok(())
}

/// Verify one signature against everything a policy trusts: its keys, then each keyless
/// authority. Returns what accepted it (a key fingerprint, or `keyless:<subject> (<issuer>)`),
/// or every reason it was refused.
pub fn verify_with(
    check: &SignatureCheck,
    signature: &KeylessSignature<'_>,
    digest: &str,
    now: DateTime<Utc>,
) -> Result<String, String> {
    let mut refused = Vec::new();
    if !check.keys.is_empty() {
        match verify_logged(signature, digest, &check.keys, check.keys_log.as_deref()) {
            Ok(fingerprint) => return Ok(fingerprint),
            Err(e) => refused.push(e),
        }
    }
    for (i, authority) in check.keyless.iter().enumerate() {
        let outcome = keyless::verify(signature, authority, now)
            .and_then(|identity| check_payload(signature.payload, digest).map(|()| identity));
        match outcome {
            Ok(identity) => return Ok(format!("keyless:{identity}")),
            Err(e) => refused.push(format!("keyless authority {}: {e}", i + 1)),
        }
    }
    if refused.is_empty() {
        refused.push("the policy trusts no key and no keyless authority".into());
    }
    Err(refused.join("; "))
}
