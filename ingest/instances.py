"""DICOM instances as image rows: their path names the study and the SOP instance, so a job holds each once.

The listener and STOW-RS give each received instance the path `<StudyInstanceUID>/<SOPInstanceUID>.dcm`; an
instance the job already holds (a sender sending again what it was never told was stored) is not stored twice.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Image


def instance_path(study_uid: str, sop_instance_uid: str) -> str:
    return f"{study_uid or 'unknown-study'}/{sop_instance_uid}.dcm"


def held_instance(session: Session, job_id: int, path: str) -> int | None:
    """The id of the job's image with this path, if it holds one."""
    return session.scalar(select(Image.id).where(Image.job_id == job_id, Image.path == path).limit(1))
