"""DICOM instances as image rows: their path names the study and the SOP instance, so a job holds each once.

The listener and STOW-RS give each received instance the path `<StudyInstanceUID>/<SOPInstanceUID>.dcm`. An
instance the job already holds with the same bytes (a sender sending again what it was never told was stored)
is not stored twice; the job counts it (`Job.resent`). One with the same SOP Instance UID and other content is
a different object that a sender mislabelled: it is kept as an image of its own, at
`<StudyInstanceUID>/<SOPInstanceUID>~<n>.dcm`, with a note naming the image it collides with.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from db.models import Image, Job, join_notes, split_notes
from dicomio.uids import pixel_bytes
from settings import Settings
from storage import names, storage_for


def instance_path(study_uid: str, sop_instance_uid: str, copy: int = 1) -> str:
    suffix = f"~{copy}" if copy > 1 else ""
    return f"{study_uid or 'unknown-study'}/{sop_instance_uid}{suffix}.dcm"


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


def stored_pixels(settings: Settings, held: Held) -> bytes | None:
    if not held.stored_name:
        return None
    try:
        return pixel_bytes(storage_for(settings).read(names.upload(held.stored_name)))
    except OSError:
        return None
