"""DICOM instances as image rows: their path names the study and the SOP instance, so a job holds each once.

The listener and STOW-RS give each received instance the path `<StudyInstanceUID>/<SOPInstanceUID>.dcm`. An
instance the job already holds with the same bytes (a sender sending again what it was never told was stored)
is not stored twice; the job counts it (`Job.resent`). One with the same SOP Instance UID and other content is
a different object that a sender mislabelled: it is kept as an image of its own, at
`<StudyInstanceUID>/<SOPInstanceUID>~<n>.dcm`, with a note naming the image it collides with.

Every UID that names an instance is checked against PS3.5 9.1 before anything is stored (`uid_problem`).
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from db.models import Image, Job
from ingest.dicom import join_notes, split_notes
from models.dicom import READ_ERRORS

_IDENTITY = ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"]
_IDENTITY_NAMES = ("SOP Class UID", "SOP Instance UID", "Study Instance UID")
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
MAX_UID = 64


def uid_problem(value: str) -> str | None:
    """Why `value` is not a UID (PS3.5 9.1: digits and dots, no empty component, no leading zero in a component
    of more than one digit, at most 64 characters), or None when it is one. The value itself is never quoted."""
    if not value:
        return "missing"
    if len(value) > MAX_UID:
        return f"longer than {MAX_UID} characters"
    if _UID.fullmatch(value) is None:
        return "not a UID: only digits and dots, no empty component and no leading zero (PS3.5 9.1)"
    return None


def identity_problem(identity: tuple[str, str, str]) -> str | None:
    """The first of SOP Class, SOP Instance and Study Instance UID that is not a valid UID, and why."""
    for name, value in zip(_IDENTITY_NAMES, identity):
        problem = uid_problem(value)
        if problem is not None:
            return f"{name} {problem}"
    return None


def instance_path(study_uid: str, sop_instance_uid: str, copy: int = 1) -> str:
    suffix = f"~{copy}" if copy > 1 else ""
    return f"{study_uid or 'unknown-study'}/{sop_instance_uid}{suffix}.dcm"


def instance_identity(data: bytes) -> tuple[str, str, str]:
    """(SOPClassUID, SOPInstanceUID, StudyInstanceUID) of a Part 10 file, read without its pixel data; empty
    strings for what cannot be read."""
    try:
        dataset = dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=_IDENTITY)
        return tuple(str(dataset.get(keyword, "") or "") for keyword in _IDENTITY)  # type: ignore[return-value]
    except READ_ERRORS:  # whatever pydicom raises on a malformed file (found by fuzzing)
        return "", "", ""


def pixel_bytes(data: bytes) -> bytes | None:
    """The encoded Pixel Data of a Part 10 file, not decoded; None if it cannot be read."""
    try:
        return dcmread(io.BytesIO(data), specific_tags=["PixelData"]).get("PixelData")
    except READ_ERRORS:  # whatever pydicom raises on a malformed file (found by fuzzing)
        return None


@dataclass(frozen=True)
class Held:
    image_id: int
    sha256: str | None
    stored_name: str | None


def held_copies(session: Session, job_id: int, study_uid: str, sop_instance_uid: str) -> list[Held]:
    """The job's images received with this SOP Instance UID (the first, then its differing namesakes)."""
    base = instance_path(study_uid, sop_instance_uid)
    variants = base.removesuffix(".dcm") + "~%"
    rows = session.execute(
        select(Image.id, Image.sha256, Image.stored_name)
        .where(Image.job_id == job_id, or_(Image.path == base, Image.path.like(variants)))
        .order_by(Image.id)
    )
    return [Held(*row) for row in rows]


def identical(held: list[Held], data: bytes) -> Held | None:
    digest = hashlib.sha256(data).hexdigest()
    return next((copy for copy in held if copy.sha256 == digest), None)


def count_resent(session: Session, job_id: int, how_many: int = 1) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(resent=Job.resent + how_many))


def note_namesake(image: Image, first_id: int, first_pixels: bytes | None, data: bytes) -> None:
    """Say on `image` that it shares its SOP Instance UID with image `first_id` but not its content."""
    same_pixels = first_pixels is not None and first_pixels == pixel_bytes(data)
    what = "same pixels, different header" if same_pixels else "different pixels"
    image.notes = join_notes(split_notes(image.notes) + [f"same SOP Instance UID as image {first_id}, {what}"])


def stored_pixels(upload_dir: Path, held: Held) -> bytes | None:
    if not held.stored_name:
        return None
    try:
        return pixel_bytes((upload_dir / held.stored_name).read_bytes())
    except OSError:
        return None
