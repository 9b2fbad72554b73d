"""Attestation test material made with Python `cryptography` and plain HTTP, independently of
the webhook's code: small images pushed to a test registry, in-toto Statements about them in
DSSE envelopes signed with ECDSA P-256 (a key pair, or a short-lived Fulcio-like certificate
with a Rekor-like log entry of kind dsse or intoto and its signed entry timestamp), stored as
cosign stores attestations: a manifest tagged `sha256-<hex>.att` whose layers are the
envelopes (`application/vnd.dsse.envelope.v1+json`, annotations `predicateType` and, keyless,
`dev.sigstore.cosign/{certificate,chain,bundle}`).

Usage: python attestation_material.py REGISTRY REPOSITORY OUT_JSON

Each case is an image tagged with the case's name; each is good except for the one thing its
name says. Writes {"key_pem", "other_key_pem", "trusted_root", "subject", "issuer",
"images": {case: "REGISTRY/REPOSITORY@sha256:..."}, "envelopes": {name: envelope JSON}}.
"""

import base64
import datetime
import hashlib
import json
import os
import struct
import sys
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SLSA = "https://slsa.dev/provenance/v1"
CYCLONEDX = "https://cyclonedx.org/bom"
SUBJECT = "release@stella-ops.example"
ISSUER = "https://issuer.stella-ops.example"
NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def b64(data):
    return base64.b64encode(data).decode()


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


def pae(payload_type, payload):
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def envelope(statement, key, payload=None):
    """A DSSE envelope of `statement` signed by `key` (over `payload` when given: tampering)."""
    body = json.dumps(statement).encode()
    signed = body if payload is None else payload
    signature = key.sign(pae("application/vnd.in-toto+json", signed), ec.ECDSA(hashes.SHA256()))
    return {"payloadType": "application/vnd.in-toto+json", "payload": b64(body),
            "signatures": [{"keyid": "", "sig": b64(signature)}]}, signature


def keyed_annotations(statement):
    return {"dev.cosignproject.cosign/signature": "", "predicateType": statement["predicateType"]}


# --- a Fulcio-like CA, a CT log and a Rekor-like log -----------------------------------------

def name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "stella-ops attest test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def ca(common_name, key, issuer_name, issuer_key, path_length):
    return (x509.CertificateBuilder().subject_name(name(common_name)).issuer_name(issuer_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=30))
            .not_valid_after(NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                           critical=True)
            .sign(issuer_key, hashes.SHA384()))


def spki(key):
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def pem(certificate):
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def der(certificate):
    return certificate.public_bytes(serialization.Encoding.DER)


def sct_extension(tbs, issuer_certificate, ct_key, timestamp_ms):
    issuer_key_hash = hashlib.sha256(issuer_certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest()
    signed = (struct.pack(">BBQH", 0, 0, timestamp_ms, 1) + issuer_key_hash
              + len(tbs).to_bytes(3, "big") + tbs + b"\x00\x00")
    signature = ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
    sct = (bytes([0]) + hashlib.sha256(spki(ct_key)).digest() + struct.pack(">Q", timestamp_ms)
           + b"\x00\x00" + bytes([4, 3]) + struct.pack(">H", len(signature)) + signature)
    listed = struct.pack(">H", len(sct)) + sct
    sct_list = struct.pack(">H", len(listed)) + listed
    return x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2"),
                                      bytes([0x04, len(sct_list)]) + sct_list)


def leaf(intermediate, intermediate_key, ct_key, not_before, not_after):
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = ISSUER.encode()
    builder = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(intermediate.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                              critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
               .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(SUBJECT)]), critical=True)
               .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8"),
                                                         bytes([0x0C, len(issuer)]) + issuer), critical=False))
    precertificate = builder.sign(intermediate_key, hashes.SHA384())
    builder = builder.add_extension(
        sct_extension(precertificate.tbs_certificate_bytes, intermediate, ct_key,
                      int(not_before.timestamp()) * 1000), critical=False)
    return builder.sign(intermediate_key, hashes.SHA384()), key


def rekor_bundle(log_key, kind, env, signature, certificate, integrated_time):
    payload = base64.b64decode(env["payload"])
    verifier = b64(pem(certificate).encode())
    if kind == "dsse":
        body = {"apiVersion": "0.0.1", "kind": "dsse", "spec": {
            "envelopeHash": {"algorithm": "sha256", "value": sha256(json.dumps(env).encode())},
            "payloadHash": {"algorithm": "sha256", "value": sha256(payload)},
            "signatures": [{"signature": b64(signature), "verifier": verifier}]}}
    else:
        body = {"apiVersion": "0.0.2", "kind": "intoto", "spec": {"content": {
            "envelope": {"payloadType": env["payloadType"],
                         "signatures": [{"publicKey": verifier, "sig": b64(b64(signature).encode())}]},
            "hash": {"algorithm": "sha256", "value": sha256(json.dumps(env).encode())},
            "payloadHash": {"algorithm": "sha256", "value": sha256(payload)}}}}
    entry = {"body": b64(json.dumps(body).encode()), "integratedTime": integrated_time,
             "logID": sha256(spki(log_key)), "logIndex": 42}
    canonical = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    return json.dumps({"SignedEntryTimestamp": b64(log_key.sign(canonical, ec.ECDSA(hashes.SHA256()))),
                       "Payload": entry})


def trusted_root(root, intermediate, log_key, ct_key):
    start = (NOW - datetime.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def log(key):
        return {"baseUrl": "https://log.stella-ops.example", "hashAlgorithm": "SHA2_256",
                "publicKey": {"rawBytes": b64(spki(key)), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                              "validFor": {"start": start}},
                "logId": {"keyId": b64(hashlib.sha256(spki(key)).digest())}}
    return {"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(log_key)], "ctlogs": [log(ct_key)],
            "certificateAuthorities": [{
                "subject": {"organization": "stella-ops attest test", "commonName": "fulcio"},
                "uri": "https://fulcio.stella-ops.example",
                "certChain": {"certificates": [{"rawBytes": b64(der(intermediate))},
                                               {"rawBytes": b64(der(root))}]},
                "validFor": {"start": start}}]}


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
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = ca("fulcio root", root_key, name("fulcio root"), root_key, 1)
    intermediate_key = ec.generate_private_key(ec.SECP384R1())
    intermediate = ca("fulcio intermediate", intermediate_key, root.subject, root_key, 0)
    log_key = ec.generate_private_key(ec.SECP256R1())
    ct_key = ec.generate_private_key(ec.SECP256R1())
    lived_from = NOW - datetime.timedelta(minutes=60)
    certificate, leaf_key = leaf(intermediate, intermediate_key, ct_key, lived_from,
                                 NOW - datetime.timedelta(minutes=50))
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

    json.dump({
        "key_pem": key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        "other_key_pem": other_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        "trusted_root": json.dumps(trusted_root(root, intermediate, log_key, ct_key)),
        "subject": SUBJECT,
        "issuer": ISSUER,
        "images": images,
        "envelopes": envelopes,
    }, open(out, "w"))


main()
