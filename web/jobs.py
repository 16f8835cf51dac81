"""Jobs as a person sees them: ownership checks, history, JSON shape, cancelling and closing."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from flask import abort
from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from db.models import Image, ImageStatus, Job, JobStatus, User
from db.progress import refresh_job
from web.pagination import PageArgs

UNFINISHED_IMAGE = (ImageStatus.pending, ImageStatus.queued)
FINISHED_JOB = (JobStatus.done, JobStatus.failed)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC; SQLite hands back naive datetimes that were stored as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat()


def job_to_dict(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "name": job.name,
        "status": job.status.value,
        "is_open": job.is_open,
        "total": job.total,
        "done": job.done,
        "failed": job.failed,
        "created_at": iso(job.created_at),
        "finished_at": iso(job.finished_at),
    }


def parse_job_status(raw: str | None) -> JobStatus | None:
    if not raw:
        return None
    try:
        return JobStatus(raw)
    except ValueError:
        abort(400, f"status must be one of {', '.join(s.value for s in JobStatus)}; got {raw!r}")


def visible(query: Select, user: User) -> Select:
    """Restrict a query on Job to what `user` may see: their own jobs, or every job for an admin."""
    return query if user.is_admin else query.where(Job.user_id == user.id)


def get_job_or_404(session: Session, user: User, job_id: int) -> Job:
    """The job if it exists and `user` may see it; otherwise 404, so nobody learns which ids exist."""
    job = session.scalar(visible(select(Job).where(Job.id == job_id), user))
    if job is None:
        abort(404, f"job {job_id} not found; GET /api/v1/jobs lists your jobs")
    return job


def history(session: Session, user: User, status: JobStatus | None, page: PageArgs) -> tuple[list[Job], int]:
    """One page of jobs, newest first, with their owners loaded in the same query; and the total count."""
    query = visible(select(Job), user)
    if status is not None:
        query = query.where(Job.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.execute(
        query.add_columns(User.username)
        .join(User, User.id == Job.user_id)
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(page.per_page)
        .offset(page.offset)
    ).all()
    jobs = []
    for job, username in rows:
        job.owner_name = username  # shown to admins; a plain attribute, not a column
        jobs.append(job)
    return jobs, total


def create_job(session: Session, user: User, name: str, is_open: bool) -> Job:
    job = Job(user_id=user.id, name=name.strip()[:255], is_open=is_open, status=JobStatus.queued)
    session.add(job)
    session.flush()
    return job


def require_accepting_files(job: Job) -> None:
    if job.status == JobStatus.cancelled:
        abort(409, f"job {job.id} was cancelled; create a new job to upload more files")
    if not job.is_open:
        abort(409, f"job {job.id} is closed; create a new job (with open=true) to upload more files")


def cancel_job(session: Session, job: Job) -> Job:
    """Pending and queued images become cancelled (workers skip them) and so does the job."""
    if job.status in FINISHED_JOB and not job.is_open:
        abort(409, f"job {job.id} already finished ({job.status.value}); there is nothing left to cancel")
    session.execute(
        update(Image)
        .where(Image.job_id == job.id, Image.status.in_(UNFINISHED_IMAGE))
        .values(status=ImageStatus.cancelled)
    )
    job.status = JobStatus.cancelled
    job.is_open = False
    return refresh_job(session, job.id)
