"""Recovery sweep: re-enqueue images whose task was lost (for example when Redis restarted empty).

The database is the source of truth. Every `settings.sweep_interval` seconds one worker (a Redis lock picks it)
looks for images still `queued` (or `pending` in a closed job) created more than `settings.stuck_after` s ago,
in jobs that are neither cancelled nor open, and sends their ids again. It only does so while the
broker is quiet (the queue is empty and no message is unacknowledged), so a long backlog is never
mistaken for lost work. Sending a batch twice is harmless: `predict_batch` is idempotent.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import datetime, timedelta

import redis
from celery import Celery
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from broker import QUEUE, BrokerUnavailable, send_batches
from db.jobs import set_image_status
from db.models import Image, ImageStatus, Job, JobStatus, utcnow
from db.session import database_session
from settings import Settings
from worker.housekeeping import housekeeping

log = logging.getLogger(__name__)

LOCK_KEY = "radbatch:sweep-lock"
UNACKED_KEY = "unacked"  # kombu's Redis transport keeps unacknowledged messages in this hash


def find_stuck(session: Session, older_than: datetime) -> dict[int, list[int]]:
    """Image ids by job that should be on the queue but may not be."""
    waiting = (Image.status == ImageStatus.queued) | ((Image.status == ImageStatus.pending) & ~Job.is_open)
    rows = session.execute(
        select(Image.job_id, Image.id)
        .join(Job, Image.job_id == Job.id)
        .where(waiting, Image.created_at < older_than, Job.status != JobStatus.cancelled, ~Job.is_open)
        .order_by(Image.job_id, Image.id)
    ).all()
    stuck: dict[int, list[int]] = {}
    for job_id, image_id in rows:
        stuck.setdefault(job_id, []).append(image_id)
    return stuck


def broker_is_quiet(client: redis.Redis) -> bool:
    return client.llen(QUEUE) == 0 and client.hlen(UNACKED_KEY) == 0


def requeue_stuck(settings: Settings, app: Celery, older_than: datetime) -> int:
    """Mark stuck images queued, commit, then send them again in batches; returns how many were sent."""
    with database_session(settings.database_url) as session:
        stuck = find_stuck(session, older_than)
        set_image_status(session, [i for ids in stuck.values() for i in ids], ImageStatus.pending, ImageStatus.queued)
    sent = 0
    for job_id, image_ids in stuck.items():
        sent += send_batches(app, image_ids, settings.batch_size)
        log.warning("recovery: re-enqueued %d images of job %d", len(image_ids), job_id)
    return sent


def sweep_once(settings: Settings, app: Celery, client: redis.Redis, interval: int, stuck_after: int) -> int:
    """One sweep, if this process wins the lock and the broker is quiet."""
    if not client.set(LOCK_KEY, f"{socket.gethostname()}:{os.getpid()}", nx=True, ex=max(1, interval - 1)):
        return 0
    if not broker_is_quiet(client):
        return 0
    return requeue_stuck(settings, app, utcnow() - timedelta(seconds=stuck_after))


def start_sweeper(settings: Settings, app: Celery) -> threading.Thread:
    """A daemon thread in the worker's main process that sweeps every `settings.sweep_interval` seconds."""

    def run() -> None:
        client = redis.Redis.from_url(settings.effective_redis_url, socket_timeout=5)
        while True:
            time.sleep(settings.sweep_interval)
            try:
                sweep_once(settings, app, client, settings.sweep_interval, settings.stuck_after)
                housekeeping(settings, app, client)
            except (redis.RedisError, BrokerUnavailable, SQLAlchemyError, OSError) as error:
                log.warning("recovery sweep skipped: %s", error)

    thread = threading.Thread(target=run, name="radbatch-recovery", daemon=True)
    thread.start()
    return thread
