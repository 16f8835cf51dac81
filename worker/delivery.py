"""Delivery accounting: how many deliveries started work on each image, and what this delivery should do.

Every delivery first claims its images, in a transaction committed before any risky work (decoding, the
models): each unfinished image's `attempts` goes up by one. An image whose earlier attempt never finished
(the worker process died: out of memory, a native crash, the hard time limit; or its batch ran past the soft
time limit) shows it in its count, so:

- an image that already had RADBATCH_MAX_ATTEMPTS attempts fails now, alone, with the reason;
- in a batch of several, the images attempted before are not tried together again: each goes back on the queue
  as a task of its own, so a poison image cannot take its batch-mates down with it a second time;
- the others run now.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from celery import Celery
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from broker import BrokerUnavailable, send_batches
from db.jobs import refresh_job, requeue_images
from db.models import Image, ImageStatus, Job, JobStatus, utcnow

log = logging.getLogger(__name__)


def give_up_reason(attempts: int) -> str:
    return (
        f"gave up after {attempts} attempts: each time, the worker process stopped on this image before finishing it "
        "(out of memory, a crash or the time limit); the file may be too large or malformed"
    )


@dataclass
class Claim:
    run: list[int] = field(default_factory=list)  # attempt counted: work on these now
    alone: list[int] = field(default_factory=list)  # attempted before: send again, one image per task
    given_up: list[int] = field(default_factory=list)  # failed now, with the reason
    lane: str = "normal"  # the batch's job's priority (a batch holds one job's images)
    owner: int = 0  # the job's user, whose shard queue its batches go to


def claim(session: Session, image_ids: list[int], max_attempts: int) -> Claim:
    """Sort `image_ids` into run / alone / given up and stage the changes in `session` (the caller commits)."""
    rows = session.execute(
        select(Image.id, Image.attempts, Image.job_id, Job.priority, Job.user_id)
        .join(Job, Image.job_id == Job.id)
        .where(Image.id.in_(image_ids), Image.status.in_(ImageStatus.unfinished()), Job.status != JobStatus.cancelled)
        .order_by(Image.id)
    ).all()
    result = Claim()
    for image_id, attempts, _job_id, lane, owner in rows:
        result.lane, result.owner = lane, owner
        if attempts >= max_attempts:
            result.given_up.append(image_id)
            session.execute(
                update(Image)
                .where(Image.id == image_id, Image.status.in_(ImageStatus.unfinished()))
                .values(status=ImageStatus.failed, error=give_up_reason(attempts), processed_at=utcnow())
            )
        elif attempts > 0 and len(image_ids) > 1:
            result.alone.append(image_id)
        else:
            result.run.append(image_id)
    for job_id in sorted({job_id for image_id, _, job_id, _, _ in rows if image_id in result.given_up}):
        refresh_job(session, job_id)
    if result.run:
        session.execute(
            update(Image)
            .where(Image.id.in_(result.run), Image.status.in_(ImageStatus.unfinished()))
            .values(attempts=Image.attempts + 1),
            execution_options={"synchronize_session": False},
        )
    if result.alone:
        result.alone = requeue_images(session, result.alone)
    if result.given_up:
        log.warning("gave up on images %s after %d attempts each", result.given_up, max_attempts)
    if result.alone:
        log.warning(
            "%d images of this batch were attempted before: each goes back on the queue alone", len(result.alone)
        )
    return result


def give_back(session: Session, image_ids: list[int]) -> None:
    """Undo `claim`'s count of an attempt on these images: their batch never got to try them (the object store
    was out), so the wait must not bring them closer to being given up."""
    if image_ids:
        session.execute(
            update(Image)
            .where(Image.id.in_(image_ids), Image.status.in_(ImageStatus.unfinished()), Image.attempts > 0)
            .values(attempts=Image.attempts - 1),
            execution_options={"synchronize_session": False},
        )


def send_alone(app: Celery, image_ids: list[int], lane: str, owner: int) -> None:
    """Send each image as a task of its own, on its job's lane and owner's shard, after the caller committed; if
    the broker is down, the sweep will."""
    if not image_ids:
        return
    try:
        send_batches(app, image_ids, batch_size=1, priority=lane, user_id=owner)
    except BrokerUnavailable as error:
        log.warning("could not send %d images again (%s); the recovery sweep will", len(image_ids), error)
