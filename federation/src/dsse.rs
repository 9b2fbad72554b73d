//! DSSE envelopes signed with ES256 (ECDSA P-256, SHA-256, ASN.1 DER signatures).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use serde::{Deserialize, Serialize};

/// Payload type of federation bundle signatures.
pub const PAYLOAD_TYPE: &str = "application/stellaops.federation.bundle+json";

/// A DSSE envelope, in the seed's field names.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// What the payload is.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Base64 of the signed bytes.
    pub payload: String,
    /// One or more signatures.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of an envelope.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    /// `sha256:<hex>` of the signer's public key (SubjectPublicKeyInfo DER).
    #[serde(rename = "keyId")]
    pub key_id: String,
    /// Always `ES256`.
    pub algorithm: String,
    /// Base64 of the DER ECDSA signature over the PAE.
    pub signature: String,
}

/// Key problems.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The PEM does not hold a usable P-256 key.
    #[error("not a PEM ECDSA P-256 {0} key")]
    BadKey(&'static str),
}

// DSSE's pre-authentication encoding and key ids are the platform's one implementation,
// shared with the signed verdicts.
pub use stellaops_store::attestation::{key_id, pae};

/// A signing key.
pub struct Signer {
    key: SigningKey,
    key_id: String,
}

impl Signer {
    /// From a PEM private key (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let key = SigningKey::from_pkcs8_pem(pem)
            .or_else(|_| p256::SecretKey::from_sec1_pem(pem).map(SigningKey::from))
            .map_err(|_| KeyError::BadKey("private"))?;
        Ok(Self::from_key(key))
    }

    /// From a key.
    pub fn from_key(key: SigningKey) -> Self {
        let key_id = key_id(key.verifying_key());
        Signer { key, key_id }
    }

    /// The public half of this signer's key.
    pub fn verifying_key(&self) -> VerifyingKey {
        *self.key.verifying_key()
    }

    /// This signer's key id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Sign `payload`. ECDSA nonces are derived from the key and message (RFC 6979), so
    /// the same payload gives the same envelope.
    pub fn sign(&self, payload: &[u8]) -> Envelope {
        let signature: DerSignature = self.key.sign(&pae(PAYLOAD_TYPE, payload));
        Envelope {
            payload_type: PAYLOAD_TYPE.to_string(),
            payload: STANDARD.encode(payload),
            signatures: vec![EnvelopeSignature {
                key_id: self.key_id.clone(),
                algorithm: "ES256".to_string(),
                signature: STANDARD.encode(signature.as_bytes()),
            }],
        }
    }
}

/// Public keys trusted to sign bundles, each for one site or (unscoped) for every site.
#[derive(Clone, Debug, Default)]
pub struct TrustedKeys {
    /// (key id, key, the site it may sign for; `None`: any site).
    keys: Vec<(String, VerifyingKey, Option<String>)>,
}

impl TrustedKeys {
    /// From PEM public keys (`PUBLIC KEY`), trusted for every site.
    pub fn from_pems<'a>(pems: impl IntoIterator<Item = &'a str>) -> Result<Self, KeyError> {
        let mut trusted = TrustedKeys::default();
        for pem in pems {
            trusted.push_pem(pem, None)?;
        }
        Ok(trusted)
    }

    /// Add a PEM public key, trusted for `site` only (or for every site with `None`).
    pub fn push_pem(&mut self, pem: &str, site: Option<&str>) -> Result<(), KeyError> {
        let key = VerifyingKey::from_public_key_pem(pem.trim())
            .map_err(|_| KeyError::BadKey("public"))?;
        self.keys
            .push((key_id(&key), key, site.map(str::to_string)));
        Ok(())
    }

    /// Add a key trusted for every site.
    pub fn push(&mut self, key: VerifyingKey) {
        self.keys.push((key_id(&key), key, None));
    }

    /// Add a key trusted for `site` only.
    pub fn push_for_site(&mut self, key: VerifyingKey, site: &str) {
        self.keys.push((key_id(&key), key, Some(site.to_string())));
    }

    /// The keys that may sign for `site`: its own and the unscoped ones.
    pub fn for_site(&self, site: &str) -> TrustedKeys {
        TrustedKeys {
            keys: self
                .keys
                .iter()
                .filter(|(_, _, scope)| scope.as_deref().is_none_or(|s| s == site))
                .cloned()
                .collect(),
        }
    }

    /// These keys less those whose id is in `key_ids`.
    pub fn without(&self, key_ids: &[&str]) -> TrustedKeys {
        TrustedKeys {
            keys: self
                .keys
                .iter()
                .filter(|(id, _, _)| !key_ids.contains(&id.as_str()))
                .cloned()
                .collect(),
        }
    }

    /// Every key's id, in the order added.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(|(id, _, _)| id.as_str()).collect()
    }

    /// Key ids trusted for every site (a caller may want to warn about them).
    pub fn unscoped(&self) -> Vec<&str> {
        self.keys
            .iter()
            .filter(|(_, _, scope)| scope.is_none())
            .map(|(id, _, _)| id.as_str())
            .collect()
    }

    /// True when no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key id of the first signature on `envelope` that a trusted key verifies over
    /// `payload`, or `None`. Scopes are not looked at: narrow with [`Self::for_site`].
    pub fn verify(&self, envelope: &Envelope, payload: &[u8]) -> Option<String> {
        let message = pae(&envelope.payload_type, payload);
        envelope.signatures.iter().find_map(|sig| {
            let bytes = STANDARD.decode(&sig.signature).ok()?;
            let signature = p256::ecdsa::Signature::from_der(&bytes).ok()?;
            self.keys
                .iter()
                .filter(|(id, _, _)| sig.key_id.is_empty() || *id == sig.key_id)
                .find(|(_, key, _)| key.verify(&message, &signature).is_ok())
                .map(|(id, _, _)| id.clone())
        })
    }
}

/// A new ES256 key pair as (PKCS#8 private key PEM, public key PEM).
pub fn generate_key_pair() -> (String, String) {
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
