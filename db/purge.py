"""Purge a job: its rows and every file its images have in the store.

Files are deleted by name: the upload by its stored name and the derived files by `storage.names.derived`
(a new kind of per-image file is added there). No folder is listed, so a purge costs the same whatever else
the store holds. Rows go by the database's ON DELETE CASCADE from `jobs`.

A batch already running when its job is purged may still write a thumbnail or a heat map afterwards, so a
purge of a recently active job also leaves `deferred_deletions` rows: the worker's housekeeping deletes
those images' files again once no task could still be writing them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import DateTime, Index, Integer, delete, insert, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from db.models import Base, Image, Job, utcnow
from settings import Settings
from storage import names, storage_for

log = logging.getLogger(__name__)

_CHUNK = 1000


class DeferredDeletion(Base):
    """An image whose files are deleted once more at `due_at` (its job was purged while a batch may run)."""

    __tablename__ = "deferred_deletions"
    __table_args__ = (Index("ix_deferred_deletions_due_at", "due_at"),)

    image_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Purged:
    job_id: int
    images: int
    files: int


def delete_image_files(settings: Settings, image_ids: set[int], stored_names: list[str]) -> int:
    """Delete the uploads and every derived file of these images, by name (no folder is listed); returns how
    many files went."""
    store = storage_for(settings)
    targets = [names.upload(name) for name in stored_names]
    targets += [name for image_id in sorted(image_ids) for name in names.derived(image_id)]
    return store.delete_all(targets)


def purge_job(session: Session, settings: Settings, job_id: int, recheck_at: datetime | None = None) -> Purged | None:
    """Delete the job's files, then its rows (in the caller's transaction); None if it was already gone.

    Files go first: if the commit then fails, the rows are still there and the purge can simply be repeated,
    whereas rows gone with files left behind would leave nothing pointing at them. `recheck_at` (for a job
    that was running until just now) schedules the files' deletion once more.
    """
    images = session.execute(select(Image.id, Image.stored_name).where(Image.job_id == job_id)).all()
    image_ids = {image_id for image_id, _ in images}
    files = delete_image_files(settings, image_ids, [name for _, name in images if name])
    if not session.execute(delete(Job).where(Job.id == job_id)).rowcount:
        return None  # another purge got there first
    if recheck_at is not None:
        ordered = sorted(image_ids)
        for start in range(0, len(ordered), _CHUNK):
            chunk = ordered[start : start + _CHUNK]
            session.execute(insert(DeferredDeletion), [{"image_id": i, "due_at": recheck_at} for i in chunk])
    return Purged(job_id=job_id, images=len(image_ids), files=files)


def delete_due_files(session: Session, settings: Settings, now: datetime | None = None, limit: int = _CHUNK) -> int:
    """Delete, once more, the files of purged images whose recheck is due; returns how many images were checked."""
    now = now or utcnow()
    due = set(session.scalars(select(DeferredDeletion.image_id).where(DeferredDeletion.due_at <= now).limit(limit)))
    if not due:
        return 0
    files = delete_image_files(settings, due, [])
    session.execute(delete(DeferredDeletion).where(DeferredDeletion.image_id.in_(sorted(due))))
    if files:
        log.info("purge: removed %d late files of %d purged images", files, len(due))
    return len(due)


def recheck_time(job: Job, window_s: int, now: datetime | None = None) -> datetime | None:
    """When to delete a purged job's files once more, if a batch may still be writing them; else None."""
    now = now or utcnow()
    finished = job.finished_at
    if finished is not None and finished.tzinfo is None:
        finished = finished.replace(tzinfo=now.tzinfo)
    if finished is not None and now - finished > timedelta(seconds=window_s):
        return None
    return now + timedelta(seconds=window_s)
