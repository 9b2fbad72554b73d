//! Public keys a policy trusts for keyed signatures: the kinds cosign and the Sigstore
//! clients sign with (ECDSA P-256 and P-384, RSA, Ed25519), read from PEM, and how a
//! signature by each is checked.

use p256::pkcs8::der::Decode as _;
use p256::pkcs8::spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};
use rsa::pkcs8::EncodePublicKey as _;
use rsa::traits::PublicKeyParts as _;
use sha2::{Digest as _, Sha256, Sha384, Sha512};

use crate::keyless::{EcKey, Hash};

/// Smallest RSA modulus accepted (NIST's floor since 2013; Sigstore's algorithm registry
/// starts there too).
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted (the registry's largest; bounds the cost of one check).
pub const MAX_RSA_BITS: usize = 4096;
/// Most PEM blocks read from one Secret value (a key list is short; this bounds the work a
/// large Secret can cause at policy compile).
pub const MAX_KEYS_PER_VALUE: usize = 256;

const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const SECP521R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// Curves and algorithms people meet that are refused, by OID, for the error message.
const NAMED_UNSUPPORTED: [(&str, &str); 4] = [
    ("1.3.132.0.10", "an EC key on secp256k1"),
    ("1.2.840.113549.1.1.10", "an RSASSA-PSS-only key"),
    ("1.3.101.113", "an Ed448 key"),
    ("1.2.840.10040.4.1", "a DSA key"),
];

/// A public key of one of the kinds a keyed signature may be made with.
#[derive(Clone, Debug)]
pub enum PublicKey {
    /// ECDSA on P-256, P-384 or P-521.
    Ecdsa(EcKey),
    /// RSA of [`MIN_RSA_BITS`] to [`MAX_RSA_BITS`] bits: PKCS #1 v1.5 signatures with
    /// SHA-256 (cosign's RSA verifier; Sigstore's `PKIX_RSA_PKCS1V15_*_SHA256`).
    Rsa(Box<rsa::RsaPublicKey>),
    /// Ed25519: signatures over the whole message (no prehash).
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl PublicKey {
    /// The key of a DER SubjectPublicKeyInfo, or why it is not one we verify with.
    pub fn from_spki(der: &[u8]) -> Result<PublicKey, String> {
        let info = SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| format!("not a DER SubjectPublicKeyInfo: {e}"))?;
        let algorithm = info.algorithm.oid;
        if algorithm == ID_EC_PUBLIC_KEY {
            let curve = info
                .algorithm
                .parameters_oid()
                .map_err(|_| "an EC key without a named curve".to_string())?;
            if curve != SECP256R1 && curve != SECP384R1 && curve != SECP521R1 {
                return Err(unsupported(curve, format!("an EC key on curve {curve}")));
            }
            return EcKey::from_spki(der).map(PublicKey::Ecdsa);
        }
        if algorithm == RSA_ENCRYPTION {
            return rsa_key(
                info.subject_public_key
                    .as_bytes()
                    .ok_or("an RSA key that is not whole bytes")?,
            );
        }
        if algorithm == ID_ED25519 {
            let raw: [u8; 32] = info
                .subject_public_key
                .as_bytes()
                .and_then(|b| b.try_into().ok())
                .ok_or("an Ed25519 key that is not 32 bytes")?;
            return ed25519_dalek::VerifyingKey::from_bytes(&raw)
                .map(PublicKey::Ed25519)
                .map_err(|_| "an Ed25519 key that is no curve point".to_string());
        }
        Err(unsupported(
            algorithm,
            format!("a key of algorithm {algorithm}"),
        ))
    }

    /// What the key is, for messages: `ECDSA P-256`, `RSA-3072`, `Ed25519`.
    pub fn describe(&self) -> String {
        match self {
            PublicKey::Ecdsa(EcKey::P256(_)) => "ECDSA P-256".into(),
            PublicKey::Ecdsa(EcKey::P384(_)) => "ECDSA P-384".into(),
            PublicKey::Ecdsa(EcKey::P521(_)) => "ECDSA P-521".into(),
            PublicKey::Rsa(key) => format!("RSA-{}", key.n().bits()),
            PublicKey::Ed25519(_) => "Ed25519".into(),
        }
    }

    /// The DER SubjectPublicKeyInfo (what fingerprints hash).
    pub fn spki_der(&self) -> Vec<u8> {
        let der = match self {
            PublicKey::Ecdsa(key) => return key.spki_der(),
            PublicKey::Rsa(key) => key.to_public_key_der(),
            PublicKey::Ed25519(key) => {
                return ed25519_spki(key.as_bytes());
            }
        };
        der.map(|d| d.as_bytes().to_vec()).unwrap_or_default()
    }

    /// Whether `signature` signs `message` as Sigstore's key details for this key say:
    /// ECDSA over the message hashed with the curve's own hash (DER or r‖s), RSA PKCS #1
    /// v1.5 over its SHA-256, Ed25519 over the message itself.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            PublicKey::Ecdsa(key) => key.verifies(key.natural_hash(), message, signature),
            PublicKey::Rsa(key) => {
                rsa_verifies_digest(key, Hash::Sha256, None, &Sha256::digest(message), signature)
            }
            PublicKey::Ed25519(key) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|s| key.verify_strict(message, &s).is_ok()),
        }
    }

    /// Whether `signature` signs an artifact of which only its SHA-256 `digest` is known
    /// (a bundle's message signature). Ed25519 signs the artifact itself, so no digest can
    /// stand in for it: an error says so.
    pub fn verifies_digest(&self, digest: &[u8], signature: &[u8]) -> Result<bool, String> {
        match self {
            PublicKey::Ecdsa(key) => Ok(key.verifies_prehash(digest, signature)),
            PublicKey::Rsa(key) => Ok(digest.len() == 32
                && rsa_verifies_digest(key, Hash::Sha256, None, digest, signature)),
            PublicKey::Ed25519(_) => Err(
                "an Ed25519 message signature covers the artifact itself, and only its digest is known"
                    .into(),
            ),
        }
    }

    /// [`PublicKey::verifies`] as cosign checks its own signatures (the `.sig` layout, bare
    /// DSSE attestations): cosign 2 signs with SHA-256 whatever the curve, so a P-384 or
    /// P-521 key's signature is also accepted over the SHA-256 of the message; an RSA key's
    /// also as its KMS signers make them ([`rsa_verifies_as_kms`]).
    pub fn verifies_as_cosign(&self, message: &[u8], signature: &[u8]) -> bool {
        self.verifies(message, signature)
            || matches!(self, PublicKey::Ecdsa(key @ (EcKey::P384(_) | EcKey::P521(_)))
                if key.verifies(Hash::Sha256, message, signature))
            || matches!(self, PublicKey::Rsa(key) if rsa_verifies_as_kms(key, message, signature))
    }

    /// Whether `signature` signs `message` by `scheme`; false when the scheme is not this
    /// key's kind.
    pub fn verifies_by(&self, scheme: SignatureScheme, message: &[u8], signature: &[u8]) -> bool {
        match (self, scheme) {
            (PublicKey::Ecdsa(key), SignatureScheme::Ecdsa(hash)) => {
                key.verifies(hash, message, signature)
            }
            (PublicKey::Rsa(key), SignatureScheme::RsaPkcs1(hash)) => {
                rsa_verifies_digest(key, hash, None, &hash.digest(message), signature)
            }
            (PublicKey::Rsa(key), SignatureScheme::RsaPss(hash, salt)) => {
                rsa_verifies_digest(key, hash, Some(salt), &hash.digest(message), signature)
            }
            (PublicKey::Ed25519(key), SignatureScheme::Ed25519) => {
                ed25519_dalek::Signature::from_slice(signature)
                    .is_ok_and(|s| key.verify_strict(message, &s).is_ok())
            }
            _ => false,
        }
    }
}

/// An RSA key from its PKCS #1 `RSAPublicKey` DER, its size checked before anything else.
fn rsa_key(pkcs1: &[u8]) -> Result<PublicKey, String> {
    let parts = rsa::pkcs1::RsaPublicKey::from_der(pkcs1)
        .map_err(|e| format!("an RSA key that does not parse: {e}"))?;
    let modulus = rsa::BigUint::from_bytes_be(parts.modulus.as_bytes());
    let bits = modulus.bits();
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(format!(
            "an RSA key of {bits} bits (from {MIN_RSA_BITS} to {MAX_RSA_BITS} are accepted)"
        ));
    }
    let exponent = rsa::BigUint::from_bytes_be(parts.public_exponent.as_bytes());
    rsa::RsaPublicKey::new(modulus, exponent)
        .map(|key| PublicKey::Rsa(Box::new(key)))
        .map_err(|e| format!("an RSA key that is not usable: {e}"))
}

/// Whether an RSA signature is one of those cosign's KMS signers make with the key specs the
/// clouds offer: PKCS #1 v1.5 or PSS (salt as long as the hash: GCP `RSA_SIGN_PSS_*`, AWS
/// `RSASSA_PSS_*`, Azure `PS256`) over SHA-256, SHA-384 or SHA-512. Each is a standard
/// scheme for the same key, so accepting any one admits nothing the key did not sign.
/// PKCS #1 v1.5 over SHA-256 is [`PublicKey::verifies`]' own and not tried again.
fn rsa_verifies_as_kms(key: &rsa::RsaPublicKey, message: &[u8], signature: &[u8]) -> bool {
    [Hash::Sha256, Hash::Sha384, Hash::Sha512]
        .into_iter()
        .any(|hash| {
            let digest = hash.digest(message);
            rsa_verifies_digest(key, hash, Some(hash.output_bytes()), &digest, signature)
                || (hash != Hash::Sha256
                    && rsa_verifies_digest(key, hash, None, &digest, signature))
        })
}

/// Whether `signature` is an RSA signature of `digest` (made with `hash`): PKCS #1 v1.5, or
/// with `pss_salt` RSASSA-PSS (MGF1 with the same hash) with a salt of that many bytes.
fn rsa_verifies_digest(
    key: &rsa::RsaPublicKey,
    hash: Hash,
    pss_salt: Option<usize>,
    digest: &[u8],
    signature: &[u8],
) -> bool {
    use rsa::{Pkcs1v15Sign, Pss};
    match (hash, pss_salt) {
        (Hash::Sha256, None) => key.verify(Pkcs1v15Sign::new::<Sha256>(), digest, signature),
        (Hash::Sha384, None) => key.verify(Pkcs1v15Sign::new::<Sha384>(), digest, signature),
        (Hash::Sha512, None) => key.verify(Pkcs1v15Sign::new::<Sha512>(), digest, signature),
        (Hash::Sha256, Some(salt)) => {
            key.verify(Pss::new_with_salt::<Sha256>(salt), digest, signature)
        }
        (Hash::Sha384, Some(salt)) => {
            key.verify(Pss::new_with_salt::<Sha384>(salt), digest, signature)
        }
        (Hash::Sha512, Some(salt)) => {
            key.verify(Pss::new_with_salt::<Sha512>(salt), digest, signature)
        }
    }
    .is_ok()
}

/// How a certificate or a CMS signer signs: the algorithm its `signatureAlgorithm` names,
/// with the hash it uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureScheme {
    /// ECDSA over the message hashed with this hash.
    Ecdsa(Hash),
    /// RSA PKCS #1 v1.5 over the message hashed with this hash.
    RsaPkcs1(Hash),
    /// RSASSA-PSS over the message hashed with this hash (MGF1 with the same hash), with a
    /// salt of this many bytes.
    RsaPss(Hash, usize),
    /// Ed25519 over the message itself.
    Ed25519,
}

/// The hash an OID names (SHA-256, SHA-384, SHA-512).
pub(crate) fn hash_named(oid: &str) -> Option<Hash> {
    match oid {
        "2.16.840.1.101.3.4.2.1" => Some(Hash::Sha256),
        "2.16.840.1.101.3.4.2.2" => Some(Hash::Sha384),
        "2.16.840.1.101.3.4.2.3" => Some(Hash::Sha512),
        _ => None,
    }
}

/// Largest PSS salt accepted (real ones are the hash's length).
const MAX_PSS_SALT: u32 = 512;

impl SignatureScheme {
    /// The scheme an AlgorithmIdentifier's OID names. `digest` is the hash a CMS signer
    /// names apart (its `digestAlgorithm`), which applies when the OID names only the key's
    /// algorithm (`rsaEncryption`, `id-ecPublicKey`, as some timestamp authorities write).
    pub fn of_oid(oid: &str, digest: Option<Hash>) -> Result<SignatureScheme, String> {
        let scheme = match oid {
            "1.2.840.10045.4.3.2" => SignatureScheme::Ecdsa(Hash::Sha256),
            "1.2.840.10045.4.3.3" => SignatureScheme::Ecdsa(Hash::Sha384),
            "1.2.840.10045.4.3.4" => SignatureScheme::Ecdsa(Hash::Sha512),
            "1.2.840.113549.1.1.11" => SignatureScheme::RsaPkcs1(Hash::Sha256),
            "1.2.840.113549.1.1.12" => SignatureScheme::RsaPkcs1(Hash::Sha384),
            "1.2.840.113549.1.1.13" => SignatureScheme::RsaPkcs1(Hash::Sha512),
            "1.3.101.112" => SignatureScheme::Ed25519,
            "1.2.840.113549.1.1.1" | "1.2.840.10045.2.1" => {
                let Some(hash) = digest else {
                    return Err(format!("algorithm {oid} names a key type without a hash"));
                };
                if oid == "1.2.840.113549.1.1.1" {
                    SignatureScheme::RsaPkcs1(hash)
                } else {
                    SignatureScheme::Ecdsa(hash)
                }
            }
            "1.2.840.113549.1.1.10" => {
                return Err(
                    "algorithm RSASSA-PSS (1.2.840.113549.1.1.10) without its parameters".into(),
                );
            }
            other => {
                return Err(format!(
                    "algorithm {other}, which is not supported (ECDSA, RSA PKCS #1 v1.5 or Ed25519 with SHA-256, SHA-384 or SHA-512)"
                ));
            }
        };
        Ok(scheme)
    }

    /// The scheme an AlgorithmIdentifier names, with RSASSA-PSS's parameters (its hash, the
    /// same hash for MGF1, the salt length, trailer 1; SHA-1 is refused); `digest` as for
    /// [`SignatureScheme::of_oid`].
    pub fn of_algorithm(
        algorithm: &x509_parser::x509::AlgorithmIdentifier<'_>,
        digest: Option<Hash>,
    ) -> Result<SignatureScheme, String> {
        use x509_parser::signature_algorithm::SignatureAlgorithm;
        let oid = algorithm.algorithm.to_id_string();
        if oid != "1.2.840.113549.1.1.10" {
            return SignatureScheme::of_oid(&oid, digest);
        }
        let Ok(SignatureAlgorithm::RSASSA_PSS(params)) = SignatureAlgorithm::try_from(algorithm)
        else {
            return Err("algorithm RSASSA-PSS with parameters that do not parse".into());
        };
        let hash = hash_named(&params.hash_algorithm_oid().to_id_string()).ok_or_else(|| {
            format!(
                "algorithm RSASSA-PSS over hash {}, which is not supported (SHA-256, SHA-384 or SHA-512)",
                params.hash_algorithm_oid().to_id_string()
            )
        })?;
        let mask = params
            .mask_gen_algorithm()
            .map_err(|_| "algorithm RSASSA-PSS with a mask generation that does not parse")?;
        if mask.mgf.to_id_string() != "1.2.840.113549.1.1.8"
            || hash_named(&mask.hash.to_id_string()) != Some(hash)
        {
            return Err(
                "algorithm RSASSA-PSS whose mask generation is not MGF1 with its own hash".into(),
            );
        }
        if params.trailer_field() != 1 || params.salt_length() > MAX_PSS_SALT {
            return Err("algorithm RSASSA-PSS with an unusual trailer or salt length".into());
        }
        Ok(SignatureScheme::RsaPss(hash, params.salt_length() as usize))
    }
}

fn unsupported(oid: ObjectIdentifier, generic: String) -> String {
    let oid = oid.to_string();
    let named = NAMED_UNSUPPORTED
        .iter()
        .find(|(id, _)| *id == oid)
        .map_or(generic, |(_, name)| name.to_string());
    format!(
        "{named}, which is not supported (ECDSA P-256, P-384 or P-521, RSA of {MIN_RSA_BITS} to {MAX_RSA_BITS} bits, Ed25519)"
    )
}

/// The SubjectPublicKeyInfo of an Ed25519 key (RFC 8410: a fixed 12-byte prefix).
fn ed25519_spki(raw: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    der.extend_from_slice(raw);
    der
}

/// A verification key with its fingerprint (first 16 hex digits of the SHA-256 of its
/// SubjectPublicKeyInfo, as people compare them).
#[derive(Clone, Debug)]
pub struct TrustedKey {
    /// Fingerprint.
    pub fingerprint: String,
    /// The key.
    pub key: PublicKey,
}

impl TrustedKey {
    /// A key with its fingerprint.
    pub fn new(key: PublicKey) -> TrustedKey {
        TrustedKey {
            fingerprint: hex::encode(Sha256::digest(key.spki_der()))[..16].to_string(),
            key,
        }
    }
}

/// The fingerprint of the first of `keys` whose signature `signature` over `message` is,
/// checked as cosign checks its own formats ([`PublicKey::verifies_as_cosign`]).
pub fn signed_by(keys: &[TrustedKey], message: &[u8], signature: &[u8]) -> Result<String, String> {
    signing_key(keys, message, signature).map(|k| k.fingerprint.clone())
}

/// The first of `keys` whose signature `signature` over `message` is ([`signed_by`]).
pub fn signing_key<'k>(
    keys: &'k [TrustedKey],
    message: &[u8],
    signature: &[u8],
) -> Result<&'k TrustedKey, String> {
    keys.iter()
        .find(|k| k.key.verifies_as_cosign(message, signature))
        .ok_or_else(|| "not signed by any trusted key".to_string())
}

/// Why a keyed signature without its log entry is refused under `publicKeysTlog`.
pub const NO_KEYED_LOG_ENTRY: &str = "no Rekor bundle (publicKeysTlog requires the signature to be logged: sign without --tlog-upload=false)";

/// Parse every `PUBLIC KEY` (SubjectPublicKeyInfo) and `RSA PUBLIC KEY` (PKCS #1) PEM block
/// in `pem` (a Secret value may hold several); text between blocks is ignored. The error
/// names the block (counted from 1) and what is wrong with it.
pub fn parse_public_keys(pem: &str) -> Result<Vec<TrustedKey>, String> {
    let mut keys = Vec::new();
    let mut rest = pem;
    let mut n = 0;
    while let Some(start) = rest.find("-----BEGIN ") {
        n += 1;
        if n > MAX_KEYS_PER_VALUE {
            return Err(format!("more than {MAX_KEYS_PER_VALUE} PEM blocks"));
        }
        let after = &rest[start + "-----BEGIN ".len()..];
        let label = after
            .split_once("-----")
            .map(|(label, _)| label)
            .filter(|label| !label.contains('\n'))
            .ok_or_else(|| format!("PEM block {n}: a BEGIN line that does not end in -----"))?;
        let end_marker = format!("-----END {label}-----");
        let Some(end) = rest[start..].find(&end_marker) else {
            return Err(format!("PEM block {n} ({label}) has no END line"));
        };
        let block = &rest[start..start + end + end_marker.len()];
        rest = &rest[start + end + end_marker.len()..];
        let key = match label {
            "PUBLIC KEY" | "RSA PUBLIC KEY" => {
                let (_, der) = p256::pkcs8::der::pem::decode_vec(block.as_bytes())
                    .map_err(|e| format!("PEM block {n} ({label}): {e}"))?;
                if label == "PUBLIC KEY" {
                    PublicKey::from_spki(&der)
                } else {
                    rsa_key(&der)
                }
                .map_err(|e| format!("PEM block {n} ({label}): {e}"))?
            }
            "CERTIFICATE" => {
                return Err(format!(
                    "PEM block {n} is a CERTIFICATE; a keyed policy takes public keys (keyless authorities take certificates through a trusted root)"
                ));
            }
            other if other.contains("PRIVATE KEY") => {
                return Err(format!(
                    "PEM block {n} holds a private key ({other}): never put a private key in the policy's Secret (remove it, and rotate it if it was shared)"
                ));
            }
            other => return Err(format!("PEM block {n} is labelled {other}, not PUBLIC KEY")),
        };
        keys.push(TrustedKey::new(key));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::LineEnding;

    fn p256_pem(seed: u8) -> String {
        p256::ecdsa::SigningKey::from_slice(&[seed; 32])
            .unwrap()
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap()
    }

    #[test]
    fn blocks_are_counted_and_bounded() {
        let two = format!("{}\n{}", p256_pem(1), p256_pem(2));
        assert_eq!(parse_public_keys(&two).unwrap().len(), 2);
        assert!(parse_public_keys("").unwrap().is_empty());
        let many = p256_pem(3).repeat(MAX_KEYS_PER_VALUE + 1);
        assert_eq!(
            parse_public_keys(&many).unwrap_err(),
            format!("more than {MAX_KEYS_PER_VALUE} PEM blocks")
        );
        let cut = p256_pem(4).replace("-----END PUBLIC KEY-----", "");
        assert_eq!(
            parse_public_keys(&cut).unwrap_err(),
            "PEM block 1 (PUBLIC KEY) has no END line"
        );
        assert!(
            parse_public_keys("-----BEGIN PUBLIC KEY\nMFk=\n")
                .unwrap_err()
                .contains("a BEGIN line that does not end in -----")
        );
        let private = "-----BEGIN EC PRIVATE KEY-----\nAA==\n-----END EC PRIVATE KEY-----\n";
        assert!(
            parse_public_keys(private)
                .unwrap_err()
                .starts_with("PEM block 1 holds a private key (EC PRIVATE KEY): never put")
        );
    }

    #[test]
    fn rsa_keys_are_sized_before_they_are_used() {
        use p256::pkcs8::der::Encode as _;
        let pem_of = |bits: usize, exponent: &[u8]| {
            let mut modulus = vec![0xc5; bits / 8];
            modulus[bits / 8 - 1] |= 1;
            let der = rsa::pkcs1::RsaPublicKey {
                modulus: rsa::pkcs1::UintRef::new(&modulus).unwrap(),
                public_exponent: rsa::pkcs1::UintRef::new(exponent).unwrap(),
            }
            .to_der()
            .unwrap();
            p256::pkcs8::der::pem::encode_string(
                "RSA PUBLIC KEY",
                p256::pkcs8::LineEnding::LF,
                &der,
            )
            .unwrap()
        };
        assert_eq!(
            parse_public_keys(&pem_of(8192, &[1, 0, 1])).unwrap_err(),
            "PEM block 1 (RSA PUBLIC KEY): an RSA key of 8192 bits (from 2048 to 4096 are accepted)"
        );
        let keys = parse_public_keys(&pem_of(3072, &[1, 0, 1])).unwrap();
        assert_eq!(keys[0].key.describe(), "RSA-3072");
        // The same key as a SubjectPublicKeyInfo: the same fingerprint.
        let spki = keys[0].key.spki_der();
        assert_eq!(
            TrustedKey::new(PublicKey::from_spki(&spki).unwrap()).fingerprint,
            keys[0].fingerprint
        );
        // An exponent of 1 verifies anything: refused.
        assert!(
            parse_public_keys(&pem_of(3072, &[1]))
                .unwrap_err()
                .contains("not usable")
        );
    }

    #[test]
    fn an_ed25519_key_round_trips_through_its_subject_public_key_info() {
        let key = ed25519_dalek::VerifyingKey::from_bytes(&[
            0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64,
            0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68,
            0xf7, 0x07, 0x51, 0x1a,
        ])
        .unwrap();
        let der = PublicKey::Ed25519(key).spki_der();
        let PublicKey::Ed25519(back) = PublicKey::from_spki(&der).unwrap() else {
            panic!("not Ed25519");
        };
        assert_eq!(back, key);
        assert!(
            PublicKey::from_spki(&der[..der.len() - 1])
                .unwrap_err()
                .contains("SubjectPublicKeyInfo")
        );
    }
}
