"""The interface every storage backend offers; names are those of storage.names."""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO


class StorageUnavailable(OSError):
    """The store could not be reached or answered with an error that may pass (worth a retry)."""


@dataclass(frozen=True)
class Stored:
    size: int
    sha256: str


class Storage(abc.ABC):
    """Files by name. `put` is atomic: a reader sees the whole file under its name or nothing."""

    url: str

    @abc.abstractmethod
    def put(self, name: str, stream: IO[bytes]) -> Stored: ...

    def put_bytes(self, name: str, data: bytes) -> Stored:
        import io

        return self.put(name, io.BytesIO(data))

    @abc.abstractmethod
    def open(self, name: str) -> IO[bytes]:
        """A stream of the file's bytes (close it); FileNotFoundError when there is none."""

    def read(self, name: str) -> bytes:
        with self.open(name) as stream:
            return stream.read()

    @abc.abstractmethod
    def delete(self, name: str) -> bool:
        """Delete the file; False when there was none."""

    @abc.abstractmethod
    def exists(self, name: str) -> bool: ...

    def delete_all(self, names: Iterable[str]) -> int:
        """Delete these files; returns how many there were."""
        return sum(self.delete(name) for name in names)

    @abc.abstractmethod
    def prepare(self) -> None:
        """Make what the store needs before first use (`python -m db.setup` calls it)."""

    @abc.abstractmethod
    def flush(self, names: Iterable[str]) -> None:
        """Make the files durable before the caller tells anyone they were stored (a no-op where a write
        already is once it returns)."""
