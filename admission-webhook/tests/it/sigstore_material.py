"""What the Sigstore test material scripts share (keyless_material.py, bundle_material.py,
attestation_material.py, keyed_log_material.py), made with Python `cryptography`, independently of the webhook's
code: a root CA and intermediate acting as Fulcio, Fulcio-like leaf certificates with the
issuer extensions and an embedded SCT signed by a CT log key, the trusted root naming them,
DSSE's PAE, the bodies of Rekor entries (hashedrekord, dsse, intoto), cosign's Rekor bundle
annotation (an entry and its signed entry timestamp), and a log keeping a real RFC 6962
Merkle tree (leaf hash SHA-256(0x00 || body), node hash SHA-256(0x01 || l || r)) that signs
checkpoints (signed notes) and signed entry timestamps for Sigstore bundles.

Not a script: imported by the others.
"""

import base64
import datetime
import hashlib
import json
import os
import struct

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SUBJECT = "ci@stella-ops.example"
ISSUER = "https://issuer.stella-ops.example"
NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
IN_TOTO = "application/vnd.in-toto+json"
SIGN_PREDICATE_TYPE = "https://sigstore.dev/cosign/sign/v1"
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
BUNDLE_V02 = "application/vnd.dev.sigstore.bundle+json;version=0.2"
ORIGIN = "rekor.stella-ops.example - 2605736670972794746"


def b64(data):
    return base64.b64encode(data).decode()


def sha256(data):
    return hashlib.sha256(data).digest()


def spki(key):
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def pem(signer):
    """The PEM of a certificate, or of a public key (the signer a keyed log entry records)."""
    if isinstance(signer, x509.Certificate):
        return signer.public_bytes(serialization.Encoding.PEM).decode()
    return signer.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def der(certificate):
    return certificate.public_bytes(serialization.Encoding.DER)


def public_pem(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


# --- a Fulcio-like CA ----------------------------------------------------------------------

def name(common_name):
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "stella-ops test"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def ca(common_name, key, issuer_name, issuer_key, path_length):
    """A CA certificate with key identifiers (OpenSSL's strict mode wants them)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(common_name))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=365))
        .not_valid_after(NOW + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer_key is not key:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    return builder.sign(issuer_key, hashes.SHA384())


def fulcio(label):
    """A root and an intermediate, both P-384 as Fulcio's are."""
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = ca(f"{label} root", root_key, name(f"{label} root"), root_key, 1)
    intermediate_key = ec.generate_private_key(ec.SECP384R1())
    intermediate = ca(f"{label} intermediate", intermediate_key, root.subject, root_key, 0)
    return root, intermediate, intermediate_key


def issuer_extension(issuer):
    # Fulcio's 1.3.6.1.4.1.57264.1.8: the issuer as a DER UTF8String.
    raw = issuer.encode()
    assert len(raw) < 128
    return x509.UnrecognizedExtension(
        x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8"), bytes([0x0C, len(raw)]) + raw
    )


def fulcio_extension(oid, value):
    """One of Fulcio's v2 extensions (1.3.6.1.4.1.57264.1.8 to .22): a DER UTF8String."""
    raw = value.encode()
    assert len(raw) < 128
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), bytes([0x0C, len(raw)]) + raw)


# What a GitHub Actions build's Fulcio certificate states about it (its v2 extensions).
GITHUB_BUILD = {
    "1.3.6.1.4.1.57264.1.11": "github-hosted",
    "1.3.6.1.4.1.57264.1.12": "https://github.com/stella-ops/app",
    "1.3.6.1.4.1.57264.1.13": "0123456789abcdef0123456789abcdef01234567",
    "1.3.6.1.4.1.57264.1.14": "refs/heads/main",
    "1.3.6.1.4.1.57264.1.20": "push",
}


# The same build in Fulcio's first GitHub extensions (.2 to .6: the value's bytes as they are).
GITHUB_BUILD_LEGACY = {
    "1.3.6.1.4.1.57264.1.2": "push",
    "1.3.6.1.4.1.57264.1.3": "0123456789abcdef0123456789abcdef01234567",
    "1.3.6.1.4.1.57264.1.5": "stella-ops/app",
    "1.3.6.1.4.1.57264.1.6": "refs/heads/main",
}


def legacy_github_extension(oid, value):
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value.encode())


def legacy_issuer_extension(issuer):
    # Fulcio's older 1.3.6.1.4.1.57264.1.1: the issuer as raw bytes.
    return x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1"), issuer.encode())


def sct_extension(tbs, issuer_certificate, ct_key, timestamp_ms):
    """RFC 6962 embedded SCT list: the CT log's signature over the precertificate entry."""
    issuer_key_hash = sha256(issuer_certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    signed = (struct.pack(">BBQH", 0, 0, timestamp_ms, 1) + issuer_key_hash
              + len(tbs).to_bytes(3, "big") + tbs + b"\x00\x00")
    signature = ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
    sct = (bytes([0]) + sha256(spki(ct_key)) + struct.pack(">Q", timestamp_ms)
           + b"\x00\x00" + bytes([4, 3]) + struct.pack(">H", len(signature)) + signature)
    listed = struct.pack(">H", len(sct)) + sct
    sct_list = struct.pack(">H", len(listed)) + listed
    assert len(sct_list) < 128
    return x509.UnrecognizedExtension(
        x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2"), bytes([0x04, len(sct_list)]) + sct_list
    )


def leaf(intermediate, intermediate_key, not_before, not_after, subject=SUBJECT, issuer=ISSUER,
         san=None, issuer_extensions=(legacy_issuer_extension, issuer_extension), ct_key=None,
         sct_tbs=None):
    """A Fulcio-like leaf for `subject` (an email SAN, or `san`), with the issuer extensions
    (both, as Fulcio writes them, by default) and, given a CT log key, an embedded SCT (over
    `sct_tbs` instead of this certificate's precertificate: an SCT copied from another)."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(intermediate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(intermediate_key.public_key()), critical=False)
        .add_extension(x509.SubjectAlternativeName([san or x509.RFC822Name(subject)]), critical=True)
    )
    for extension in issuer_extensions:
        builder = builder.add_extension(extension(issuer), critical=False)
    if ct_key is not None:
        # The log signs the certificate as it is without the SCT (the precertificate).
        precertificate = builder.sign(intermediate_key, hashes.SHA384())
        builder = builder.add_extension(
            sct_extension(sct_tbs or precertificate.tbs_certificate_bytes, intermediate, ct_key,
                          int(not_before.timestamp()) * 1000),
            critical=False,
        )
    return builder.sign(intermediate_key, hashes.SHA384()), key


def trusted_root(root, intermediate, log_key, ct_key, tsa=None, v2_log=None):
    """The Sigstore trusted_root.json naming the CA, the log and the CT log (and, given a
    `tsa()`, the timestamp authority; given a `LogV2`, that Rekor v2 log)."""
    start = (NOW - datetime.timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def log(url, key):
        return {
            "baseUrl": url,
            "hashAlgorithm": "SHA2_256",
            "publicKey": {
                "rawBytes": b64(spki(key)),
                "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                "validFor": {"start": start},
            },
            "logId": {"keyId": b64(sha256(spki(key)))},
        }
    return {
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [log("https://rekor.stella-ops.example", log_key)] + ([] if v2_log is None else [{
            "baseUrl": "https://" + V2_ORIGIN,
            "hashAlgorithm": "SHA2_256",
            "publicKey": {"rawBytes": b64(spki(v2_log.key)), "keyDetails": "PKIX_ED25519",
                          "validFor": {"start": start}},
            "logId": {"keyId": b64(v2_log.log_id)},
        }]),
        "certificateAuthorities": [{
            "subject": {"organization": "stella-ops test", "commonName": "fulcio"},
            "uri": "https://fulcio.stella-ops.example",
            "certChain": {"certificates": [{"rawBytes": b64(der(intermediate))}, {"rawBytes": b64(der(root))}]},
            "validFor": {"start": start},
        }],
        "ctlogs": [log("https://ctfe.stella-ops.example/test", ct_key)],
        "timestampAuthorities": [] if tsa is None else [{
            "subject": {"organization": "stella-ops test", "commonName": "tsa"},
            "uri": "https://tsa.stella-ops.example",
            "certChain": {"certificates": [{"rawBytes": b64(der(tsa[1]))}, {"rawBytes": b64(der(tsa[0]))}]},
            "validFor": {"start": start},
        }],
    }


# --- an RFC 3161 timestamp authority -------------------------------------------------------

def tsa(label):
    """A timestamp authority as Sigstore's runs one: a P-384 root and a P-256 signing
    certificate with the critical extended key usage id-kp-timeStamping (RFC 3161 2.3).
    Returns (root, leaf, leaf_key)."""
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = ca(f"{label} TSA root", root_key, name(f"{label} TSA root"), root_key, 0)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name(f"{label} TSA"))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=30))
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA384())
    )
    return root, leaf, key


def timestamp(authority, message, gen_time, serial=1):
    """An RFC 3161 TimeStampResp (status granted) whose token stamps SHA-256(`message`) at
    `gen_time`, built with asn1crypto's CMS and TSP types and signed by the authority's key:
    a SignedData over a TSTInfo with the content-type, message-digest and
    signing-certificate-v2 signed attributes (RFC 5816), the signing certificate embedded."""
    from asn1crypto import algos, cms, core, tsp
    from asn1crypto import x509 as ax509
    _, leaf, key = authority
    leaf_der = der(leaf)
    tst_info = tsp.TSTInfo({
        "version": "v1",
        "policy": "1.3.6.1.4.1.57264.2",
        "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": sha256(message)},
        "serial_number": serial,
        "gen_time": gen_time,
    })
    attributes = [
        cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
        cms.CMSAttribute({"type": "message_digest", "values": [sha256(tst_info.dump())]}),
        cms.CMSAttribute({"type": "signing_certificate_v2",
                          "values": [{"certs": [{"cert_hash": sha256(leaf_der)}]}]}),
    ]
    # DER sorts a SET OF by encoding; OpenSSL re-encodes the attributes before checking.
    signed_attrs = cms.CMSAttributes(sorted(attributes, key=lambda a: a.dump()))
    signature = key.sign(signed_attrs.dump(), ec.ECDSA(hashes.SHA256()))
    certificate = ax509.Certificate.load(leaf_der)
    signer = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier({"issuer_and_serial_number": {
            "issuer": certificate.issuer, "serial_number": certificate.serial_number}}),
        "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
        "signed_attrs": signed_attrs,
        "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
        "signature": signature,
    })
    signed_data = cms.SignedData({
        "version": "v3",
        "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
        "encap_content_info": {"content_type": "tst_info", "content": core.ParsableOctetString(tst_info.dump())},
        "certificates": [certificate],
        "signer_infos": [signer],
    })
    response = tsp.TimeStampResp({
        "status": {"status": "granted"},
        "time_stamp_token": cms.ContentInfo({"content_type": "signed_data", "content": signed_data}),
    })
    return response.dump()


def with_timestamps(bundle, *responses):
    """`bundle` with RFC 3161 timestamps in its verification material."""
    bundle = json.loads(json.dumps(bundle))
    bundle["verificationMaterial"]["timestampVerificationData"] = {
        "rfc3161Timestamps": [{"signedTimestamp": b64(r)} for r in responses]}
    return bundle


def bundle_signature(bundle):
    """The signature bytes a timestamp of `bundle` stamps: the message signature, or the
    DSSE envelope's."""
    if "dsseEnvelope" in bundle:
        return base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"])
    return base64.b64decode(bundle["messageSignature"]["signature"])


# --- DSSE and Rekor entries ------------------------------------------------------------------

def pae(payload_type, payload):
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def sign_envelope(key, payload, signed=None, payload_type=IN_TOTO):
    """A DSSE envelope of `payload` signed by `key` (over `signed` when given: tampering);
    the envelope and the raw signature."""
    signature = key.sign(pae(payload_type, payload if signed is None else signed), ec.ECDSA(hashes.SHA256()))
    return {"payload": b64(payload), "payloadType": payload_type,
            "signatures": [{"sig": b64(signature), "keyid": ""}]}, signature


def hashedrekord_body(hash_hex, signature, certificate):
    return {
        "apiVersion": "0.0.1", "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": hash_hex}},
            "signature": {"content": b64(signature), "publicKey": {"content": b64(pem(certificate).encode())}},
        },
    }


def dsse_body(envelope, signature, certificate):
    """Rekor's dsse 0.0.1 entry of a one-signature envelope."""
    return {
        "apiVersion": "0.0.1", "kind": "dsse",
        "spec": {
            "envelopeHash": {"algorithm": "sha256", "value": sha256(json.dumps(envelope).encode()).hex()},
            "payloadHash": {"algorithm": "sha256", "value": sha256(base64.b64decode(envelope["payload"])).hex()},
            "signatures": [{"signature": b64(signature), "verifier": b64(pem(certificate).encode())}],
        },
    }


def intoto_body(envelope, signature, certificate):
    """Rekor's intoto 0.0.2 entry: the envelope without its payload, each `sig` the
    envelope's base64 text base64-encoded again (as Rekor stores it)."""
    return {
        "apiVersion": "0.0.2", "kind": "intoto",
        "spec": {"content": {
            "envelope": {"payloadType": envelope["payloadType"],
                         "signatures": [{"publicKey": b64(pem(certificate).encode()),
                                         "sig": b64(b64(signature).encode())}]},
            "hash": {"algorithm": "sha256", "value": sha256(json.dumps(envelope).encode()).hex()},
            "payloadHash": {"algorithm": "sha256", "value": sha256(base64.b64decode(envelope["payload"])).hex()},
        }},
    }


def set_message(body_b64, integrated_time, log_id_hex, log_index):
    """The canonical JSON a signed entry timestamp signs."""
    return json.dumps({
        "body": body_b64, "integratedTime": integrated_time, "logID": log_id_hex, "logIndex": log_index,
    }, sort_keys=True, separators=(",", ":")).encode()


def cosign_rekor_bundle(log_key, body, integrated_time, log_index):
    """cosign's `dev.sigstore.cosign/bundle` annotation: the entry and its SET."""
    entry = {"body": b64(json.dumps(body).encode()), "integratedTime": integrated_time,
             "logID": sha256(spki(log_key)).hex(), "logIndex": log_index}
    message = set_message(entry["body"], integrated_time, entry["logID"], log_index)
    return {"SignedEntryTimestamp": b64(log_key.sign(message, ec.ECDSA(hashes.SHA256()))), "Payload": entry}


# --- a Rekor-like log with a Merkle tree, and Sigstore bundles --------------------------------

def leaf_hash(body):
    return sha256(b"\x00" + body)


def node_hash(left, right):
    return sha256(b"\x01" + left + right)


def split_point(n):
    """The largest power of two smaller than n (RFC 6962 section 2.1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def tree_hash(leaves):
    if len(leaves) == 1:
        return leaves[0]
    k = split_point(len(leaves))
    return node_hash(tree_hash(leaves[:k]), tree_hash(leaves[k:]))


def audit_path(m, leaves):
    """RFC 6962 PATH(m, D[n]), lowest level first."""
    if len(leaves) == 1:
        return []
    k = split_point(len(leaves))
    if m < k:
        return audit_path(m, leaves[:k]) + [tree_hash(leaves[k:])]
    return audit_path(m - k, leaves[k:]) + [tree_hash(leaves[:k])]


class Log:
    """A transparency log: a key and a tree of earlier entries our entry is appended to."""

    def __init__(self, key, earlier=11, later=5):
        self.key = key
        self.log_id = sha256(spki(key))
        self.earlier = [leaf_hash(os.urandom(40)) for _ in range(earlier)]
        self.later = [leaf_hash(os.urandom(40)) for _ in range(later)]

    def checkpoint(self, size, root, key=None, hint=None):
        note = f"{ORIGIN}\n{size}\n{b64(root)}\n"
        signature = (key or self.key).sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        return note + f"\n\u2014 rekor.stella-ops.example {b64((hint or self.log_id)[:4] + signature)}\n"

    def logged(self, body, log_index):
        """A bundle's tlog entry of `body` (a dict: its kind and version are the entry's)
        with its inclusion proof and checkpoint, and the canonical body."""
        kind, version = body["kind"], body["apiVersion"]
        body = json.dumps(body).encode()
        index = len(self.earlier)
        leaves = self.earlier + [leaf_hash(body)] + self.later
        root = tree_hash(leaves)
        return {
            "logIndex": str(log_index),
            "logId": {"keyId": b64(self.log_id)},
            "kindVersion": {"kind": kind, "version": version},
            "inclusionProof": {
                "logIndex": str(index),
                "rootHash": b64(root),
                "treeSize": str(len(leaves)),
                "hashes": [b64(h) for h in audit_path(index, leaves)],
                "checkpoint": {"envelope": self.checkpoint(len(leaves), root)},
            },
            "canonicalizedBody": b64(body),
        }, body

    def entry(self, body, integrated_time):
        """A Rekor v1 entry of `body`: the proof and a SET over the integrated time."""
        log_index = 4000 + len(self.earlier)  # a global index (other shards before this one)
        entry, body = self.logged(body, log_index)
        canonical = set_message(b64(body), integrated_time, self.log_id.hex(), log_index)
        entry["integratedTime"] = str(integrated_time)
        entry["inclusionPromise"] = {"signedEntryTimestamp": b64(self.key.sign(canonical, ec.ECDSA(hashes.SHA256())))}
        return entry


V2_ORIGIN = "log2026-1.rekor.stella-ops.example"


class LogV2(Log):
    """A Rekor v2 log: an Ed25519 key whose ID is its C2SP signed-note key ID,
    SHA-256(origin || "\n" || 0x01 || key), as Sigstore's trusted root lists it; checkpoints
    are signed notes with that ID's first four bytes as key hint; entries carry an inclusion
    proof and a checkpoint only (no integrated time, no SET)."""

    def __init__(self, key, earlier=11, later=5):
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
        super().__init__(key, earlier, later)
        raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.log_id = sha256(V2_ORIGIN.encode() + b"\n\x01" + raw)

    def checkpoint(self, size, root, key=None, hint=None):
        note = f"{V2_ORIGIN}\n{size}\n{b64(root)}\n"
        signature = (key or self.key).sign(note.encode())
        return note + f"\n\u2014 {V2_ORIGIN} {b64((hint or self.log_id)[:4] + signature)}\n"

    def entry(self, body, integrated_time=None):
        """A Rekor v2 entry of `body`: the proof only (v2 signs no time)."""
        return self.logged(body, len(self.earlier))[0]


def hashedrekord_v2_body(algorithm, digest, signature, certificate):
    """Rekor v2's hashedrekord 0.0.2 entry (the log's protobuf JSON)."""
    return {
        "kind": "hashedrekord", "apiVersion": "0.0.2",
        "spec": {"hashedRekordV002": {
            "data": {"algorithm": algorithm, "digest": b64(digest)},
            "signature": {"content": b64(signature), "verifier": {
                "x509Certificate": {"rawBytes": b64(der(certificate))},
                "keyDetails": "PKIX_ECDSA_P256_SHA_256"}},
        }},
    }


def v2_message_bundle(log, certificate, key, digest_hex):
    """A v0.3 bundle of a message signature logged in Rekor v2."""
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
    digest = bytes.fromhex(digest_hex)
    signature = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    body = hashedrekord_v2_body("SHA2_256", digest, signature, certificate)
    return {
        "mediaType": BUNDLE_V03,
        "verificationMaterial": verification_material(certificate, BUNDLE_V03, [log.entry(body)]),
        "messageSignature": {"messageDigest": {"algorithm": "SHA2_256", "digest": b64(digest)},
                             "signature": b64(signature)},
    }


def v2_dsse_bundle(log, certificate, key, payload):
    """A v0.3 bundle of a DSSE envelope logged in Rekor v2: a hashedrekord 0.0.2 of the
    PAE's SHA-256 and the envelope's signature (rekor-v2 spec 6.1.4)."""
    envelope, signature = sign_envelope(key, payload)
    body = hashedrekord_v2_body("SHA2_256", sha256(pae(IN_TOTO, payload)), signature, certificate)
    return {
        "mediaType": BUNDLE_V03,
        "verificationMaterial": verification_material(certificate, BUNDLE_V03, [log.entry(body)]),
        "dsseEnvelope": envelope,
    }


def statement(digest_hex, predicate_type=SIGN_PREDICATE_TYPE, predicate=None, name="registry.example/app"):
    """An in-toto Statement v1 about `digest_hex` (cosign's image-signature one by default)."""
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": name, "digest": {"sha256": digest_hex}}],
        "predicateType": predicate_type,
        "predicate": predicate if predicate is not None else {},
    }


def verification_material(certificate, media_type, entries):
    if media_type == BUNDLE_V03:
        held = {"certificate": {"rawBytes": b64(der(certificate))}}
    else:
        held = {"x509CertificateChain": {"certificates": [{"rawBytes": b64(der(certificate))}]}}
    return dict(held, tlogEntries=entries)


def dsse_bundle(log, certificate, key, payload, integrated_time, kind="dsse", media_type=BUNDLE_V03):
    """A bundle of a DSSE envelope of `payload` (bytes) signed by `key`, logged as a `dsse`
    0.0.1 or `intoto` 0.0.2 entry."""
    envelope, signature = sign_envelope(key, payload)
    body = (dsse_body if kind == "dsse" else intoto_body)(envelope, signature, certificate)
    return {
        "mediaType": media_type,
        "verificationMaterial": verification_material(certificate, media_type, [log.entry(body, integrated_time)]),
        "dsseEnvelope": envelope,
    }


def message_bundle(log, certificate, key, digest_hex, integrated_time, media_type=BUNDLE_V03):
    """A bundle of an ECDSA signature over the artifact (an image manifest) given by its SHA-256."""
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
    digest = bytes.fromhex(digest_hex)
    signature = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    body = hashedrekord_body(digest_hex, signature, certificate)
    return {
        "mediaType": media_type,
        "verificationMaterial": verification_material(certificate, media_type, [log.entry(body, integrated_time)]),
        "messageSignature": {"messageDigest": {"algorithm": "SHA2_256", "digest": b64(digest)},
                             "signature": b64(signature)},
    }
