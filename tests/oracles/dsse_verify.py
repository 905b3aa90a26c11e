"""Verify a DSSE envelope with securesystemslib (an implementation independent of ceremony-os).

Usage: dsse_verify.py ENVELOPE SSH_PUBLIC_KEY_FILE
Exit 0 and print the payload when the envelope carries a valid signature by that key.
"""
import json
import sys

from cryptography.hazmat.primitives.serialization import load_ssh_public_key
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey


def main() -> int:
    envelope_path, key_path = sys.argv[1], sys.argv[2]
    with open(envelope_path, "rb") as f:
        data = json.load(f)
    with open(key_path, "rb") as f:
        public = load_ssh_public_key(f.read())
    keyid = data["signatures"][0]["keyid"]
    key = SSlibKey.from_crypto(public, keyid=keyid)
    envelope = Envelope.from_dict(data)
    envelope.verify([key], 1)
    sys.stdout.write(envelope.payload.decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
