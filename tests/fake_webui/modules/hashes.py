"""``modules.hashes`` (v1.10.1): ``sha256(filename, title, use_addnet_hash)`` — with ``use_addnet_hash`` the sha256
of a safetensors file's tensor data (after its JSON header), else of the whole file (no cache here). Forge and Neo
replace it with a whole-file hash whatever the flag says (``tests/forge.py``)."""

import hashlib


def sha256(filename, title, use_addnet_hash=False):
    with open(filename, "rb") as handle:
        data = handle.read()
    if use_addnet_hash:
        header = int.from_bytes(data[:8], "little")
        data = data[8 + header :]
    return hashlib.sha256(data).hexdigest()
