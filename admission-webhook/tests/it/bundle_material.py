"""Sigstore bundles made with Python `cryptography`, independently of the webhook's code: a
root CA and intermediate acting as Fulcio, a log key acting as Rekor that keeps a real
RFC 6962 Merkle tree (leaf hash SHA-256(0x00 || body), node hash SHA-256(0x01 || l || r)),
signs checkpoints (signed notes) and signed entry timestamps, and a CT log key signing the
certificate's embedded SCT.

Usage: python bundle_material.py IMAGE_DIGEST OUT_JSON

Writes {"trusted_root", "other_root", "subject", "issuer", "digest", "cases": {name:
bundle JSON text}}; each case is good except for the one thing its name says. The same
files are handed to sigstore-python by bundle_crosscheck.py.
"""

import base64
import datetime
import hashlib
import json
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from keyless_material import (  # noqa: E402
    ISSUER, NOW, SUBJECT, b64, der, issuer_extension, legacy_issuer_extension, name, pem,
    sct_extension, spki, trusted_root,
)

SIGN_PREDICATE_TYPE = "https://sigstore.dev/cosign/sign/v1"
IN_TOTO = "application/vnd.in-toto+json"
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
BUNDLE_V02 = "application/vnd.dev.sigstore.bundle+json;version=0.2"
ORIGIN = "rekor.stella-ops.example - 2605736670972794746"


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
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = ca(f"{label} root", root_key, name(f"{label} root"), root_key, 1)
    intermediate_key = ec.generate_private_key(ec.SECP384R1())
    intermediate = ca(f"{label} intermediate", intermediate_key, root.subject, root_key, 0)
    return root, intermediate, intermediate_key


def leaf(intermediate, intermediate_key, ct_key, not_before, not_after, subject=SUBJECT):
    """A Fulcio-like leaf: both issuer extensions (as Fulcio writes them), an embedded SCT."""
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
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(subject)]), critical=True)
        .add_extension(legacy_issuer_extension(ISSUER), critical=False)
        .add_extension(issuer_extension(ISSUER), critical=False)
    )
    precertificate = builder.sign(intermediate_key, hashes.SHA384())
    builder = builder.add_extension(
        sct_extension(precertificate.tbs_certificate_bytes, intermediate, ct_key,
                      int(not_before.timestamp()) * 1000),
        critical=False,
    )
    return builder.sign(intermediate_key, hashes.SHA384()), key


def sha256(data):
    return hashlib.sha256(data).digest()


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

    def entry(self, body, integrated_time, kind):
        index = len(self.earlier)
        leaves = self.earlier + [leaf_hash(body)] + self.later
        root = tree_hash(leaves)
        log_index = 4000 + index  # a global index (other shards before this one)
        canonical = json.dumps({
            "body": b64(body), "integratedTime": integrated_time,
            "logID": self.log_id.hex(), "logIndex": log_index,
        }, sort_keys=True, separators=(",", ":")).encode()
        return {
            "logIndex": str(log_index),
            "logId": {"keyId": b64(self.log_id)},
            "kindVersion": {"kind": kind, "version": "0.0.1"},
            "integratedTime": str(integrated_time),
            "inclusionPromise": {"signedEntryTimestamp": b64(self.key.sign(canonical, ec.ECDSA(hashes.SHA256())))},
            "inclusionProof": {
                "logIndex": str(index),
                "rootHash": b64(root),
                "treeSize": str(len(leaves)),
                "hashes": [b64(h) for h in audit_path(index, leaves)],
                "checkpoint": {"envelope": self.checkpoint(len(leaves), root)},
            },
            "canonicalizedBody": b64(body),
        }


def pae(payload_type, payload):
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def statement(digest_hex):
    return json.dumps({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "registry.example/app", "digest": {"sha256": digest_hex}}],
        "predicateType": SIGN_PREDICATE_TYPE,
        "predicate": {},
    }).encode()


def dsse_bundle(log, certificate, key, digest_hex, integrated_time, payload=None, media_type=BUNDLE_V03):
    payload = payload or statement(digest_hex)
    signature = key.sign(pae(IN_TOTO, payload), ec.ECDSA(hashes.SHA256()))
    envelope = {"payload": b64(payload), "payloadType": IN_TOTO,
                "signatures": [{"sig": b64(signature), "keyid": ""}]}
    body = json.dumps({
        "apiVersion": "0.0.1", "kind": "dsse",
        "spec": {
            "envelopeHash": {"algorithm": "sha256",
                             "value": hashlib.sha256(json.dumps(envelope).encode()).hexdigest()},
            "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
            "signatures": [{"signature": b64(signature), "verifier": b64(pem(certificate).encode())}],
        },
    }).encode()
    return {
        "mediaType": media_type,
        "verificationMaterial": material(certificate, media_type, log.entry(body, integrated_time, "dsse")),
        "dsseEnvelope": envelope,
    }


def material(certificate, media_type, entry):
    if media_type == BUNDLE_V03:
        held = {"certificate": {"rawBytes": b64(der(certificate))}}
    else:
        held = {"x509CertificateChain": {"certificates": [{"rawBytes": b64(der(certificate))}]}}
    return dict(held, tlogEntries=[entry])


def message_bundle(log, certificate, key, digest_hex, integrated_time, media_type=BUNDLE_V03):
    digest = bytes.fromhex(digest_hex)
    # An ECDSA signature over the artifact (the image manifest), given by its SHA-256.
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
    signature = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    body = json.dumps({
        "apiVersion": "0.0.1", "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": digest_hex}},
            "signature": {"content": b64(signature), "publicKey": {"content": b64(pem(certificate).encode())}},
        },
    }).encode()
    return {
        "mediaType": media_type,
        "verificationMaterial": material(certificate, media_type, log.entry(body, integrated_time, "hashedrekord")),
        "messageSignature": {"messageDigest": {"algorithm": "SHA2_256", "digest": b64(digest)},
                             "signature": b64(signature)},
    }


def main():
    digest_hex = sys.argv[1].removeprefix("sha256:")
    root, intermediate, intermediate_key = fulcio("fulcio")
    other_root, other_intermediate, other_intermediate_key = fulcio("untrusted")
    log = Log(ec.generate_private_key(ec.SECP256R1()))
    rogue_log = Log(ec.generate_private_key(ec.SECP256R1()))
    ct_key = ec.generate_private_key(ec.SECP256R1())

    lived_from = NOW - datetime.timedelta(minutes=60)
    lived_until = NOW - datetime.timedelta(minutes=50)
    signed_at = int((NOW - datetime.timedelta(minutes=55)).timestamp())
    certificate, key = leaf(intermediate, intermediate_key, ct_key, lived_from, lived_until)

    cases = {}
    cases["good"] = dsse_bundle(log, certificate, key, digest_hex, signed_at)
    cases["good_message"] = message_bundle(log, certificate, key, digest_hex, signed_at)
    cases["good_v02_chain"] = message_bundle(log, certificate, key, digest_hex, signed_at, media_type=BUNDLE_V02)

    # The log integrated the entry after the certificate expired.
    cases["expired"] = dsse_bundle(log, certificate, key, digest_hex, int(NOW.timestamp()) - 60)
    # No transparency log entry at all.
    missing = json.loads(json.dumps(cases["good"]))
    missing["verificationMaterial"]["tlogEntries"] = []
    cases["no_tlog"] = missing
    # Only the inclusion proof (no SET): in the log, but the integrated time is unsigned.
    proof_only = json.loads(json.dumps(cases["good"]))
    del proof_only["verificationMaterial"]["tlogEntries"][0]["inclusionPromise"]
    cases["proof_only"] = proof_only
    # One audit path hash altered.
    bad_hash = json.loads(json.dumps(cases["good"]))
    proof = bad_hash["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
    first = bytearray(base64.b64decode(proof["hashes"][0]))
    first[0] ^= 1
    proof["hashes"][0] = b64(bytes(first))
    cases["bad_proof_hash"] = bad_hash
    # The proof claims a larger tree than the one the checkpoint signs.
    wrong_size = json.loads(json.dumps(cases["good"]))
    proof = wrong_size["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
    proof["treeSize"] = str(int(proof["treeSize"]) + 16)
    cases["wrong_tree_size"] = wrong_size
    # The checkpoint signed by another key (with the log's key hint).
    rogue_checkpoint = json.loads(json.dumps(cases["good"]))
    proof = rogue_checkpoint["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
    proof["checkpoint"]["envelope"] = log.checkpoint(
        int(proof["treeSize"]), base64.b64decode(proof["rootHash"]),
        key=ec.generate_private_key(ec.SECP256R1()), hint=log.log_id)
    cases["rogue_checkpoint"] = rogue_checkpoint
    # The whole entry from a log the trusted root does not hold.
    cases["untrusted_log"] = dsse_bundle(rogue_log, certificate, key, digest_hex, signed_at)
    # The statement changed after signing (another digest).
    tampered = json.loads(json.dumps(cases["good"]))
    tampered["dsseEnvelope"]["payload"] = b64(statement("00" * 32))
    cases["tampered_payload"] = tampered
    # A good signature of another image.
    cases["other_digest"] = message_bundle(log, certificate, key, "11" * 32, signed_at)
    # A certificate from a CA the trusted root does not hold.
    stray_certificate, stray_key = leaf(other_intermediate, other_intermediate_key, ct_key, lived_from, lived_until)
    cases["untrusted_ca"] = dsse_bundle(log, stray_certificate, stray_key, digest_hex, signed_at)

    # A keyed bundle: a public-key hint, a message signature by a P-256 key, no log entry
    # (sigstore-python does not verify keyed bundles; the webhook checks the policy's keys).
    keyed_key = ec.generate_private_key(ec.SECP256R1())
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
    keyed = {
        "mediaType": BUNDLE_V03,
        "verificationMaterial": {"publicKey": {"hint": b64(sha256(spki(keyed_key)))}, "tlogEntries": []},
        "messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256", "digest": b64(bytes.fromhex(digest_hex))},
            "signature": b64(keyed_key.sign(bytes.fromhex(digest_hex), ec.ECDSA(Prehashed(hashes.SHA256())))),
        },
    }

    json.dump({
        "keyed": {
            "bundle": json.dumps(keyed),
            "public_key": keyed_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        },
        "subject": SUBJECT,
        "issuer": ISSUER,
        "digest": "sha256:" + digest_hex,
        "trusted_root": json.dumps(trusted_root(root, intermediate, log.key, ct_key)),
        "other_root": json.dumps(trusted_root(other_root, other_intermediate, log.key, ct_key)),
        "cases": {name: json.dumps(bundle) for name, bundle in cases.items()},
    }, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
