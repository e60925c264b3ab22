"""Where a `.tflite` file's metadata lives and the digest that seals the two together."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

FORMAT_VERSION = 1
METADATA_SUFFIX = ".json"
#: The metadata field that seals a `.tflite` file and its metadata together.
INTEGRITY_FIELD = "integrity"
INTEGRITY_ALGORITHM = "sha256"
_INTEGRITY_DOMAIN = b"keras_deepad.tflite integrity 1\n"
_REEXPORT = "re-export the model with keras_deepad.export.export_tflite"


def metadata_path(tflite_path) -> Path:
    """Where the metadata of `tflite_path` lives: the same name plus `.json`."""
    path = Path(tflite_path)
    return path.with_name(path.name + METADATA_SUFFIX)


def canonical_metadata(metadata: dict) -> bytes:
    """The metadata without its `integrity` field as canonical JSON: sorted keys, no spaces, ASCII.

    JSON round-trips Python floats exactly, so the metadata read back from its
    file gives the same bytes as the dict that was written.
    """
    body = {key: value for key, value in metadata.items() if key != INTEGRITY_FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def integrity_digest(content: bytes, metadata: dict) -> str:
    """The hex SHA-256 that seals a `.tflite` file's bytes and its metadata together.

    `sha256(b"keras_deepad.tflite integrity 1\\n" + len(content) as 8 big-endian bytes
    + content + canonical_metadata(metadata))`; the `integrity` field itself is left out.
    """
    digest = hashlib.sha256(_INTEGRITY_DOMAIN)
    digest.update(len(content).to_bytes(8, "big"))
    digest.update(content)
    digest.update(canonical_metadata(metadata))
    return digest.hexdigest()


def seal_metadata(content: bytes, metadata: dict) -> dict:
    """`metadata` with its `integrity` field for the model `content` (as `export_tflite` writes)."""
    body = {key: value for key, value in metadata.items() if key != INTEGRITY_FIELD}
    return {
        **body,
        INTEGRITY_FIELD: {
            "algorithm": INTEGRITY_ALGORITHM,
            "digest": integrity_digest(content, body),
        },
    }
