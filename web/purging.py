"""Purge a job for the person asking: cancel it first if it still runs, delete its files and rows, audit it."""

from __future__ import annotations

import logging
from typing import Any

from flask import abort, g

from db.jobs import cancel_job
from db.models import Job
from db.purge import purge_job, recheck_time
from web.audit import audit
from web.extensions import get_db, get_settings

logger = logging.getLogger(__name__)


def purge(job: Job) -> dict[str, Any]:
    """Purge `job` (already checked visible to the user); returns what went and whether it was cancelled first."""
    db, job_id = get_db(), job.id
    still_running = not (job.status.is_finished and not job.is_open)
    if still_running:
        cancel_job(db, job)
        db.commit()  # workers skip its images from now on
    purged = purge_job(db, get_settings(), job_id, recheck_time(job, get_settings().task_time_limit + 60))
    if purged is None:
        abort(404, f"job {job_id} was purged meanwhile")
    audit("job.purge", job_id, images=purged.images, files=purged.files, cancelled_first=still_running)
    db.commit()
    logger.info("job %s purged by %s: %d images, %d files", job_id, g.user.username, purged.images, purged.files)
    return {
        "id": job_id,
        "purged": True,
        "images": purged.images,
        "files": purged.files,
        "cancelled_first": still_running,
    }
