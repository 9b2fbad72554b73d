#!/usr/bin/env python3
"""Write the rfc3161_timestamp fuzz target's fixed trusted root (fuzz/rfc3161_trusted_root.json,
compiled into the target) and its seed: an RFC 3161 response of that root's timestamp
authority stamping the target's fixed signature bytes. Made by the Sigstore test material of
admission-webhook/tests/it (Python `cryptography` and asn1crypto), so run it with the test
venv: .test-services/venv/bin/python fuzz/rfc3161_seed.py (new keys each time: the root and
the seed are written together)."""
import datetime
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(HERE, "..", "admission-webhook", "tests", "it"))
from sigstore_material import NOW, fulcio, timestamp, trusted_root, tsa  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

# The signature bytes the target asks each response to stamp.
SIGNATURE = b"stellaops fuzz signature"

root, intermediate, _ = fulcio("fuzz")
authority = tsa("fuzz")
key = ec.generate_private_key(ec.SECP256R1())
with open(os.path.join(HERE, "rfc3161_trusted_root.json"), "w") as f:
    json.dump(trusted_root(root, intermediate, key, key, tsa=authority), f, indent=1)
os.makedirs(os.path.join(HERE, "corpus", "rfc3161_timestamp"), exist_ok=True)
with open(os.path.join(HERE, "corpus", "rfc3161_timestamp", "granted"), "wb") as f:
    f.write(timestamp(authority, SIGNATURE, NOW - datetime.timedelta(days=1)))
