"""Sigstore bundles made with Python `cryptography`, independently of the webhook's code: a
root CA and intermediate acting as Fulcio, a log key acting as Rekor that keeps a real
RFC 6962 Merkle tree (leaf hash SHA-256(0x00 || body), node hash SHA-256(0x01 || l || r)),
signs checkpoints (signed notes) and signed entry timestamps, and a CT log key signing the
certificate's embedded SCT (all in sigstore_material.py, shared with the other scripts).

Usage: python bundle_material.py IMAGE_DIGEST OUT_JSON

Writes {"trusted_root", "other_root", "subject", "issuer", "digest", "cases": {name:
bundle JSON text}}; each case is good except for the one thing its name says. The same
files are handed to sigstore-python by bundle_crosscheck.py.
"""

import base64
import datetime
import json
import os
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sigstore_material import (  # noqa: E402
    BUNDLE_V02, BUNDLE_V03, GITHUB_BUILD, GITHUB_BUILD_LEGACY, ISSUER, NOW, SUBJECT, Log, b64, bundle_signature,
    dsse_bundle as sign_dsse, LogV2, fulcio, fulcio_extension, issuer_extension, leaf,
    legacy_github_extension, legacy_issuer_extension, message_bundle, public_pem, sha256, spki, statement, timestamp, trusted_root, tsa,
    v2_dsse_bundle, v2_message_bundle, with_timestamps,
)
from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: E402


def dsse_bundle(log, certificate, key, digest_hex, integrated_time):
    """cosign's image signature as a DSSE bundle: its statement about `digest_hex`."""
    return sign_dsse(log, certificate, key, json.dumps(statement(digest_hex)).encode(), integrated_time)


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
    certificate, key = leaf(intermediate, intermediate_key, lived_from, lived_until, ct_key=ct_key)

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
    tampered["dsseEnvelope"]["payload"] = b64(json.dumps(statement("00" * 32)).encode())
    cases["tampered_payload"] = tampered
    # A good signature of another image.
    cases["other_digest"] = message_bundle(log, certificate, key, "11" * 32, signed_at)
    # A certificate from a CA the trusted root does not hold.
    stray_certificate, stray_key = leaf(other_intermediate, other_intermediate_key, lived_from, lived_until,
                                        ct_key=ct_key)
    cases["untrusted_ca"] = dsse_bundle(log, stray_certificate, stray_key, digest_hex, signed_at)
    # A certificate stating what a GitHub Actions build's does (source repository, ref,
    # commit, runner environment, trigger), for the extension policies.
    github_extensions = [legacy_issuer_extension, issuer_extension] + [
        (lambda _issuer, oid=oid, value=value: fulcio_extension(oid, value)) for oid, value in GITHUB_BUILD.items()]
    github_extensions += [
        (lambda _issuer, oid=oid, value=value: legacy_github_extension(oid, value))
        for oid, value in GITHUB_BUILD_LEGACY.items()]
    github_certificate, github_key = leaf(intermediate, intermediate_key, lived_from, lived_until, ct_key=ct_key,
                                          issuer_extensions=github_extensions)
    cases["good_github"] = message_bundle(log, github_certificate, github_key, digest_hex, signed_at)

    # RFC 3161 timestamps on a bundle whose log entry has only an inclusion proof (no SET):
    # the timestamp authority's time is the signing time.
    authority = tsa("stella-ops")
    stray_authority = tsa("untrusted")
    signature = bundle_signature(proof_only)
    at = datetime.datetime.fromtimestamp(signed_at, datetime.timezone.utc)
    cases["tsa_proof_only"] = with_timestamps(proof_only, timestamp(authority, signature, at))
    stamped_message = message_bundle(log, certificate, key, digest_hex, signed_at)
    cases["tsa_message"] = with_timestamps(
        stamped_message, timestamp(authority, bundle_signature(stamped_message), at))
    # Stamped after the certificate expired.
    cases["tsa_late"] = with_timestamps(proof_only, timestamp(authority, signature, NOW - datetime.timedelta(minutes=1)))
    # Stamping other bytes than this bundle's signature.
    cases["tsa_other_signature"] = with_timestamps(proof_only, timestamp(authority, b"another signature", at))
    # Stamped by an authority the trusted root does not list.
    cases["tsa_untrusted"] = with_timestamps(proof_only, timestamp(stray_authority, signature, at))
    # The time changed after signing (a byte of the TSTInfo's genTime, inside the token).
    good_token = timestamp(authority, signature, at)
    when = at.strftime("%Y%m%d%H%M%SZ").encode()
    assert good_token.count(when) == 1
    cases["tsa_tampered"] = with_timestamps(proof_only, good_token.replace(when, when[:3] + b"0" + when[4:]))

    # Rekor v2: entries with an inclusion proof and a checkpoint signed (Ed25519) by a log
    # whose ID is its signed-note key ID; the time from an RFC 3161 timestamp.
    v2_log = LogV2(ed25519.Ed25519PrivateKey.generate())
    v2_message = v2_message_bundle(v2_log, certificate, key, digest_hex)
    cases["v2_message"] = with_timestamps(v2_message, timestamp(authority, bundle_signature(v2_message), at))
    v2_dsse = v2_dsse_bundle(v2_log, certificate, key, json.dumps(statement(digest_hex)).encode())
    cases["v2_dsse"] = with_timestamps(v2_dsse, timestamp(authority, bundle_signature(v2_dsse), at))
    # No timestamp: a v2 entry signs no time.
    cases["v2_no_time"] = v2_message
    # The checkpoint signed by another Ed25519 key (with the log's key hint).
    rogue_v2 = json.loads(json.dumps(cases["v2_message"]))
    proof = rogue_v2["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
    proof["checkpoint"]["envelope"] = v2_log.checkpoint(
        int(proof["treeSize"]), base64.b64decode(proof["rootHash"]), key=ed25519.Ed25519PrivateKey.generate())
    cases["v2_rogue_checkpoint"] = rogue_v2
    # The entry of another signature (a good entry, logged, but not this bundle's).
    other_v2 = v2_message_bundle(v2_log, certificate, key, digest_hex)
    swapped = json.loads(json.dumps(cases["v2_message"]))
    swapped["verificationMaterial"]["tlogEntries"] = other_v2["verificationMaterial"]["tlogEntries"]
    cases["v2_other_entry"] = swapped

    # A keyed bundle: a public-key hint, a message signature by a P-256 key, no log entry
    # (sigstore-python does not verify keyed bundles; the webhook checks the policy's keys).
    keyed_key = ec.generate_private_key(ec.SECP256R1())
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
            "public_key": public_pem(keyed_key),
        },
        "subject": SUBJECT,
        "issuer": ISSUER,
        "digest": "sha256:" + digest_hex,
        "trusted_root": json.dumps(trusted_root(root, intermediate, log.key, ct_key, tsa=authority, v2_log=v2_log)),
        "other_root": json.dumps(trusted_root(other_root, other_intermediate, log.key, ct_key, tsa=authority)),
        "cases": {name: json.dumps(bundle) for name, bundle in cases.items()},
    }, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
