"""The independent verdict on the bundles of bundle_material.py: sigstore-python (PyPI
`sigstore`, the Sigstore project's own Python client) verifies each one offline against the
same custom trusted root (`TrustedRoot.from_file` + `Verifier(trusted_root=...)`: no TUF,
no network) under an identity policy, then, as the webhook does for an image signature,
checks what was signed: the message digest is the image's, or the DSSE statement is an
in-toto statement of the expected predicate type naming the image's digest.

Usage: python bundle_crosscheck.py MATERIAL_JSON OUT_JSON

MATERIAL_JSON: {"trusted_root", "other_root", "subject", "issuer", "cases"} and either
"digest" (every case is about it; each case is the bundle's JSON text) or cases
{"digest", "bundle"} each; "predicate_type" (default cosign's image signature) and "good"
(the case the identity and root scenarios use, default "good") are optional.

"extension_scenarios" ([name, case, {extension name: value}], with a "good_github" case)
adds scenarios under Fulcio extension policies as well as the identity.

Writes {scenario: "ok" | "refused: <reason>"} for the scenarios `scenarios` lists
(name, case, root, identity, issuer, extensions).
"""

import base64
import json
import os
import sys
import tempfile

from sigstore.hashes import Hashed
from sigstore.models import Bundle, TrustedRoot
from sigstore.verify import Verifier, policy
from sigstore_models.common.v1 import HashAlgorithm

SIGN_PREDICATE_TYPE = "https://sigstore.dev/cosign/sign/v1"
IN_TOTO = "application/vnd.in-toto+json"


# The policy's names of Fulcio's extensions (ZastavaPolicy certificateExtensions) and
# sigstore-python's policies checking them.
EXTENSION_POLICIES = {
    "runnerEnvironment": policy.OIDCRunnerEnvironment,
    "sourceRepositoryURI": policy.OIDCSourceRepositoryURI,
    "sourceRepositoryDigest": policy.OIDCSourceRepositoryDigest,
    "sourceRepositoryRef": policy.OIDCSourceRepositoryRef,
    "buildTrigger": policy.OIDCBuildTrigger,
    "githubWorkflowTrigger": policy.GitHubWorkflowTrigger,
    "githubWorkflowSHA": policy.GitHubWorkflowSHA,
    "githubWorkflowRepository": policy.GitHubWorkflowRepository,
    "githubWorkflowRef": policy.GitHubWorkflowRef,
}


def scenarios(material):
    subject, issuer = material["subject"], material["issuer"]
    good = material.get("good", "good")
    listed = [(case, case, "trusted_root", subject, issuer, {}) for case in material["cases"]]
    listed += [
        ("wrong_identity", good, "trusted_root", "someone-else@stella-ops.example", issuer, {}),
        ("wrong_issuer", good, "trusted_root", subject, "https://accounts.example.com", {}),
        ("untrusted_root", good, "other_root", subject, issuer, {}),
    ]
    # Fulcio extension policies, when the material has a GitHub build's certificate.
    if "good_github" in material["cases"]:
        listed += [(name, case, "trusted_root", subject, issuer, extensions)
                   for name, case, extensions in material["extension_scenarios"]]
    return listed


def verify(material, case, root, identity, issuer, extensions):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write(material[root])
    try:
        verifier = Verifier(trusted_root=TrustedRoot.from_file(f.name))
    finally:
        os.unlink(f.name)
    held = material["cases"][case]
    if isinstance(held, dict):
        bundle, digest = Bundle.from_json(held["bundle"]), held["digest"]
    else:
        bundle, digest = Bundle.from_json(held), material["digest"]
    predicate_type = material.get("predicate_type", SIGN_PREDICATE_TYPE)
    identity_policy = policy.Identity(identity=identity, issuer=issuer)
    if extensions:
        identity_policy = policy.AllOf(
            [identity_policy] + [EXTENSION_POLICIES[name](value) for name, value in extensions.items()])
    digest_hex = digest.removeprefix("sha256:")
    if bundle._inner.dsse_envelope is not None:
        payload_type, payload = verifier.verify_dsse(bundle, identity_policy)
        if payload_type != IN_TOTO:
            raise ValueError(f"payload type {payload_type}")
        statement = json.loads(payload)
        if statement.get("predicateType") != predicate_type:
            raise ValueError(f"predicate type {statement.get('predicateType')}, not {predicate_type}")
        if not any(s.get("digest", {}).get("sha256") == digest_hex for s in statement.get("subject", [])):
            raise ValueError("statement is for another digest")
    else:
        hashed = Hashed(algorithm=HashAlgorithm.SHA2_256, digest=bytes.fromhex(digest_hex))
        verifier.verify_artifact(hashed, bundle, identity_policy)


def main():
    material = json.load(open(sys.argv[1]))
    verdicts = {}
    for name, case, root, identity, issuer, extensions in scenarios(material):
        try:
            verify(material, case, root, identity, issuer, extensions)
            verdicts[name] = "ok"
        except Exception as e:  # every failure is a refusal, with its reason
            verdicts[name] = f"refused: {type(e).__name__}: {e}"[:400]
    json.dump(verdicts, open(sys.argv[2], "w"), indent=1)


if __name__ == "__main__":
    main()
