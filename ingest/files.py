"""Turn incoming files into image rows: store supported images under generated names, refuse the rest with a reason."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from sqlalchemy.orm import Session

from db.models import Image, ImageStatus
from models.formats import ACCEPTED, DICOM_EXTENSIONS, HEAD_BYTES, IMAGE_EXTENSIONS, STORED_EXTENSION, is_dicom, sniff
from settings import Settings

logger = logging.getLogger(__name__)
_MAX_PATH = 1024


@dataclass(frozen=True)
class Incoming:
    """One file of an upload: the client's relative path and its content (None when the client held it back)."""

    path: str
    stream: IO[bytes] | None
    declared_size: int = 0


def clean_relative_path(raw: str) -> str:
    """The client's path for display: forward slashes, no drive, no '.', '..' or empty parts."""
    parts = [p for p in raw.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    if parts and len(parts[0]) == 2 and parts[0][1] == ":":
        parts = parts[1:]
    cleaned = "/".join(parts)[-_MAX_PATH:]
    return cleaned or "unnamed"


def refusal(extension: str, head: bytes, size: int, max_bytes: int) -> str | None:
    """Why a file cannot be processed (a message for the person who uploaded it), or None if it is fine."""
    shown = extension or "(no extension)"
    if size == 0:
        return "empty file (0 bytes)"
    if extension in DICOM_EXTENSIONS or is_dicom(head):
        return f"unsupported file type {shown}: DICOM support is coming; {ACCEPTED}"
    if size > max_bytes:
        return f"file too large ({size / 2**20:.1f} MB; the limit is {max_bytes // 2**20} MB per file)"
    if extension not in IMAGE_EXTENSIONS:
        return f"unsupported file type {shown}; {ACCEPTED}"
    if sniff(head) is None:
        return f"the content of this {shown} file is not a PNG, JPEG, BMP or TIFF image; {ACCEPTED}"
    return None


def _size_of(stream: IO[bytes]) -> int:
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    return size


def store_file(incoming: Incoming, job_id: int, upload_dir: Path, max_bytes: int) -> Image:
    """An image row for one file; a supported file is copied to `upload_dir` under a generated name."""
    path = clean_relative_path(incoming.path)
    filename = PurePosixPath(path).name[-255:]
    extension = PurePosixPath(filename).suffix.lower()
    if incoming.stream is None:
        size, head = incoming.declared_size, b""
        reason = refusal(extension, head, size, max_bytes) if size > max_bytes else "the browser did not send it"
    else:
        size = _size_of(incoming.stream)
        head = incoming.stream.read(HEAD_BYTES)
        incoming.stream.seek(0)
        reason = refusal(extension, head, size, max_bytes)
    image = Image(job_id=job_id, filename=filename, path=path, size_bytes=size)
    if reason is not None:
        image.status, image.error = ImageStatus.failed, reason
        return image
    stored_name = uuid.uuid4().hex + STORED_EXTENSION[sniff(head)]
    digest = hashlib.sha256()
    with open(upload_dir / stored_name, "wb") as out:
        for block in iter(functools.partial(incoming.stream.read, 1024 * 1024), b""):
            digest.update(block)
            out.write(block)
    image.stored_name, image.status, image.sha256 = stored_name, ImageStatus.pending, digest.hexdigest()
    return image


def add_files(session: Session, job_id: int, files: list[Incoming], settings: Settings) -> list[Image]:
    """Add one image row per file to the session (flushed, not committed); the caller refreshes the job."""
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    images = [store_file(incoming, job_id, settings.upload_dir, settings.max_file_mb * 2**20) for incoming in files]
    session.add_all(images)
    session.flush()
    refused = sum(image.status == ImageStatus.failed for image in images)
    logger.info("job %s: received %d files (%d refused)", job_id, len(images), refused)
    return images
