"""The local side of an upload: walk a folder, group its files into chunks, hash them."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CHUNK_FILES = 50
CHUNK_BYTES = 20 * 2**20
_READ = 1024 * 1024


@dataclass(frozen=True)
class LocalFile:
    path: Path  # on this machine
    relative: str  # what the server shows: the folder's name, then the path inside it, with "/"
    size: int


def walk(folder: Path) -> list[LocalFile]:
    """Every regular file under `folder`, sorted, skipping hidden files and folders (.DS_Store, .git)."""
    folder = folder.resolve()
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = Path(root) / name
            if name.startswith(".") or not path.is_file():
                continue
            relative = Path(folder.name) / path.relative_to(folder)
            found.append(LocalFile(path=path, relative=relative.as_posix(), size=path.stat().st_size))
    return found


def chunks(
    files: list[LocalFile], max_files: int = CHUNK_FILES, max_bytes: int = CHUNK_BYTES
) -> Iterator[list[LocalFile]]:
    """Consecutive groups of at most `max_files` files and about `max_bytes` (a bigger file travels alone)."""
    current: list[LocalFile] = []
    size = 0
    for item in files:
        if current and (len(current) >= max_files or size + item.size > max_bytes):
            yield current
            current, size = [], 0
        current.append(item)
        size += item.size
    if current:
        yield current


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(_READ):
            digest.update(block)
    return digest.hexdigest()


def chunk_key(job_id: int, relatives: list[str], hashes: list[str]) -> str:
    """The chunk's idempotency key: the same job, paths and contents always give the same key."""
    digest = hashlib.sha256(f"radbatch-chunk:{job_id}".encode())
    for relative, content in zip(relatives, hashes, strict=True):
        digest.update(b"\0" + relative.encode() + b"\0" + content.encode())
    return digest.hexdigest()
