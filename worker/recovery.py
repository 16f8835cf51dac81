"""The recovery sweep: it owns every unfinished image that has no live message, and sends it again.

The database is the source of truth; Redis only carries work. Every `settings.sweep_interval` seconds one
worker main process (a Redis lock picks it):

1. closes open jobs that got no new file for `settings.open_job_ttl` seconds (abandoned uploads);
2. reads what the broker holds (`broker.inflight.inspect`): the image ids on messages waiting in the queue, on
   unacknowledged messages some live worker holds, and the orphaned unacknowledged messages nobody holds;
3. selects the images that are `queued` (or `pending` in a closed job), in jobs not cancelled, and either
   waited more than `settings.stuck_after` seconds since `queued_at` or ride on an orphaned message; drops
   those on a live message; marks the rest queued now, commits, and sends them in batches;
4. deletes the orphaned messages from `unacked`, so Redis never hands them out again.

Because liveness is read from the broker, it acts under steady load too. Sending an image twice is harmless:
storing is idempotent and `images.attempts` caps how often a delivery may start work on one image.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import redis
from celery import Celery
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from broker import BrokerUnavailable, send_batches
from broker.inflight import HOLDER_INTERVAL_S, ORPHAN_GRACE_S, BrokerView, HolderBeacon, forget, inspect
from db.idempotency import purge_keys
from db.jobs import close_idle_jobs, refresh_job, requeue_images
from db.models import Image, ImageStatus, Job, JobStatus, utcnow
from db.session import database_session
from settings import Settings
from worker.housekeeping import housekeeping

log = logging.getLogger(__name__)

LOCK_KEY = "radbatch:sweep-lock"

# A pool process forked while this thread is inside SQLite, libpq or a producer pool can inherit one of their
# locks held, and hang on its first query. So while the sweep and its housekeeping work with the database and
# send, the worker's main process does not fork (start_recovery registers this lock with os.register_at_fork).
_NO_FORK = threading.Lock()


@dataclass
class SweepReport:
    closed_jobs: list[int] = field(default_factory=list)
    sent: dict[int, list[int]] = field(default_factory=dict)  # job id -> image ids sent again
    orphans: int = 0


def _due(older_than: datetime, view: BrokerView) -> ColumnElement[bool]:
    """Waited more than `stuck_after` since it was queued (or stored), or rides on an orphaned message."""
    orphaned = sorted({i for carried in view.orphans.values() for i in carried.image_ids})
    return or_(func.coalesce(Image.queued_at, Image.created_at) < older_than, Image.id.in_(orphaned))


def find_lost(session: Session, older_than: datetime, view: BrokerView) -> dict[int, list[int]]:
    """Image ids by job that wait for a worker but have no live message."""
    waiting = (Image.status == ImageStatus.queued) | ((Image.status == ImageStatus.pending) & ~Job.is_open)
    rows = session.execute(
        select(Image.job_id, Image.id)
        .join(Job, Image.job_id == Job.id)
        .where(waiting, Job.status != JobStatus.cancelled, _due(older_than, view))
        .order_by(Image.job_id, Image.id)
    ).all()
    lost: dict[int, list[int]] = {}
    for job_id, image_id in rows:
        if image_id not in view.live:
            lost.setdefault(job_id, []).append(image_id)
    return lost


def sweep_once(settings: Settings, app: Celery, client: redis.Redis) -> SweepReport | None:
    """One sweep, if this process wins this interval's lock; None if another one did."""
    if not client.set(
        LOCK_KEY, f"{socket.gethostname()}:{os.getpid()}", nx=True, ex=max(1, settings.sweep_interval - 1)
    ):
        return None
    report = SweepReport()
    with _NO_FORK, database_session(settings.database_url) as session:
        if settings.open_job_ttl > 0:
            report.closed_jobs = close_idle_jobs(session, utcnow() - timedelta(seconds=settings.open_job_ttl))
        purge_keys(session)
    for job_id in report.closed_jobs:
        log.warning("recovery: closed job %d after %d s without new files", job_id, settings.open_job_ttl)
    # An unacknowledged message younger than this may not be published by its worker yet (HOLDER_INTERVAL_S);
    # tying it to stuck_after keeps the promise that nothing waits longer than stuck_after plus one sweep.
    view = inspect(client, grace=min(ORPHAN_GRACE_S, max(settings.stuck_after, 3 * HOLDER_INTERVAL_S)))
    report.orphans = len(view.orphans)
    older_than = utcnow() - timedelta(seconds=settings.stuck_after)
    with _NO_FORK:
        with database_session(settings.database_url) as session:
            for job_id, image_ids in find_lost(session, older_than, view).items():
                moved = requeue_images(session, image_ids, only_if=_due(older_than, view))  # unless queued since
                if moved:
                    report.sent[job_id] = moved
                    refresh_job(session, job_id)
            jobs = select(Job.id, Job.priority, Job.user_id).where(Job.id.in_(list(report.sent)))
            lanes = {job_id: (lane, owner) for job_id, lane, owner in session.execute(jobs).all()}
        for job_id, image_ids in report.sent.items():
            lane, owner = lanes[job_id]
            send_batches(app, image_ids, settings.batch_size, lane, owner)
            log.warning("recovery: sent %d images of job %d again (no live message)", len(image_ids), job_id)
    if view.orphans:
        forget(client, view.orphans)
        log.warning("recovery: removed %d orphaned unacknowledged messages", len(view.orphans))
    return report


def hold_forks_during_sweeps() -> None:
    """From now on a fork of this process waits until no sweep is inside the database or sending."""
    os.register_at_fork(before=_NO_FORK.acquire, after_in_parent=_NO_FORK.release, after_in_child=_NO_FORK.release)


def start_recovery(settings: Settings, app: Celery) -> threading.Thread:
    """In the worker's main process: publish the tasks it holds, and sweep every `settings.sweep_interval` s."""
    from celery.worker import state  # this process's received, reserved, running and countdown tasks by id

    hold_forks_during_sweeps()
    HolderBeacon(settings.effective_redis_url, lambda: list(state.requests)).start()

    def run() -> None:
        client = redis.Redis.from_url(settings.effective_redis_url, socket_timeout=5)
        while True:
            time.sleep(settings.sweep_interval)
            try:
                sweep_once(settings, app, client)
                with _NO_FORK:  # housekeeping uses the database and sends tasks too
                    housekeeping(settings, app, client)
            except (redis.RedisError, BrokerUnavailable, SQLAlchemyError, OSError) as error:
                log.warning("recovery sweep skipped: %s", error)
            except Exception:  # noqa: BLE001 - the sweeper must outlive any one bad sweep
                log.exception("recovery sweep failed")

    thread = threading.Thread(target=run, name="radbatch-recovery", daemon=True)
    thread.start()
    return thread
