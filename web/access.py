"""What the person asking may see: a job of theirs (any job for an admin), else 404 so no ids leak."""

from __future__ import annotations

from flask import abort

from db.jobs import find_job
from db.models import Job, JobStatus, User
from web.extensions import get_db


def job_or_404(user: User, job_id: int) -> Job:
    job = find_job(get_db(), user, job_id)
    if job is None:
        abort(404, f"job {job_id} not found; GET /api/v1/jobs lists your jobs")
    return job


def require_accepting_files(job: Job) -> None:
    if job.status == JobStatus.cancelled:
        abort(409, f"job {job.id} was cancelled; create a new job to upload more files")
    if not job.is_open:
        abort(409, f"job {job.id} is closed; create a new job (with open=true) to upload more files")
