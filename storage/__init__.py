"""Every file radbatch keeps (uploads, thumbnails, heat maps) goes through here: `storage_for(settings)` gives
the backend RADBATCH_STORAGE_URL chooses (the local folder $RADBATCH_HOME by default, or s3://bucket/prefix)
and `storage.names` the file names. Nothing outside this package builds a path to those files.
"""

from __future__ import annotations

import functools
from pathlib import Path

from settings import Settings
from storage import names
from storage.base import Storage, StorageUnavailable, Stored
from storage.local import LocalStorage

__all__ = ["Storage", "StorageUnavailable", "Stored", "names", "storage_for"]


@functools.lru_cache(maxsize=8)
def _open(url: str, home: Path, endpoint_url: str) -> Storage:
    if url.startswith("s3://"):
        from storage.s3 import S3Storage

        return S3Storage(url, endpoint_url or None)
    if url.startswith("file://"):
        return LocalStorage(Path(url.removeprefix("file://")))
    if url:
        raise ValueError(f"RADBATCH_STORAGE_URL must be s3://bucket/prefix or file:///folder, not {url!r}")
    return LocalStorage(home)


def storage_for(settings: Settings) -> Storage:
    """The store these settings name (one per process and URL: the S3 client is made once)."""
    return _open(settings.storage_url, settings.home, settings.s3_endpoint_url)
