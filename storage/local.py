"""Files in a folder on this machine ($RADBATCH_HOME by default): the backend of a single-host install."""

from __future__ import annotations

import functools
import hashlib
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from storage import names
from storage.base import Storage, Stored

_BLOCK = 1024 * 1024


def _fsync(path: Path, flags: int) -> None:
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class LocalStorage(Storage):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = f"file://{self.root.absolute()}"

    def _path(self, name: str) -> Path:
        if name.startswith("/") or ".." in name.split("/"):
            raise ValueError(f"not a storage name: {name!r}")
        return self.root / name

    def prepare(self) -> None:
        """The store's folders, mode 0700 whether new or made before with looser modes: they hold patient images."""
        for folder in names.FOLDERS:
            path = self.root / folder
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.chmod(0o700)

    def put(self, name: str, stream: IO[bytes]) -> Stored:
        """Copy to a temporary name beside the target, then rename: a half-written file never has the name."""
        target = self._path(name)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # patient data: owner only
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")  # concurrent writers never share one
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
                for block in iter(functools.partial(stream.read, _BLOCK), b""):
                    digest.update(block)
                    size += len(block)
                    out.write(block)
            os.replace(partial, target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return Stored(size=size, sha256=digest.hexdigest())

    def open(self, name: str) -> IO[bytes]:
        return open(self._path(name), "rb")

    def delete(self, name: str) -> bool:
        try:
            self._path(name).unlink()
            return True
        except FileNotFoundError:
            return False

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def flush(self, names: Iterable[str]) -> None:
        """fsync each file, then each folder holding their names; raises OSError on failure."""
        paths = [self._path(name) for name in names]
        for path in paths:
            _fsync(path, os.O_RDONLY)
        for folder in {path.parent for path in paths}:
            _fsync(folder, os.O_RDONLY | os.O_DIRECTORY)
