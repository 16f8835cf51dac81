"""Turn incoming files into image rows: store supported images under generated names, refuse the rest with a reason."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, Any

from sqlalchemy.orm import Session

import formats
from db.models import Image, ImageStatus, join_notes
from db.text import clean_text
from dicomio.uids import uid_problem
from models.preprocess import ACCEPTED, ImageDecodeError
from settings import Settings
from storage import names, storage_for

logger = logging.getLogger(__name__)
_MAX_PATH = 1024
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_UID_COLUMNS = (
    ("sop_instance_uid", "SOP Instance UID"),
    ("series_instance_uid", "Series Instance UID"),
    ("study_instance_uid", "Study Instance UID"),
)


class StorageFull(OSError):
    """The upload folder's disk (or quota) is full; nothing of the request was kept."""


@dataclass(frozen=True)
class Incoming:
    """One file of an upload: the client's relative path and its content (None when the client held it back)."""

    path: str
    stream: IO[bytes] | None
    declared_size: int = 0
    parsed: Any = None  # what the caller already made of it (a received DICOM instance), so it is parsed once


def clean_relative_path(raw: str) -> str:
    """The client's path for display: forward slashes, no drive, no '.', '..' or empty parts, no control characters."""
    parts = [p for p in clean_text(raw).replace("\\", "/").split("/") if p not in ("", ".", "..")]
    if parts and len(parts[0]) == 2 and parts[0][1] == ":":
        parts = parts[1:]
    cleaned = "/".join(parts)[-_MAX_PATH:]
    return cleaned or "unnamed"


def refusal(extension: str, head: bytes, size: int, max_bytes: int) -> str | None:
    """Why a file cannot be processed (a message for the person who uploaded it), or None if it is fine.

    The format is told by content, whatever the name: a `.png` that holds DICOM is read as DICOM.
    """
    shown = extension or "(no extension)"
    if size == 0:
        return "empty file (0 bytes)"
    if size > max_bytes:
        return f"file too large ({size / 2**20:.1f} MB; the limit is {max_bytes // 2**20} MB per file)"
    if formats.accepted(head, extension) is not None:
        return None
    promised = formats.named(extension)
    if promised is None:
        return f"unsupported file type {shown}; {ACCEPTED}"
    return f"the content of this {shown} file is not {promised.content_is_not}"


def _size_of(stream: IO[bytes]) -> int:
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    return size


def store_file(incoming: Incoming, job_id: int, settings: Settings, max_bytes: int) -> Image | None:
    """An image row for one file; a supported file is copied to the upload folder under a generated name.

    None for a DICOMDIR, which is an index of the folder's DICOM files and not an image: it gets no row.
    """
    path = clean_relative_path(incoming.path)
    filename = PurePosixPath(path).name[-255:]
    extension = PurePosixPath(filename).suffix.lower()
    if incoming.stream is None:
        size, head = incoming.declared_size, b""
        reason = refusal(extension, head, size, max_bytes) if size > max_bytes else "the browser did not send it"
    else:
        size = _size_of(incoming.stream)
        head = incoming.stream.read(formats.DETECTION_BYTES)
        incoming.stream.seek(0)
        reason = refusal(extension, head, size, max_bytes)
    image = Image(job_id=job_id, filename=filename, path=path, size_bytes=size)
    if reason is not None:
        image.status, image.error = ImageStatus.failed, reason
        return image
    return _store(image, incoming, formats.accepted(head, extension), settings)


def _store(image: Image, incoming: Incoming, fmt: formats.Format, settings: Settings) -> Image | None:
    """Store the file as `<generated><extension>`: as received (streamed), or as its format prepares it (DICOM:
    checked and de-identified unless RADBATCH_DEIDENTIFY=false, its metadata on the row); None for a file that holds
    no image (a DICOMDIR).

    `sha256` is of the bytes received, so a client resuming an upload finds the file it sent.
    """
    stored_name = uuid.uuid4().hex + fmt.stored_extension
    if fmt.prepare is None:
        image.sha256 = storage_for(settings).put(names.upload(stored_name), incoming.stream).sha256
    else:
        data = incoming.stream.read()
        try:
            prepared = fmt.prepare(data, settings.secret_key, settings.deidentify, incoming.parsed)
        except formats.NotAnImage as skipped:
            logger.info("job %s: skipped %s", image.job_id, skipped)
            return None
        except ImageDecodeError as error:
            image.status, image.error = ImageStatus.failed, str(error)
            return image
        bad_uid = _uid_refusal(prepared.columns)
        if bad_uid is not None:
            image.status, image.error = ImageStatus.failed, bad_uid
            return image
        image.set_columns(prepared.columns)
        image.notes = join_notes(prepared.notes)
        storage_for(settings).put_bytes(names.upload(stored_name), prepared.stored_bytes)
        image.sha256 = hashlib.sha256(data).hexdigest()
    image.stored_name, image.status = stored_name, ImageStatus.pending
    return image


def _uid_refusal(columns: dict) -> str | None:
    """Why the instance's UIDs cannot be kept (they end up in the SR sent back to the PACS), or None. A missing
    UID is left to the readers' own checks (the listener and STOW-RS require them)."""
    for column, name in _UID_COLUMNS:
        problem = uid_problem(columns[column]) if columns.get(column) else None
        if problem is not None:
            return f"its {name} is {problem}: the instance cannot be referenced (PS3.5 9.1)"
    return None


def discard_stored(images: list[Image], settings: Settings) -> None:
    """Delete the stored files of `images`: their rows were never committed, so nothing refers to them."""
    storage_for(settings).delete_all(names.upload(image.stored_name) for image in images if image.stored_name)


@contextmanager
def discarded_unless_committed(session: Session, images: list[Image], settings: Settings) -> Iterator[None]:
    """Around the caller's commit of `images`' rows: if anything in the block fails, roll back and delete their
    stored files (`discard_stored`), then re-raise."""
    try:
        yield
    except BaseException:
        session.rollback()
        discard_stored(images, settings)
        raise


def add_files(session: Session, job_id: int, files: list[Incoming], settings: Settings) -> list[Image]:
    """Add one image row per file to the session (flushed, not committed); the caller refreshes the job.

    If anything fails, the files already stored for this call are deleted again; a full disk raises StorageFull.
    The caller commits inside `discarded_unless_committed`, which deletes them again if that commit fails.
    """
    max_bytes = settings.max_file_mb * 2**20
    images: list[Image] = []
    try:
        for incoming in files:
            image = store_file(incoming, job_id, settings, max_bytes)
            if image is not None:
                images.append(image)
        session.add_all(images)
        session.flush()
    except BaseException as error:
        discard_stored(images, settings)
        if isinstance(error, OSError) and error.errno in _DISK_FULL:
            logger.error("job %s: upload folder full, %d files of this request discarded", job_id, len(images))
            raise StorageFull(error.errno, f"the server's upload disk is full ({error.strerror})") from error
        raise
    refused = sum(image.status == ImageStatus.failed for image in images)
    logger.info("job %s: received %d files (%d refused)", job_id, len(images), refused)
    return images
