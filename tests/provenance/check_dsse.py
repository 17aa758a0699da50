"""Checks a DSSE envelope hab attached, with tools hab did not write.

    check_dsse.py ENVELOPE.json HABD.pub

Verifies the envelope's signature with habd's public key (PEM) through
securesystemslib's DSSE Envelope and in-toto's (in_toto.models.metadata),
then prints, as JSON, what the in-toto Statement inside says: its type,
predicate type, subject digests, and the embedded tag object (base64).
Exits non-zero, with the library's reason, when the signature does not
verify.
"""

import copy
import json
import sys

from cryptography.hazmat.primitives.serialization import load_pem_public_key
from in_toto.models.metadata import Envelope as InTotoEnvelope
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

envelope_path, key_path = sys.argv[1:3]
with open(envelope_path, "rb") as f:
    raw = json.load(f)
with open(key_path, "rb") as f:
    key = SSlibKey.from_crypto(load_pem_public_key(f.read()))

try:
    # Each raises VerificationError unless a signature of `key` verifies.
    Envelope.from_dict(copy.deepcopy(raw)).verify([key], 1)
    InTotoEnvelope.from_dict(copy.deepcopy(raw)).verify([key], 1)
except Exception as e:  # noqa: BLE001 - the library's reason is the output
    print(f"does not verify: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)

envelope = Envelope.from_dict(copy.deepcopy(raw))
statement = json.loads(envelope.payload)
deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
tag = next((d for d in deps if d.get("name") == "tag"), {})
print(
    json.dumps(
        {
            "keyid": key.keyid,
            "payloadType": envelope.payload_type,
            "type": statement["_type"],
            "predicateType": statement["predicateType"],
            "subjects": ["sha256:" + s["digest"]["sha256"] for s in statement["subject"]],
            "tag": tag.get("content", ""),
            "gitTag": tag.get("digest", {}).get("gitTag", ""),
            "commit": next(d for d in deps if d["name"] == "source")["digest"]["gitCommit"],
        }
    )
)
