"""What the person asking may see: a job of theirs or an image of one (any for an admin), else 404 so no ids leak."""

from __future__ import annotations

from flask import abort, g
from sqlalchemy import select

from db.jobs import find_job, visible_jobs
from db.models import Image, Job, JobStatus, User
from web.extensions import get_db


def job_or_404(user: User, job_id: int) -> Job:
    job = find_job(get_db(), user, job_id)
    if job is None:
        abort(404, f"job {job_id} not found; GET /api/v1/jobs lists your jobs")
    return job


def visible_image_or_404(image_id: int) -> Image:
    """The image if its job belongs to the caller (or the caller is an admin); otherwise 404."""
    query = visible_jobs(select(Image).join(Job, Job.id == Image.job_id).where(Image.id == image_id), g.user)
    image = get_db().scalar(query)
    if image is None:
        abort(404, f"image {image_id} not found among your jobs")
    g.audit_object = (image.job_id, image.id)  # what a read of it is audited as (web.audit)
    return image


def require_accepting_files(job: Job) -> None:
    if job.status == JobStatus.cancelled:
        abort(409, f"job {job.id} was cancelled; create a new job to upload more files")
    if not job.is_open:
        abort(409, f"job {job.id} is closed; create a new job (with open=true) to upload more files")
