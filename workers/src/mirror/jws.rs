//! Detached signatures on `bundle.json`.
//!
//! `bundle.json.jws` is a detached JWS (RFC 7515 appendix F) with `alg: ES256`:
//! `BASE64URL(header) ".." BASE64URL(r || s)`, the signature covering
//! `BASE64URL(header) "." BASE64URL(bundle.json)` — or, with `"b64": false` in the
//! header (RFC 7797), `BASE64URL(header) "." bundle.json` itself. The runbook checks it
//! with `cosign verify-blob`, so a plain cosign `sign-blob` signature (base64 of an ASN.1
//! DER ECDSA signature over the file's SHA-256) in the same file is accepted too.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde_json::Value;

/// Why a signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwsError {
    /// Neither a detached JWS nor a base64 signature.
    #[error("not a detached JWS (`header..signature`) nor a base64 signature")]
    Malformed,
    /// The protected header is not base64url JSON.
    #[error("the JWS header is not base64url-encoded JSON")]
    BadHeader,
    /// Only ES256 is used by the exporters.
    #[error("unsupported JWS algorithm {0:?}: expected ES256")]
    Algorithm(String),
    /// A critical header parameter we do not understand.
    #[error("unsupported critical JWS header parameter {0:?}")]
    Critical(String),
    /// The signature does not match the payload and key.
    #[error("the signature does not match bundle.json and the given key")]
    Mismatch,
    /// The key file is not a PEM P-256 public key.
    #[error("the key is not a PEM ECDSA P-256 public key")]
    BadKey,
}

/// Read a PEM (SubjectPublicKeyInfo) P-256 public key, as `cosign generate-key-pair` writes.
pub fn public_key_from_pem(pem: &str) -> Result<VerifyingKey, JwsError> {
    VerifyingKey::from_public_key_pem(pem.trim()).map_err(|_| JwsError::BadKey)
}

/// Sign `payload` as a detached ES256 JWS with key id `kid` (what an exporter publishes).
pub fn sign_detached(key: &SigningKey, kid: &str, payload: &[u8]) -> String {
    let header = serde_json::json!({"alg": "ES256", "kid": kid, "typ": "JOSE"});
    let header = URL_SAFE_NO_PAD.encode(header.to_string());
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload));
    let signature: Signature = key.sign(input.as_bytes());
    format!("{header}..{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// Check `signature_file` (a detached JWS or a cosign base64 signature) over `payload`
/// with `key`. Returns the JWS `kid`, if there is one.
pub fn verify_detached(
    signature_file: &str,
    payload: &[u8],
    key: &VerifyingKey,
) -> Result<Option<String>, JwsError> {
    let text = signature_file.trim();
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() != 3 {
        // A cosign `sign-blob` signature: base64 DER over SHA-256 of the payload.
        let der = STANDARD.decode(text).map_err(|_| JwsError::Malformed)?;
        let signature = DerSignature::from_bytes(&der).map_err(|_| JwsError::Malformed)?;
        return key
            .verify(payload, &signature)
            .map(|()| None)
            .map_err(|_| JwsError::Mismatch);
    }
    let (header_b64, embedded, signature_b64) = (parts[0], parts[1], parts[2]);
    let header: Value = URL_SAFE_NO_PAD
        .decode(header_b64)
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .filter(Value::is_object)
        .ok_or(JwsError::BadHeader)?;
    let alg = header["alg"].as_str().unwrap_or_default();
    if alg != "ES256" {
        return Err(JwsError::Algorithm(alg.to_string()));
    }
    let encoded_payload = header["b64"].as_bool().unwrap_or(true);
    if let Some(critical) = header["crit"].as_array() {
        for name in critical {
            if name.as_str() != Some("b64") {
                return Err(JwsError::Critical(name.to_string()));
            }
        }
    }
    let mut input = format!("{header_b64}.").into_bytes();
    if encoded_payload {
        // A JWS that embeds its payload must embed exactly this one.
        let b64 = URL_SAFE_NO_PAD.encode(payload);
        if !embedded.is_empty() && embedded != b64 {
            return Err(JwsError::Mismatch);
        }
        input.extend_from_slice(b64.as_bytes());
    } else {
        if !embedded.is_empty() {
            return Err(JwsError::Malformed);
        }
        input.extend_from_slice(payload);
    }
    let raw = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| JwsError::Malformed)?;
    let signature = Signature::from_slice(&raw).map_err(|_| JwsError::Malformed)?;
    key.verify(&input, &signature)
        .map_err(|_| JwsError::Mismatch)?;
    Ok(header["kid"].as_str().map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::DecodePrivateKey;

    fn key() -> SigningKey {
        let (private, _) = stellaops_federation::dsse::generate_key_pair();
        SigningKey::from_pkcs8_pem(&private).expect("generated key")
    }

    #[test]
    fn detached_jws_round_trips_and_any_changed_byte_is_refused() {
        let signer = key();
        let bundle = br#"{"advisories":[1,2,3]}"#;
        let jws = sign_detached(&signer, "mirror-2026", bundle);
        assert!(jws.contains(".."), "detached form: {jws}");
        let public = *signer.verifying_key();
        assert_eq!(
            verify_detached(&jws, bundle, &public),
            Ok(Some("mirror-2026".into()))
        );
        let mut tampered = bundle.to_vec();
        tampered[5] ^= 1;
        assert_eq!(
            verify_detached(&jws, &tampered, &public),
            Err(JwsError::Mismatch)
        );
        assert_eq!(
            verify_detached(&jws, bundle, key().verifying_key()),
            Err(JwsError::Mismatch)
        );
    }

    #[test]
    fn unencoded_payload_and_cosign_signatures_are_understood() {
        let signer = key();
        let bundle = b"{\"x\":1}";
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","b64":false,"crit":["b64"]}"#);
        let mut input = format!("{header}.").into_bytes();
        input.extend_from_slice(bundle);
        let signature: Signature = signer.sign(&input);
        let jws = format!("{header}..{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()));
        assert_eq!(
            verify_detached(&jws, bundle, signer.verifying_key()),
            Ok(None)
        );

        let der: DerSignature = signer.sign(bundle);
        let cosign = STANDARD.encode(der.as_bytes());
        assert_eq!(
            verify_detached(&cosign, bundle, signer.verifying_key()),
            Ok(None)
        );
        assert_eq!(
            verify_detached(&cosign, b"{\"x\":2}", signer.verifying_key()),
            Err(JwsError::Mismatch)
        );
    }

    #[test]
    fn other_algorithms_and_garbage_are_refused_with_a_reason() {
        let signer = key();
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
        assert_eq!(
            verify_detached(&format!("{header}.."), b"x", signer.verifying_key()),
            Err(JwsError::Algorithm("none".into()))
        );
        assert_eq!(
            verify_detached("a.b", b"x", signer.verifying_key()),
            Err(JwsError::Malformed)
        );
        assert_eq!(
            verify_detached("!!.x.y", b"x", signer.verifying_key()),
            Err(JwsError::BadHeader)
        );
        assert_eq!(public_key_from_pem("nope").unwrap_err(), JwsError::BadKey);
    }
}
