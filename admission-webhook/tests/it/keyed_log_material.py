"""Keyed cosign signatures recorded in a Rekor-like log, made with Python `cryptography`
independently of the webhook's code, as `cosign sign --key` and `cosign attest --key` leave
them: a P-256 signing key, cosign's Rekor bundle annotation (a hashedrekord entry recording
the payload's hash, the signature and the public key, and the log's signed entry timestamp),
attestations' dsse and intoto entries, and keyed Sigstore bundles whose tlog entries carry
an inclusion proof and a SET. Each case is good except for the one thing its name says.

Usage: python keyed_log_material.py DIGEST_HEX PAYLOAD_FILE... OUT_JSON

Writes {"key_pem", "trusted_root", "signed": [{signature, bundle}] (one per payload, all
logged), "cases": {name: {signature, bundle}} (of the first payload), "attestation":
{"envelope", "cases": {name: bundle}}, "bundles": {name: bundle}}.
"""

import json
import os
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sigstore_material import (  # noqa: E402
    BUNDLE_V03, IN_TOTO, NOW, Log, b64, cosign_rekor_bundle, dsse_body, fulcio, hashedrekord_body,
    intoto_body, public_pem, sha256, sign_envelope, spki, statement, trusted_root,
)


def main():
    digest_hex = sys.argv[1]
    payloads = [open(path, "rb").read() for path in sys.argv[2:-1]]
    out = sys.argv[-1]
    root, intermediate, _ = fulcio("fulcio")
    log_key = ec.generate_private_key(ec.SECP256R1())
    rogue_log_key = ec.generate_private_key(ec.SECP256R1())
    ct_key = ec.generate_private_key(ec.SECP256R1())
    key = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    logged_at = int(NOW.timestamp()) - 300

    def sign(payload):
        return key.sign(payload, ec.ECDSA(hashes.SHA256()))

    def annotation(body, log=log_key):
        return json.dumps(cosign_rekor_bundle(log, body, logged_at, 7))

    signed = []
    for payload in payloads:
        signature = sign(payload)
        body = hashedrekord_body(sha256(payload).hex(), signature, key.public_key())
        signed.append({"signature": b64(signature), "bundle": annotation(body)})

    payload = payloads[0]
    signature = sign(payload)
    hash_hex = sha256(payload).hex()

    def case(body, log=log_key):
        return {"signature": b64(signature), "bundle": annotation(body, log)}

    good = hashedrekord_body(hash_hex, signature, key.public_key())
    cases = {
        "logged": case(good),
        "unlogged": {"signature": b64(signature), "bundle": None},
        # The entry records another key (the signature is this key's).
        "other_key": case(hashedrekord_body(hash_hex, signature, other.public_key())),
        # The entry records another signature by the same key.
        "other_signature": case(hashedrekord_body(hash_hex, sign(b"another payload"), key.public_key())),
        # The entry is of another payload.
        "other_payload": case(hashedrekord_body(sha256(b"another payload").hex(), signature, key.public_key())),
        # The SET is by a log key the trusted root does not list.
        "rogue_log": case(good, rogue_log_key),
    }

    # An attestation (cosign attest --key): a DSSE envelope of an in-toto statement.
    attested = statement(digest_hex, predicate_type="https://slsa.dev/provenance/v1",
                         predicate={"buildDefinition": {"buildType": "https://example/build"}})
    envelope, envelope_signature = sign_envelope(key, json.dumps(attested).encode())
    attestation_cases = {
        "dsse": annotation(dsse_body(envelope, envelope_signature, key.public_key())),
        "intoto": annotation(intoto_body(envelope, envelope_signature, key.public_key())),
        "other_key": annotation(dsse_body(envelope, envelope_signature, other.public_key())),
        "unlogged": None,
    }

    # Keyed Sigstore bundles of a message signature over the digest.
    digest = bytes.fromhex(digest_hex)
    message_signature = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    message_body = hashedrekord_body(digest_hex, message_signature, key.public_key())

    def keyed_bundle(entries):
        return {
            "mediaType": BUNDLE_V03,
            "verificationMaterial": {"publicKey": {"hint": b64(sha256(spki(key)))}, "tlogEntries": entries},
            "messageSignature": {"messageDigest": {"algorithm": "SHA2_256", "digest": b64(digest)},
                                 "signature": b64(message_signature)},
        }

    bundles = {
        "logged": keyed_bundle([Log(log_key).entry(message_body, logged_at)]),
        "unlogged": keyed_bundle([]),
        "other_key": keyed_bundle([Log(log_key).entry(
            hashedrekord_body(digest_hex, message_signature, other.public_key()), logged_at)]),
        "rogue_log": keyed_bundle([Log(rogue_log_key).entry(message_body, logged_at)]),
    }

    json.dump({
        "key_pem": public_pem(key),
        "trusted_root": json.dumps(trusted_root(root, intermediate, log_key, ct_key)),
        "signed": signed,
        "cases": cases,
        "attestation": {"envelope": json.dumps(envelope), "payload_type": IN_TOTO, "cases": attestation_cases},
        "bundles": bundles,
    }, open(out, "w"))


if __name__ == "__main__":
    main()
