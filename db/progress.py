"""Job counters and status, always recomputed from the image rows so the two cannot disagree."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Image, ImageStatus, Job, JobStatus, utcnow


def refresh_job(session: Session, job_id: int) -> Job:
    """Recount a job's images and derive its status; call in the same transaction that changed them."""
    job = session.get(Job, job_id, with_for_update=session.bind.dialect.name == "postgresql")
    counts = dict(
        session.execute(select(Image.status, func.count()).where(Image.job_id == job_id).group_by(Image.status)).all()
    )
    job.total = sum(counts.values())
    job.done = counts.get(ImageStatus.done, 0)
    job.failed = counts.get(ImageStatus.failed, 0)
    unfinished = counts.get(ImageStatus.pending, 0) + counts.get(ImageStatus.queued, 0)
    if job.status == JobStatus.cancelled:
        pass
    elif job.is_open or unfinished:
        job.status = JobStatus.running if job.done + job.failed else JobStatus.queued
    elif job.total and job.failed == job.total:
        job.status = JobStatus.failed
    else:
        job.status = JobStatus.done
    if job.status in (JobStatus.done, JobStatus.failed, JobStatus.cancelled) and job.finished_at is None:
        job.finished_at = utcnow()
    return job
