"""Keyless cosign signature material made with Python `cryptography`, independently of the
webhook's code: a root CA and intermediate acting as Fulcio, a log key acting as Rekor, a
short-lived leaf certificate for an identity, the simple-signing payload signed by the leaf
key, and cosign's Rekor bundle (a hashedrekord entry and the log's signed entry timestamp
over the canonical JSON of the entry).

Usage: python keyless_material.py PAYLOAD_FILE OUT_JSON

Writes {"trusted_root": ..., "other_root": ..., "cases": {name: {certificate, chain,
signature, bundle}}}; each case is good except for the one thing its name says.
"""

import base64
import datetime
import hashlib
import json
import struct
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SUBJECT = "ci@stella-ops.example"
ISSUER = "https://issuer.stella-ops.example"
WORKFLOW = "https://github.com/example/app/.github/workflows/release.yml@refs/tags/v1.2.3"
NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def b64(data):
    return base64.b64encode(data).decode()


def name(common_name):
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "stella-ops test"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def ca(common_name, key, issuer_name, issuer_key, path_length):
    return (
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
        .sign(issuer_key, hashes.SHA384())
    )


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


def legacy_issuer_extension(issuer):
    # Fulcio's older 1.3.6.1.4.1.57264.1.1: the issuer as raw bytes.
    return x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1"), issuer.encode())


def sct_extension(tbs, issuer_certificate, ct_key, timestamp_ms):
    """RFC 6962 embedded SCT list: the CT log's signature over the precertificate entry."""
    issuer_key_hash = hashlib.sha256(issuer_certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest()
    signed = (struct.pack(">BBQH", 0, 0, timestamp_ms, 1) + issuer_key_hash
              + len(tbs).to_bytes(3, "big") + tbs + b"\x00\x00")
    signature = ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
    sct = (bytes([0]) + hashlib.sha256(spki(ct_key)).digest() + struct.pack(">Q", timestamp_ms)
           + b"\x00\x00" + bytes([4, 3]) + struct.pack(">H", len(signature)) + signature)
    listed = struct.pack(">H", len(sct)) + sct
    sct_list = struct.pack(">H", len(listed)) + listed
    assert len(sct_list) < 128
    return x509.UnrecognizedExtension(
        x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2"), bytes([0x04, len(sct_list)]) + sct_list
    )


def leaf(intermediate, intermediate_key, subject, issuer, not_before, not_after,
         san=None, issuer_ext=issuer_extension, ct_key=None, sct_tbs=None):
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
        .add_extension(x509.SubjectAlternativeName([san or x509.RFC822Name(subject)]), critical=True)
        .add_extension(issuer_ext(issuer), critical=False)
    )
    if ct_key is not None:
        # The log signs the certificate as it is without the SCT (the precertificate).
        precertificate = builder.sign(intermediate_key, hashes.SHA384())
        timestamp_ms = int(not_before.timestamp()) * 1000
        builder = builder.add_extension(
            sct_extension(sct_tbs or precertificate.tbs_certificate_bytes, intermediate, ct_key, timestamp_ms),
            critical=False,
        )
    return builder.sign(intermediate_key, hashes.SHA384()), key


def pem(certificate):
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def der(certificate):
    return certificate.public_bytes(serialization.Encoding.DER)


def spki(key):
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def rekor_bundle(log_key, payload, signature, certificate, integrated_time, log_index=7):
    body = {
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
            "signature": {
                "content": b64(signature),
                "publicKey": {"content": b64(pem(certificate).encode())},
            },
        },
    }
    entry = {
        "body": b64(json.dumps(body).encode()),
        "integratedTime": integrated_time,
        "logID": hashlib.sha256(spki(log_key)).hexdigest(),
        "logIndex": log_index,
    }
    canonical = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    set_ = log_key.sign(canonical, ec.ECDSA(hashes.SHA256()))
    return {"SignedEntryTimestamp": b64(set_), "Payload": entry}


def trusted_root(root, intermediate, log_key, ct_key):
    start = (NOW - datetime.timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [{
            "baseUrl": "https://rekor.stella-ops.example",
            "hashAlgorithm": "SHA2_256",
            "publicKey": {
                "rawBytes": b64(spki(log_key)),
                "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                "validFor": {"start": start},
            },
            "logId": {"keyId": b64(hashlib.sha256(spki(log_key)).digest())},
        }],
        "certificateAuthorities": [{
            "subject": {"organization": "stella-ops test", "commonName": "fulcio"},
            "uri": "https://fulcio.stella-ops.example",
            "certChain": {"certificates": [{"rawBytes": b64(der(intermediate))}, {"rawBytes": b64(der(root))}]},
            "validFor": {"start": start},
        }],
        "ctlogs": [{
            "baseUrl": "https://ctfe.stella-ops.example/test",
            "hashAlgorithm": "SHA2_256",
            "publicKey": {
                "rawBytes": b64(spki(ct_key)),
                "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                "validFor": {"start": start},
            },
            "logId": {"keyId": b64(hashlib.sha256(spki(ct_key)).digest())},
        }],
    }


def main():
    payload = open(sys.argv[1], "rb").read()
    root, intermediate, intermediate_key = fulcio("fulcio")
    other_root, other_intermediate, other_intermediate_key = fulcio("untrusted")
    log_key = ec.generate_private_key(ec.SECP256R1())
    rogue_log_key = ec.generate_private_key(ec.SECP256R1())
    ct_key = ec.generate_private_key(ec.SECP256R1())
    rogue_ct_key = ec.generate_private_key(ec.SECP256R1())

    # The leaf lived ten minutes, an hour ago (expired now, as Fulcio's do); the log
    # integrated the signature while it was valid.
    lived_from = NOW - datetime.timedelta(minutes=60)
    lived_until = NOW - datetime.timedelta(minutes=50)
    signed_at = int((NOW - datetime.timedelta(minutes=55)).timestamp())

    def case(certificate, key, integrated_time=signed_at, log=log_key, chain=(intermediate, root)):
        signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
        return {
            "certificate": pem(certificate),
            "chain": "".join(pem(c) for c in chain),
            "signature": b64(signature),
            "bundle": json.dumps(rekor_bundle(log, payload, signature, certificate, integrated_time)),
        }

    good_cert, good_key = leaf(intermediate, intermediate_key, SUBJECT, ISSUER, lived_from, lived_until, ct_key=ct_key)
    cases = {"good": case(good_cert, good_key)}
    # Signed (and logged) after the certificate expired.
    cases["expired"] = case(good_cert, good_key, integrated_time=int(NOW.timestamp()) - 60)
    # The entry timestamp signed by a log key the trusted root does not hold.
    cases["rogue_log"] = case(good_cert, good_key, log=rogue_log_key)
    # A good entry whose integrated time was changed after the log signed it.
    altered = json.loads(cases["good"]["bundle"])
    altered["Payload"]["integratedTime"] += 1
    cases["altered_set"] = dict(cases["good"], bundle=json.dumps(altered))
    # The entry of another signature (another leaf) next to this signature.
    other_cert, other_key = leaf(intermediate, intermediate_key, SUBJECT, ISSUER, lived_from, lived_until, ct_key=ct_key)
    cases["other_entry"] = dict(cases["good"], bundle=case(other_cert, other_key)["bundle"])
    cases["no_bundle"] = dict(cases["good"], bundle=None)
    # Issued by a CA the trusted root does not hold (logged in the trusted log).
    stray_cert, stray_key = leaf(other_intermediate, other_intermediate_key, SUBJECT, ISSUER, lived_from, lived_until, ct_key=ct_key)
    cases["untrusted_ca"] = case(stray_cert, stray_key, chain=(other_intermediate, other_root))

    # The issuer in the legacy extension; a workflow URI as the identity.
    legacy_cert, legacy_key = leaf(intermediate, intermediate_key, SUBJECT, ISSUER, lived_from, lived_until,
                                   issuer_ext=legacy_issuer_extension, ct_key=ct_key)
    cases["legacy_issuer"] = case(legacy_cert, legacy_key)
    uri_cert, uri_key = leaf(intermediate, intermediate_key, SUBJECT, ISSUER, lived_from, lived_until,
                             san=x509.UniformResourceIdentifier(WORKFLOW), ct_key=ct_key)
    cases["uri_subject"] = case(uri_cert, uri_key)

    # No SCT; an SCT from a CT log the root does not hold.
    bare_cert, bare_key = leaf(intermediate, intermediate_key, SUBJECT, ISSUER, lived_from, lived_until)
    cases["no_sct"] = case(bare_cert, bare_key)
    rogue_cert, rogue_key = leaf(intermediate, intermediate_key, SUBJECT, ISSUER, lived_from, lived_until,
                                 ct_key=rogue_ct_key)
    cases["rogue_sct"] = case(rogue_cert, rogue_key)
    # An SCT by the trusted CT log, but for another certificate (copied over).
    copied_cert, copied_key = leaf(intermediate, intermediate_key, SUBJECT, ISSUER, lived_from, lived_until,
                                   ct_key=ct_key, sct_tbs=bare_cert.tbs_certificate_bytes)
    cases["copied_sct"] = case(copied_cert, copied_key)

    json.dump({
        "workflow": WORKFLOW,
        "subject": SUBJECT,
        "issuer": ISSUER,
        "signed_at": signed_at,
        "trusted_root": json.dumps(trusted_root(root, intermediate, log_key, ct_key)),
        "other_root": json.dumps(trusted_root(other_root, other_intermediate, log_key, ct_key)),
        "cases": cases,
    }, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
