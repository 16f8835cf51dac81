"""Jobs: create, cancel, list; their counters and status, always recomputed from the image rows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, Select, func, select, true, update
from sqlalchemy.orm import Session, joinedload

from db.models import Image, ImageStatus, Job, JobStatus, User, utcnow
from db.webhooks import job_finished

_IN_CHUNK = 500  # ids per UPDATE ... IN (...) statement


class JobFinishedError(ValueError):
    """The job is already finished, so it cannot be cancelled."""


def refresh_job(session: Session, job_id: int) -> Job:
    """Recount a job's images and derive its status; call in the same transaction that changed them.

    On PostgreSQL the job's row is locked FOR NO KEY UPDATE, which serialises recounts but, unlike FOR UPDATE, does
    not conflict with the FOR KEY SHARE lock that inserting its images takes. With FOR UPDATE, an upload chunk that
    had inserted images (KEY SHARE held) and a worker's recount that queued FOR UPDATE behind it deadlocked once the
    upload asked FOR UPDATE in turn: a 500 for the upload."""
    postgres = session.bind.dialect.name == "postgresql"
    job = session.get(Job, job_id, with_for_update={"key_share": True} if postgres else False)
    counts = dict(
        session.execute(select(Image.status, func.count()).where(Image.job_id == job_id).group_by(Image.status)).all()
    )
    job.total = sum(counts.values())
    job.done = counts.get(ImageStatus.done, 0)
    job.failed = counts.get(ImageStatus.failed, 0)
    unfinished = sum(counts.get(status, 0) for status in ImageStatus.unfinished())
    if job.status == JobStatus.cancelled:
        pass
    elif job.is_open or unfinished:
        job.status = JobStatus.running if job.done + job.failed else JobStatus.queued
    elif job.total and job.failed == job.total:
        job.status = JobStatus.failed
    else:
        job.status = JobStatus.done
    if job.status.is_finished and job.finished_at is None:
        job.finished_at = utcnow()
        job_finished(session, job.id)  # its webhook becomes due in this same transaction
    return job


def set_image_status(session: Session, image_ids: list[int], old: ImageStatus, new: ImageStatus) -> list[int]:
    """Move those of `image_ids` that are in status `old` to `new` and return their ids (so two callers racing
    to queue the same images send each one once). Moving to `queued` stamps `queued_at`."""
    values = {"status": new} | ({"queued_at": utcnow()} if new == ImageStatus.queued else {})
    moved: list[int] = []
    for start in range(0, len(image_ids), _IN_CHUNK):
        chunk = image_ids[start : start + _IN_CHUNK]
        statement = update(Image).where(Image.id.in_(chunk), Image.status == old).values(**values)
        moved += session.scalars(statement.returning(Image.id), execution_options={"synchronize_session": False})
    return sorted(moved)


def requeue_images(session: Session, image_ids: list[int], only_if: ColumnElement[bool] | None = None) -> list[int]:
    """Those of `image_ids` still waiting (pending or queued, and `only_if`, re-checked as they are written) become
    queued now; returns their ids, to send again."""
    moved: list[int] = []
    for start in range(0, len(image_ids), _IN_CHUNK):
        chunk = image_ids[start : start + _IN_CHUNK]
        statement = (
            update(Image)
            .where(
                Image.id.in_(chunk), Image.status.in_(ImageStatus.unfinished()), true() if only_if is None else only_if
            )
            .values(status=ImageStatus.queued, queued_at=utcnow())
        )
        moved += session.scalars(statement.returning(Image.id), execution_options={"synchronize_session": False})
    return sorted(moved)


def close_idle_jobs(session: Session, idle_since: datetime) -> list[int]:
    """Close the open jobs that received no file since `idle_since` (an upload abandoned mid-way); returns their ids.
    Their pending images are then queued like those of any closed job."""
    last_file = select(func.max(Image.created_at)).where(Image.job_id == Job.id).correlate(Job).scalar_subquery()
    idle = session.scalars(
        select(Job.id).where(
            Job.is_open, Job.status != JobStatus.cancelled, func.coalesce(last_file, Job.created_at) < idle_since
        )
    ).all()
    for job_id in idle:
        job = session.get(Job, job_id)
        job.is_open = False
        refresh_job(session, job_id)
    return list(idle)


PRIORITIES = ("urgent", "normal", "bulk")  # the lanes, first served first (broker.LANES)


def create_job(
    session: Session, user: User, name: str, is_open: bool, heatmaps: bool = True, priority: str = "normal"
) -> Job:
    job = Job(
        user_id=user.id,
        name=name.strip()[:255],
        is_open=is_open,
        heatmaps=heatmaps,
        priority=priority,
        status=JobStatus.queued,
    )
    session.add(job)
    session.flush()
    return job


def cancel_job(session: Session, job: Job) -> Job:
    """Unfinished images become cancelled (workers skip them) and so does the job."""
    if job.status.is_finished and not job.is_open:
        raise JobFinishedError(f"job {job.id} already finished ({job.status.value}); there is nothing left to cancel")
    session.execute(
        update(Image)
        .where(Image.job_id == job.id, Image.status.in_(ImageStatus.unfinished()))
        .values(status=ImageStatus.cancelled)
    )
    job.status = JobStatus.cancelled
    job.is_open = False
    return refresh_job(session, job.id)


def visible_jobs(query: Select, user: User) -> Select:
    """Restrict a query on Job to what `user` may see: their own jobs, or every job for an admin."""
    return query if user.is_admin else query.where(Job.user_id == user.id)


def find_job(session: Session, user: User, job_id: int) -> Job | None:
    return session.scalar(visible_jobs(select(Job).where(Job.id == job_id), user))


def job_history(
    session: Session, user: User, status: JobStatus | None, limit: int, offset: int
) -> tuple[list[Job], int]:
    """One page of jobs, newest first, with their owners loaded in the same query; and the total count."""
    query = visible_jobs(select(Job), user)
    if status is not None:
        query = query.where(Job.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = query.options(joinedload(Job.user)).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    return list(session.scalars(page.offset(offset))), total
