"""File helpers every stage uses (top level, so any stage may import them without pointing up the flow)."""
from __future__ import annotations

import hashlib
import os


def ensure_writable_dir(folder: str | os.PathLike) -> None:
    """Create `folder` if needed and write and remove a probe file in it: the OSError of whichever step
    fails, before any real output is written."""
    os.makedirs(folder, exist_ok=True)
    probe = os.path.join(folder, f".avvp-write-test-{os.getpid()}")
    with open(probe, "wb"):
        pass
    os.unlink(probe)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """The hex SHA-256 of a file, read in `chunk`-byte blocks (weights files are GBs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
