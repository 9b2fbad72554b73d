"""Keyless cosign signature material made with Python `cryptography`, independently of the
webhook's code: a root CA and intermediate acting as Fulcio, a log key acting as Rekor, a
short-lived leaf certificate for an identity, the simple-signing payload signed by the leaf
key, and cosign's Rekor bundle (a hashedrekord entry and the log's signed entry timestamp
over the canonical JSON of the entry).

Usage: python keyless_material.py PAYLOAD_FILE OUT_JSON

Writes {"trusted_root": ..., "other_root": ..., "cases": {name: {certificate, chain,
signature, bundle}}}; each case is good except for the one thing its name says.
"""

import datetime
import json
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sigstore_material import (  # noqa: E402
    ISSUER, NOW, SUBJECT, b64, cosign_rekor_bundle, fulcio, hashedrekord_body, issuer_extension,
    legacy_issuer_extension, leaf as fulcio_leaf, pem, sha256, trusted_root,
)

WORKFLOW = "https://github.com/example/app/.github/workflows/release.yml@refs/tags/v1.2.3"


def leaf(intermediate, intermediate_key, subject, issuer, not_before, not_after,
         san=None, issuer_ext=issuer_extension, ct_key=None, sct_tbs=None):
    """A Fulcio-like leaf with one issuer extension (the current one unless told)."""
    return fulcio_leaf(intermediate, intermediate_key, not_before, not_after, subject=subject, issuer=issuer,
                       san=san, issuer_extensions=(issuer_ext,), ct_key=ct_key, sct_tbs=sct_tbs)


def rekor_bundle(log_key, payload, signature, certificate, integrated_time, log_index=7):
    """cosign's Rekor bundle annotation: a hashedrekord entry of the payload's SHA-256."""
    body = hashedrekord_body(sha256(payload).hex(), signature, certificate)
    return cosign_rekor_bundle(log_key, body, integrated_time, log_index)


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
