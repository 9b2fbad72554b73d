//! RFC 3161 signed timestamps, as Sigstore bundles carry them
//! (`verificationMaterial.timestampVerificationData.rfc3161Timestamps[].signedTimestamp`: a
//! DER `TimeStampResp`), verified offline against a trusted root's `timestampAuthorities`.
//!
//! A timestamp counts when: its status is `granted`; its token is a CMS `SignedData` of one
//! signer over an `id-ct-TSTInfo`; the signed attributes hold that content type and the
//! digest of the TSTInfo; the signer is the first certificate of a listed authority's chain
//! (its issuer and serial number, or its key identifier) and its signature over the signed
//! attributes verifies with that certificate's key; that certificate carries the critical
//! extended key usage `id-kp-timeStamping` (RFC 3161 2.3) and chains to the authority's root,
//! every certificate valid at the stamped time, which the authority's `validFor` covers; and
//! the TSTInfo's message imprint is the hash of the bundle's signature (in cosign's `.sig`
//! layout, of the signature; see [`crate::keyless::verify`]). Its `genTime` is
//! then a signing time the certificate is checked at, like the integrated time a signed
//! entry timestamp signs. The parsing is by hand, strict DER, over bounded input.

use chrono::NaiveDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::keyless::{self, CertificateAuthority, Hash};
use crate::keys::{PublicKey, SignatureScheme};

/// Most timestamps one bundle may carry (sigstore-go's and sigstore-python's limit).
pub const MAX_TIMESTAMPS: usize = 32;

/// Largest timestamp response read.
pub const MAX_TIMESTAMP_BYTES: usize = 64 << 10;

const OID_SIGNED_DATA: &str = "1.2.840.113549.1.7.2";
const OID_TST_INFO: &str = "1.2.840.113549.1.9.16.1.4";
const OID_CONTENT_TYPE: &str = "1.2.840.113549.1.9.3";
const OID_MESSAGE_DIGEST: &str = "1.2.840.113549.1.9.4";
const OID_TIME_STAMPING: &str = "1.3.6.1.5.5.7.3.8";

const WHAT: &str = "the RFC 3161 timestamp";

/// One DER element: its tag, its content, and the whole encoding.
#[derive(Clone, Copy)]
struct Element<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
}

/// The DER elements of `data` in order, from the start; malformed DER is an error.
struct Elements<'a> {
    rest: &'a [u8],
}

impl<'a> Elements<'a> {
    fn of(data: &'a [u8]) -> Self {
        Elements { rest: data }
    }

    fn next(&mut self, what: &str) -> Result<Element<'a>, String> {
        if self.rest.is_empty() {
            return Err(format!("{WHAT} ends before its {what}"));
        }
        let (tag, header, length) = keyless::der_header_in(self.rest, WHAT)?;
        let whole = &self.rest[..header + length];
        self.rest = &self.rest[header + length..];
        Ok(Element {
            tag,
            content: &whole[header..],
            whole,
        })
    }

    /// The next element, which must have tag `tag`.
    fn expect(&mut self, tag: u8, what: &str) -> Result<Element<'a>, String> {
        let element = self.next(what)?;
        if element.tag != tag {
            return Err(format!(
                "{WHAT}: its {what} has tag 0x{:02x}, not 0x{tag:02x}",
                element.tag
            ));
        }
        Ok(element)
    }

    /// The next element when it has tag `tag`, else nothing (and nothing consumed).
    fn optional(&mut self, tag: u8) -> Result<Option<Element<'a>>, String> {
        if self.rest.first() != Some(&tag) {
            return Ok(None);
        }
        self.next("optional field").map(Some)
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const GENERALIZED_TIME: u8 = 0x18;
const CONTEXT_0: u8 = 0xa0;
const CONTEXT_1: u8 = 0xa1;
const CONTEXT_0_PRIMITIVE: u8 = 0x80;

/// An OBJECT IDENTIFIER's dotted form.
fn oid(element: Element<'_>, what: &str) -> Result<String, String> {
    if element.tag != OID {
        return Err(format!("{WHAT}: its {what} is not an object identifier"));
    }
    Ok(x509_parser::der_parser::oid::Oid::new(element.content.into()).to_id_string())
}

/// The hash an AlgorithmIdentifier names (SHA-256, SHA-384, SHA-512).
fn hash_of(algorithm: Element<'_>, what: &str) -> Result<Hash, String> {
    let mut fields = Elements::of(algorithm.content);
    let named = oid(fields.next(what)?, what)?;
    crate::keys::hash_named(&named)
        .ok_or_else(|| format!("{WHAT}: its {what} is {named}, not SHA-256, SHA-384 or SHA-512"))
}

/// What a timestamp response says, before any authority is trusted with it.
struct Token<'a> {
    /// The signer's issuer (DER Name) and serial number (INTEGER content), or its subject
    /// key identifier.
    signer: SignerId<'a>,
    /// The signed attributes as DER (tag SET), which the signature signs.
    signed_attributes: Vec<u8>,
    /// The signature algorithm, or why it is not one we verify.
    signature_scheme: Result<SignatureScheme, String>,
    /// The signature.
    signature: &'a [u8],
    /// The imprint's hash and value.
    imprint: (Hash, &'a [u8]),
    /// `genTime`, in Unix seconds (fractions dropped).
    gen_time: i64,
}

enum SignerId<'a> {
    IssuerSerial { issuer: &'a [u8], serial: &'a [u8] },
    KeyIdentifier(&'a [u8]),
}

/// Read a `TimeStampResp` down to what verification needs; checks the structure, the
/// status, the content types and the message digest attribute.
fn read(response: &[u8]) -> Result<Token<'_>, String> {
    if response.len() > MAX_TIMESTAMP_BYTES {
        return Err(format!(
            "{WHAT} is {} bytes, more than the {MAX_TIMESTAMP_BYTES} accepted",
            response.len()
        ));
    }
    let mut top = Elements::of(response);
    let resp = top.expect(SEQUENCE, "TimeStampResp")?;
    if !top.is_empty() {
        return Err(format!("{WHAT} has bytes after its TimeStampResp"));
    }
    let mut resp = Elements::of(resp.content);
    let status = resp.expect(SEQUENCE, "status")?;
    let status = Elements::of(status.content).expect(INTEGER, "status")?;
    if status.content != [0] {
        return Err(format!(
            "{WHAT}'s status is {:?}, not granted (0)",
            status.content
        ));
    }
    let content_info = resp.expect(SEQUENCE, "timeStampToken")?;
    let mut content_info = Elements::of(content_info.content);
    if oid(content_info.next("content type")?, "content type")? != OID_SIGNED_DATA {
        return Err(format!("{WHAT}'s token is not CMS SignedData"));
    }
    let explicit = content_info.expect(CONTEXT_0, "SignedData")?;
    let signed_data = Elements::of(explicit.content).expect(SEQUENCE, "SignedData")?;
    let mut signed_data = Elements::of(signed_data.content);
    signed_data.expect(INTEGER, "SignedData version")?;
    signed_data.expect(SET, "digestAlgorithms")?;
    let encapsulated = signed_data.expect(SEQUENCE, "encapContentInfo")?;
    let mut encapsulated = Elements::of(encapsulated.content);
    if oid(encapsulated.next("eContentType")?, "eContentType")? != OID_TST_INFO {
        return Err(format!("{WHAT}'s token does not hold a TSTInfo"));
    }
    let econtent = encapsulated.expect(CONTEXT_0, "eContent")?;
    let tst_info = Elements::of(econtent.content)
        .expect(OCTET_STRING, "eContent")?
        .content;
    // Embedded certificates and CRLs are not trusted: the trusted root names the signer.
    signed_data.optional(CONTEXT_0)?;
    signed_data.optional(CONTEXT_1)?;
    let signer_infos = signed_data.expect(SET, "signerInfos")?;
    let mut signer_infos = Elements::of(signer_infos.content);
    let signer_info = signer_infos.expect(SEQUENCE, "SignerInfo")?;
    if !signer_infos.is_empty() {
        return Err(format!("{WHAT} has more than one signer"));
    }
    let mut signer_info = Elements::of(signer_info.content);
    signer_info.expect(INTEGER, "SignerInfo version")?;
    let sid = signer_info.next("signer identifier")?;
    let signer = match sid.tag {
        SEQUENCE => {
            let mut fields = Elements::of(sid.content);
            let issuer = fields.expect(SEQUENCE, "signer's issuer")?.whole;
            let serial = fields.expect(INTEGER, "signer's serial number")?.content;
            SignerId::IssuerSerial { issuer, serial }
        }
        CONTEXT_0_PRIMITIVE => SignerId::KeyIdentifier(sid.content),
        other => {
            return Err(format!(
                "{WHAT}: its signer identifier has tag 0x{other:02x}"
            ));
        }
    };
    let digest_algorithm = signer_info.expect(SEQUENCE, "digestAlgorithm")?;
    let attribute_hash = hash_of(digest_algorithm, "digestAlgorithm")?;
    let attributes = signer_info.expect(CONTEXT_0, "signedAttrs")?;
    let signature_algorithm = signer_info.expect(SEQUENCE, "signatureAlgorithm")?;
    let signature = signer_info.expect(OCTET_STRING, "signature")?.content;
    // Some authorities name only the key's algorithm; the digest algorithm is the hash.
    let signature_scheme =
        x509_parser::x509::AlgorithmIdentifier::from_der(signature_algorithm.whole)
            .map_err(|_| format!("{WHAT}'s signatureAlgorithm does not parse"))
            .and_then(|(_, algorithm)| {
                SignatureScheme::of_algorithm(&algorithm, Some(attribute_hash))
                    .map_err(|e| format!("{WHAT} is signed with {e}"))
            });

    // The signed attributes: the content type is a TSTInfo's, the message digest the
    // TSTInfo's hash; each attribute type once.
    let (mut content_type, mut message_digest) = (None, None);
    let mut each = Elements::of(attributes.content);
    while !each.is_empty() {
        let attribute = each.expect(SEQUENCE, "signed attribute")?;
        let mut fields = Elements::of(attribute.content);
        let kind = oid(fields.next("attribute type")?, "attribute type")?;
        let values = fields.expect(SET, "attribute values")?;
        let mut values = Elements::of(values.content);
        let value = values.next("attribute value")?;
        let slot = match kind.as_str() {
            OID_CONTENT_TYPE => &mut content_type,
            OID_MESSAGE_DIGEST => &mut message_digest,
            _ => continue,
        };
        if slot.is_some() || !values.is_empty() {
            return Err(format!("{WHAT} has attribute {kind} more than once"));
        }
        *slot = Some(value);
    }
    match content_type {
        Some(value) if oid(value, "content type attribute")? == OID_TST_INFO => {}
        _ => return Err(format!("{WHAT}'s signed content type is not a TSTInfo")),
    }
    match message_digest {
        Some(value) if value.tag == OCTET_STRING => {
            if value.content != attribute_hash.digest(tst_info).as_slice() {
                return Err(format!(
                    "{WHAT}'s signed message digest is not its TSTInfo's"
                ));
            }
        }
        _ => return Err(format!("{WHAT} has no signed message digest")),
    }
    // The signature signs the attributes' DER with the SET tag (RFC 5652 5.4).
    let mut signed_attributes = attributes.whole.to_vec();
    signed_attributes[0] = SET;

    // The TSTInfo: version, policy, message imprint, serial number, genTime.
    let tst = Elements::of(tst_info).expect(SEQUENCE, "TSTInfo")?;
    let mut tst = Elements::of(tst.content);
    tst.expect(INTEGER, "TSTInfo version")?;
    tst.expect(OID, "TSTInfo policy")?;
    let imprint = tst.expect(SEQUENCE, "messageImprint")?;
    let mut imprint = Elements::of(imprint.content);
    let imprint_hash = hash_of(imprint.expect(SEQUENCE, "imprint hash")?, "imprint hash")?;
    let imprinted = imprint.expect(OCTET_STRING, "hashedMessage")?.content;
    tst.expect(INTEGER, "TSTInfo serial number")?;
    let gen_time = tst.expect(GENERALIZED_TIME, "genTime")?.content;
    Ok(Token {
        signer,
        signed_attributes,
        signature_scheme,
        signature,
        imprint: (imprint_hash, imprinted),
        gen_time: generalized_time(gen_time)?,
    })
}

/// A DER GeneralizedTime (`YYYYMMDDHHMMSS[.f*]Z`) in Unix seconds.
fn generalized_time(text: &[u8]) -> Result<i64, String> {
    let text = std::str::from_utf8(text).map_err(|_| format!("{WHAT}'s genTime is not text"))?;
    let bad = || format!("{WHAT}'s genTime {text:?} is not YYYYMMDDHHMMSS[.f]Z");
    let text_utc = text.strip_suffix('Z').ok_or_else(bad)?;
    let (whole, fraction) = text_utc.split_once('.').unwrap_or((text_utc, "0"));
    if whole.len() != 14 || fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    NaiveDateTime::parse_from_str(whole, "%Y%m%d%H%M%S")
        .map(|t| t.and_utc().timestamp())
        .map_err(|_| bad())
}

/// Verify one timestamp response stamping `signature` against the `authorities` of a
/// trusted root; the stamped time (Unix seconds) when one of them signed it.
pub fn verify(
    response: &[u8],
    signature: &[u8],
    authorities: &[CertificateAuthority],
) -> Result<i64, String> {
    let token = read(response)?;
    let (hash, imprinted) = token.imprint;
    if imprinted != hash.digest(signature).as_slice() {
        return Err(format!(
            "{WHAT} does not stamp this signature (its message imprint differs)"
        ));
    }
    if authorities.is_empty() {
        return Err(format!(
            "{WHAT} cannot be verified: the trusted root lists no timestampAuthorities"
        ));
    }
    let mut refusals = Vec::new();
    for (i, authority) in authorities.iter().enumerate() {
        match signed_by_authority(&token, authority) {
            Ok(()) => return Ok(token.gen_time),
            Err(e) => refusals.push(format!("timestampAuthorities[{i}]: {e}")),
        }
    }
    Err(format!(
        "{WHAT} is not from a timestamp authority of the trusted root ({})",
        refusals.join("; ")
    ))
}

/// Whether `authority` signed the token, with a signing certificate valid for stamping at
/// the stamped time.
fn signed_by_authority(token: &Token<'_>, authority: &CertificateAuthority) -> Result<(), String> {
    let (leaf_der, issuers) = authority
        .chain
        .split_first()
        .ok_or("the authority has no certificates")?;
    let (_, leaf) = X509Certificate::from_der(leaf_der)
        .map_err(|e| format!("its signing certificate does not parse: {e}"))?;
    let named = match token.signer {
        SignerId::IssuerSerial { issuer, serial } => {
            leaf.tbs_certificate.issuer.as_raw() == issuer
                && leaf.tbs_certificate.raw_serial() == serial
        }
        SignerId::KeyIdentifier(id) => leaf
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0),
                _ => None,
            })
            .is_some_and(|k| k == id),
    };
    if !named {
        return Err("the token names another signer than its signing certificate".into());
    }
    let key = PublicKey::from_spki(leaf.public_key().raw)
        .map_err(|e| format!("its signing certificate: {e}"))?;
    let scheme = token.signature_scheme.clone()?;
    if !key.verifies_by(scheme, &token.signed_attributes, token.signature) {
        return Err("the token's signature does not verify with its signing certificate".into());
    }
    let eku = leaf
        .extended_key_usage()
        .map_err(|e| format!("its signing certificate's extended key usage: {e}"))?;
    match eku {
        Some(eku) if eku.critical && eku.value.time_stamping => {}
        _ => {
            return Err(format!(
                "its signing certificate lacks the critical extended key usage \
                 id-kp-timeStamping ({OID_TIME_STAMPING})"
            ));
        }
    }
    let at = token.gen_time;
    if !authority.valid_for.contains(at) {
        return Err(format!(
            "the authority is trusted only from {} to {}, not at the stamped time {}",
            keyless::time(authority.valid_for.start),
            authority
                .valid_for
                .end
                .map(keyless::time)
                .unwrap_or_else(|| "now".into()),
            keyless::time(at)
        ));
    }
    keyless::valid_at(&leaf, at, "its signing certificate")?;
    if issuers.is_empty() {
        return Err("the authority's chain has no issuer for its signing certificate".into());
    }
    keyless::issued_through(&leaf, issuers, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generalized_times() {
        assert_eq!(generalized_time(b"19700101000001Z"), Ok(1));
        assert_eq!(generalized_time(b"20261206101936.123Z"), Ok(1_796_552_376));
        for bad in [
            &b"20261206101936"[..],
            b"2026120610193Z",
            b"20261306101936Z",
            b"20261206101936.Z",
            b"2026120610193\xffZ",
        ] {
            assert!(generalized_time(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn malformed_responses_are_errors() {
        for bad in [
            &b""[..],
            b"\x30\x03\x30\x03\x02\x01\x00",
            b"\x30\x05\x30\x03\x02\x01\x02",
            b"\x30\x80\x00\x00",
            b"\x30\x84\xff\xff\xff\xff",
        ] {
            assert!(read(bad).is_err(), "{bad:?}");
        }
        let refused = read(b"\x30\x05\x30\x03\x02\x01\x02").err().unwrap();
        assert!(refused.contains("not granted"), "{refused}");
    }
}
