"""Housekeeping, run by the recovery sweep thread in the worker's main process (one worker at a time, by a lock).

1. Retention: finished jobs that finished more than RADBATCH_RETENTION_DAYS days ago are purged (files and rows,
   by `db.purge`), a few per round, each with an audit row; unset or 0 keeps everything.
2. The files of images purged while a batch may still have been writing them are deleted once more when due.
3. Webhook deliveries that are due are sent: retries after their backoff, and first attempts whose task was lost.

The log says what went by counts and job ids, never by file names or paths (they may carry PHI).
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timedelta

import redis
from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker import send_notifications
from db.audit import record_event
from db.models import Job, JobStatus, utcnow
from db.purge import Purged, delete_due_files, purge_job
from db.session import make_engine, make_session_factory, session_scope
from db.webhooks import deliveries_due
from settings import Settings

log = logging.getLogger(__name__)

LOCK_KEY = "radbatch:housekeeping-lock"
JOBS_PER_ROUND = 20  # so that a large backlog never holds up the recovery sweep for long


def expired_jobs(session: Session, finished_before: datetime, limit: int) -> list[int]:
    query = (
        select(Job.id)
        .where(Job.status.in_(JobStatus.finished()), ~Job.is_open, Job.finished_at < finished_before)
        .order_by(Job.finished_at, Job.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def purge_expired(settings: Settings, sessions, now: datetime) -> list[Purged]:
    """Purge up to JOBS_PER_ROUND jobs that finished more than `settings.retention_days` days before `now`."""
    if settings.retention_days <= 0:
        return []
    with session_scope(sessions) as session:
        job_ids = expired_jobs(session, now - timedelta(days=settings.retention_days), JOBS_PER_ROUND)
    purged: list[Purged] = []
    for job_id in job_ids:
        with session_scope(sessions) as session:
            done = purge_job(session, settings, job_id)
            if done is not None:
                detail = {"images": done.images, "files": done.files, "retention_days": settings.retention_days}
                record_event(session, "job.purge", None, job_id, None, detail)
                purged.append(done)
    if purged:
        log.info(
            "retention: purged %d jobs finished over %d days ago (ids %s): %d images, %d files",
            len(purged),
            settings.retention_days,
            ", ".join(str(p.job_id) for p in purged),
            sum(p.images for p in purged),
            sum(p.files for p in purged),
        )
    return purged


def run_housekeeping(settings: Settings, app: Celery, now: datetime | None = None) -> dict[str, object]:
    """One round of the three duties; returns what it did."""
    now = now or utcnow()
    engine = make_engine(settings.database_url)
    try:
        sessions = make_session_factory(engine)
        purged = purge_expired(settings, sessions, now)
        with session_scope(sessions) as session:
            rechecked = delete_due_files(session, settings, now)
            due = deliveries_due(session, now)
    finally:
        engine.dispose()
    if due:
        send_notifications(app, due)
        log.info("webhooks: sent the due deliveries of jobs %s", ", ".join(map(str, due)))
    return {"purged": [p.job_id for p in purged], "rechecked_images": rechecked, "webhooks_sent": due}


def housekeeping(settings: Settings, app: Celery, client: redis.Redis) -> None:
    """Called by the recovery sweep after each sweep; never raises, so it can never stop the sweep."""
    try:
        owner = f"{socket.gethostname()}:{os.getpid()}"
        if client.set(LOCK_KEY, owner, nx=True, ex=max(1, settings.sweep_interval - 1)):
            run_housekeeping(settings, app)
    except Exception:  # noqa: BLE001 - log and try again next round; the recovery sweep must keep running
        log.exception("housekeeping failed; it runs again after the next sweep")
