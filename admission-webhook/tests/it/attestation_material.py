"""Attestation test material made with Python `cryptography` and plain HTTP, independently of
the webhook's code: small images pushed to a test registry, in-toto Statements about them in
DSSE envelopes signed with ECDSA P-256 (a key pair, or a short-lived Fulcio-like certificate
with a Rekor-like log entry of kind dsse or intoto and its signed entry timestamp), stored as
cosign stores attestations: a manifest tagged `sha256-<hex>.att` whose layers are the
envelopes (`application/vnd.dsse.envelope.v1+json`, annotations `predicateType` and, keyless,
`dev.sigstore.cosign/{certificate,chain,bundle}`).

Usage: python attestation_material.py REGISTRY REPOSITORY OUT_JSON

Also Sigstore bundles whose content is a DSSE attestation (what `cosign attest
--new-bundle-format` and `sigstore attest` make), signed by the same certificate and logged
in a Rekor-like log keeping a Merkle tree (SET, inclusion proof, checkpoint), with entries
of kind dsse 0.0.1 or intoto 0.0.2; the test pushes them as OCI referrers. The CA, logs and
entries come from sigstore_material.py, shared with the other material scripts.

Each case is an image tagged with the case's name; each is good except for the one thing its
name says. Writes {"key_pem", "other_key_pem", "trusted_root", "subject", "issuer",
"images": {case: "REGISTRY/REPOSITORY@sha256:..."}, "envelopes": {name: envelope JSON},
"bundles": the bundles in the form bundle_crosscheck.py reads}.
"""

import datetime
import hashlib
import json
import os
import sys
import urllib.request

from cryptography.hazmat.primitives.asymmetric import ec

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sigstore_material import (  # noqa: E402
    ISSUER, NOW, SUBJECT, Log, b64, cosign_rekor_bundle, dsse_body, dsse_bundle, fulcio, intoto_body, leaf,
    pem, public_pem, sign_envelope, trusted_root,
)

SLSA = "https://slsa.dev/provenance/v1"
CYCLONEDX = "https://cyclonedx.org/bom"


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# --- the registry, over plain HTTP -------------------------------------------------------

def request(method, url, body=None, content_type=None):
    req = urllib.request.Request(url, data=body, method=method)
    if content_type:
        req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=30) as response:
        return response.status, response.headers


def upload_blob(registry, repository, data):
    digest = "sha256:" + sha256(data)
    status, headers = request("POST", f"http://{registry}/v2/{repository}/blobs/uploads/")
    assert status == 202, status
    location = headers["Location"]
    if not location.startswith("http"):
        location = f"http://{registry}{location}"
    separator = "&" if "?" in location else "?"
    status, _ = request("PUT", f"{location}{separator}digest={digest}", data, "application/octet-stream")
    assert status == 201, status
    return digest


def push_manifest(registry, repository, reference, manifest):
    data = json.dumps(manifest).encode()
    status, _ = request("PUT", f"http://{registry}/v2/{repository}/manifests/{reference}", data,
                        "application/vnd.oci.image.manifest.v1+json")
    assert status == 201, status
    return "sha256:" + sha256(data)


def push_image(registry, repository, tag):
    layer = os.urandom(64)
    layer_digest = upload_blob(registry, repository, layer)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}).encode()
    config_digest = upload_blob(registry, repository, config)
    return push_manifest(registry, repository, tag, {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": len(layer)}],
    })


def push_attestations(registry, repository, image_digest, layers):
    """cosign's layout: one manifest under sha256-<hex>.att, one layer per envelope."""
    config = b'{"architecture":"","config":{},"os":"","rootfs":{"type":"layers","diff_ids":[]}}'
    config_digest = upload_blob(registry, repository, config)
    descriptors = []
    for envelope, annotations in layers:
        data = json.dumps(envelope).encode()
        descriptors.append({"mediaType": "application/vnd.dsse.envelope.v1+json",
                            "digest": upload_blob(registry, repository, data), "size": len(data),
                            "annotations": annotations})
    tag = image_digest.replace(":", "-", 1) + ".att"
    push_manifest(registry, repository, tag, {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config)},
        "layers": descriptors,
    })


# --- statements and DSSE -----------------------------------------------------------------

def provenance(digest, repository="https://github.com/example/app",
               builder="https://github.com/example/app/.github/workflows/release.yml@refs/tags/v1"):
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "app", "digest": {"sha256": digest.split(":", 1)[1]}}],
        "predicateType": SLSA,
        "predicate": {
            "buildDefinition": {
                "buildType": "https://actions.github.io/buildtypes/workflow/v1",
                "externalParameters": {"workflow": {"ref": "refs/tags/v1", "repository": repository,
                                                    "path": ".github/workflows/release.yml"}},
                "resolvedDependencies": [{"uri": "git+https://github.com/example/app@refs/tags/v1",
                                          "digest": {"gitCommit": "a" * 40}}],
            },
            "runDetails": {"builder": {"id": builder}, "metadata": {"invocationId": "1"}},
        },
    }


def sbom(digest):
    return {"_type": "https://in-toto.io/Statement/v0.1",
            "subject": [{"name": "app", "digest": {"sha256": digest.split(":", 1)[1]}}],
            "predicateType": CYCLONEDX,
            "predicate": {"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []}}


def envelope(statement, key, payload=None):
    """A DSSE envelope of `statement` signed by `key` (over `payload` when given: tampering)."""
    return sign_envelope(key, json.dumps(statement).encode(), signed=payload)


def keyed_annotations(statement):
    return {"dev.cosignproject.cosign/signature": "", "predicateType": statement["predicateType"]}


# --- keyless: a Fulcio-like CA, a CT log and a Rekor-like log (sigstore_material.py) --------

def rekor_bundle(log_key, kind, env, signature, certificate, integrated_time):
    """cosign's Rekor bundle annotation of an attestation: a dsse or intoto entry."""
    body = (dsse_body if kind == "dsse" else intoto_body)(env, signature, certificate)
    return json.dumps(cosign_rekor_bundle(log_key, body, integrated_time, 42))


def main():
    registry, repository, out = sys.argv[1], sys.argv[2], sys.argv[3]
    key = ec.generate_private_key(ec.SECP256R1())
    other_key = ec.generate_private_key(ec.SECP256R1())
    images, envelopes = {}, {}

    def image(case):
        digest = push_image(registry, repository, case)
        images[case] = f"{registry}/{repository}@{digest}"
        return digest

    # Keyed: good; none; another key; about another digest; payload changed after signing;
    # only another predicate type.
    digest = image("keyed")
    good, _ = envelope(provenance(digest), key)
    envelopes["keyed"] = good
    sbom_envelope, _ = envelope(sbom(digest), key)
    push_attestations(registry, repository, digest, [(sbom_envelope, keyed_annotations(sbom(digest))),
                                                     (good, keyed_annotations(provenance(digest)))])
    image("missing")
    digest = image("wrong_key")
    statement = provenance(digest)
    push_attestations(registry, repository, digest, [(envelope(statement, other_key)[0], keyed_annotations(statement))])
    digest = image("wrong_subject")
    statement = provenance("sha256:" + "0" * 64)
    push_attestations(registry, repository, digest, [(envelope(statement, key)[0], keyed_annotations(statement))])
    digest = image("tampered")
    signed_statement = provenance(digest)
    statement = provenance(digest, builder="https://evil.example/builder")
    tampered, _ = envelope(statement, key, payload=json.dumps(signed_statement).encode())
    push_attestations(registry, repository, digest, [(tampered, keyed_annotations(statement))])
    digest = image("only_sbom")
    push_attestations(registry, repository, digest, [(envelope(sbom(digest), key)[0], keyed_annotations(sbom(digest)))])
    # For a referrer pushed by the test (artifactType application/vnd.dsse.envelope.v1+json).
    digest = image("referrer")
    envelopes["referrer"] = envelope(provenance(digest), key)[0]

    # Keyless: a certificate that lived ten minutes an hour ago, the entry logged then.
    root, intermediate, intermediate_key = fulcio("fulcio")
    log_key = ec.generate_private_key(ec.SECP256R1())
    ct_key = ec.generate_private_key(ec.SECP256R1())
    lived_from = NOW - datetime.timedelta(minutes=60)
    certificate, leaf_key = leaf(intermediate, intermediate_key, lived_from, NOW - datetime.timedelta(minutes=50),
                                 ct_key=ct_key)
    signed_at = int((NOW - datetime.timedelta(minutes=55)).timestamp())
    chain = pem(intermediate) + pem(root)

    def keyless(statement, kind="dsse", entry_of=None):
        env, signature = envelope(statement, leaf_key)
        logged_env, logged_signature = entry_of or (env, signature)
        return env, {"dev.cosignproject.cosign/signature": "", "predicateType": statement["predicateType"],
                     "dev.sigstore.cosign/certificate": pem(certificate),
                     "dev.sigstore.cosign/chain": chain,
                     "dev.sigstore.cosign/bundle": rekor_bundle(log_key, kind, logged_env, logged_signature,
                                                                certificate, signed_at)}

    for case, kind in (("keyless", "dsse"), ("keyless_intoto", "intoto")):
        digest = image(case)
        push_attestations(registry, repository, digest, [keyless(provenance(digest), kind)])
    # The log entry of another signature (over another statement) next to this one.
    digest = image("keyless_other_entry")
    other = envelope(provenance("sha256:" + "1" * 64), leaf_key)
    push_attestations(registry, repository, digest, [keyless(provenance(digest), "dsse", entry_of=other)])

    # Sigstore bundles whose content is a DSSE attestation (what `cosign attest
    # --new-bundle-format` and `sigstore attest` make), for the OCI referrers the test pushes:
    # the same certificate, the entry in a Merkle-tree log of the same key (SET, inclusion
    # proof, checkpoint), of kind dsse 0.0.1 or intoto 0.0.2.
    log = Log(log_key)
    bundles = {}

    def attestation_bundle(case, statement, kind="dsse"):
        digest = image(case)
        signed = dsse_bundle(log, certificate, leaf_key, json.dumps(statement(digest)).encode(), signed_at, kind=kind)
        bundles[case] = {"digest": digest, "bundle": signed}
        return signed

    attestation_bundle("bundle", provenance)
    attestation_bundle("bundle_intoto", provenance, kind="intoto")
    # The statement changed after signing (another builder).
    tampered = attestation_bundle("bundle_tampered", provenance)
    tampered["dsseEnvelope"]["payload"] = b64(json.dumps(
        provenance(bundles["bundle_tampered"]["digest"], builder="https://evil.example/builder")).encode())
    # A valid attestation about another image.
    attestation_bundle("bundle_other_subject", lambda _: provenance("sha256:" + "2" * 64))
    # No transparency log entry.
    attestation_bundle("bundle_no_tlog", provenance)["verificationMaterial"]["tlogEntries"] = []
    other_root, other_intermediate, _ = fulcio("untrusted")

    json.dump({
        "key_pem": public_pem(key),
        "other_key_pem": public_pem(other_key),
        "trusted_root": json.dumps(trusted_root(root, intermediate, log_key, ct_key)),
        "subject": SUBJECT,
        "issuer": ISSUER,
        "images": images,
        "envelopes": envelopes,
        # In the form bundle_crosscheck.py reads.
        "bundles": {
            "trusted_root": json.dumps(trusted_root(root, intermediate, log_key, ct_key)),
            "other_root": json.dumps(trusted_root(other_root, other_intermediate, log_key, ct_key)),
            "subject": SUBJECT,
            "issuer": ISSUER,
            "predicate_type": SLSA,
            "good": "bundle",
            "cases": {case: {"digest": b["digest"], "bundle": json.dumps(b["bundle"])} for case, b in bundles.items()},
        },
    }, open(out, "w"))


main()
