"""Files as a whole: written whole or not at all, and fingerprinted with their names."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path


def write_atomically(path: Path, content: bytes | str, *, durable: bool = False) -> None:
    """Write ``content`` to a temporary file beside ``path`` and rename it into place, so a
    reader (a run scanning the folder) sees the whole file or none of it.

    ``durable`` also fsyncs the file and its folder before returning: for files nothing else
    records (landed outcomes). Without it the OS flushes the pages in its own time, which is
    enough where a ledger guards against a crashed process (the outbox) or the file can be
    written again (proposed seeds). The folder must exist: the outbox writes a file per email
    and makes its folder once.
    """
    data = content.encode() if isinstance(content, str) else content
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(temporary, path)
    if durable:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def add_files(digest: hashlib._Hash, root: Path, paths: Iterable[Path]) -> None:
    """Add each file's path under ``root`` and a hash of its content to ``digest``: a file
    edited, renamed, added or removed changes the fingerprint. The paths in a fixed order."""
    for path in paths:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
