"""Hand pending images to the workers: commit the database first, then send batches of ids.

A crash between the commit and the send leaves images `queued` with no message. That window is not closed
here (no outbox): the recovery sweep (worker/recovery.py) owns every image that has no live message and
sends it again once it has waited RADBATCH_STUCK_AFTER seconds since `queued_at`.
"""

from __future__ import annotations

import logging

from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker import BrokerUnavailable, send_batches
from db.jobs import refresh_job, set_image_status
from db.models import Image, ImageStatus, Job

logger = logging.getLogger(__name__)


class QueueUnavailable(RuntimeError):
    """The broker could not be reached; the unsent images were put back to pending so a retry can send them."""


def queue_pending(session: Session, client: Celery, job_id: int, batch_size: int, full_batches_only: bool) -> int:
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
    ids = set_image_status(session, ids, ImageStatus.pending, ImageStatus.queued)  # only those this call moved
    if not ids:
        return 0
    refresh_job(session, job_id)
    session.commit()

    try:
        lane, owner = session.execute(select(Job.priority, Job.user_id).where(Job.id == job_id)).one()
        sent = send_batches(client, ids, batch_size, lane or "normal", owner)
    except BrokerUnavailable as error:
        logger.error("job %s: %s after %d of %d images", job_id, error, error.sent, len(ids))
        set_image_status(session, ids[error.sent :], ImageStatus.queued, ImageStatus.pending)
        refresh_job(session, job_id)
        session.commit()
        raise QueueUnavailable(
            f"the job queue is unreachable; {len(ids) - error.sent} images of job {job_id} are stored and waiting"
        ) from error
    logger.info("job %s: queued %d images in %d tasks", job_id, sent, -(-sent // batch_size))
    return sent
