"""File helpers every stage uses (top level, so any stage may import them without pointing up the flow)."""
from __future__ import annotations

import hashlib
import os


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """The hex SHA-256 of a file, read in `chunk`-byte blocks (weights files are GBs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
