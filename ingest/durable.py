"""Make stored files durable: what a DICOM sender is told was stored must survive a power cut.

The local store's atomic write reaches the disk only when the file and then its folder are flushed; an object
store's PUT is durable once it returns. The receive path calls `sync_stored` before it commits the rows.
"""

from __future__ import annotations

from db.models import Image
from settings import Settings
from storage import names, storage_for


def sync_stored(images: list[Image], settings: Settings) -> None:
    """Flush the stored files of `images`; raises OSError on failure."""
    storage_for(settings).flush([names.upload(image.stored_name) for image in images if image.stored_name])
