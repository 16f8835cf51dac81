"""Make stored files durable: what a DICOM sender is told was stored must survive a power cut.

`add_files` writes to a temporary name and renames it; the data and the rename reach the disk only when the
file and then its folder are flushed. The listener and STOW-RS call `sync_stored` before they commit the rows.
"""

from __future__ import annotations

import os
from pathlib import Path

from db.models import Image


def _fsync(path: Path, flags: int) -> None:
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def sync_stored(images: list[Image], upload_dir: Path) -> None:
    """Flush the stored files of `images`, then the folder holding their names; raises OSError on failure."""
    stored = [upload_dir / image.stored_name for image in images if image.stored_name]
    for path in stored:
        _fsync(path, os.O_RDONLY)
    if stored:
        _fsync(upload_dir, os.O_RDONLY | os.O_DIRECTORY)
