"""Hand pending images to the workers: commit the database first, then send batches of ids to Celery."""

from __future__ import annotations

import logging

from celery import Celery
from flask import Flask, current_app
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import Image, ImageStatus
from db.progress import refresh_job
from settings import Settings
from worker.celery_app import PREDICT_TASK, make_celery

logger = logging.getLogger(__name__)
_IN_CHUNK = 500  # ids per UPDATE ... IN (...) statement
_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}


class QueueUnavailable(RuntimeError):
    """The broker could not be reached; the images were put back to pending so a retry can send them."""


def init_app(app: Flask, settings: Settings) -> None:
    app.extensions["radbatch_celery"] = make_celery(settings)


def celery_client() -> Celery:
    return current_app.extensions["radbatch_celery"]


def _set_status(session: Session, ids: list[int], old: ImageStatus, new: ImageStatus) -> None:
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        session.execute(update(Image).where(Image.id.in_(chunk), Image.status == old).values(status=new))


def enqueue_pending(session: Session, job_id: int, *, batch_size: int, full_batches_only: bool) -> int:
    """Queue the job's pending images in batches of `batch_size` ids and return how many were sent.

    With `full_batches_only` (an open job still receiving files) a partial last batch waits for more files.
    Raises QueueUnavailable if the broker is down; the unsent images are pending again.
    """
    ids = list(
        session.scalars(
            select(Image.id).where(Image.job_id == job_id, Image.status == ImageStatus.pending).order_by(Image.id)
        )
    )
    if full_batches_only:
        ids = ids[: len(ids) - len(ids) % batch_size]
    if not ids:
        return 0
    _set_status(session, ids, ImageStatus.pending, ImageStatus.queued)
    refresh_job(session, job_id)
    session.commit()

    client = celery_client()
    sent = 0
    try:
        for start in range(0, len(ids), batch_size):
            batch = ids[start : start + batch_size]
            client.send_task(PREDICT_TASK, args=[batch], retry=True, retry_policy=_RETRY_POLICY)
            sent += len(batch)
    except BrokerError as error:
        logger.error("job %s: could not reach the job queue after %d of %d images: %s", job_id, sent, len(ids), error)
        _set_status(session, ids[sent:], ImageStatus.queued, ImageStatus.pending)
        refresh_job(session, job_id)
        session.commit()
        raise QueueUnavailable(
            f"the job queue is unreachable; {len(ids) - sent} images of job {job_id} are stored and waiting"
        ) from error
    logger.info("job %s: queued %d images in %d tasks", job_id, sent, -(-sent // batch_size))
    return sent
