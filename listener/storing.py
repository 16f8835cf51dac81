"""Store one received instance through the one ingest path and say which C-STORE status the sender gets.

- **Success (0x0000)** only once the file is on disk, flushed (`ingest.sync_stored`), and its row committed.
- **Out of resources (0xA700)** when the disk or the database fails: nothing of the instance was kept, and the
  sender will send it again.
- **Cannot understand (0xC000)** when ingest refused the file (its row carries the reason) or the job no longer
  accepts files (cancelled meanwhile): sending it again would not help.
- **Data set does not match SOP class (0xA900)** when a UID that names the instance (SOP Class, SOP Instance,
  Study Instance) is not a valid UID (PS3.5 9.1): nothing is stored and no row is made.

Instances are recognised by their SOP Instance UID within the job (`ingest.instances`): an instance the job
already holds with the same bytes is answered with success, logged and counted on the job, and not stored
again. A sender that resends what a dead listener never acknowledged (see `listener.jobs`) therefore adds each
instance once. Other content under a UID the job holds is stored as an image of its own, with a note.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

from celery import Celery
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from db.models import Image, ImageStatus
from ingest import (
    Incoming,
    QueueUnavailable,
    count_resent,
    held_copies,
    identical,
    instance_path,
    note_namesake,
    queue_pending,
    receive,
    stored_pixels,
)
from listener.jobs import accepting
from settings import Settings

logger = logging.getLogger(__name__)
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
DOES_NOT_MATCH = 0xA900  # "data set does not match SOP class": here, a UID that is not one


@dataclass(frozen=True)
class Outcome:
    status: int
    comment: str = ""  # why, for the sender's ErrorComment (at most 64 characters are sent)
    image_id: int | None = None
    duplicate: bool = False


def _store(
    session: Session, settings: Settings, job_id: int, identity: tuple[str, str], data: bytes, parsed: object
) -> Outcome:
    study, sop_instance = identity
    if not accepting(session, job_id):
        return Outcome(CANNOT_UNDERSTAND, f"job {job_id} no longer accepts files (closed or cancelled)")
    held = held_copies(session, job_id, study, sop_instance)
    same = identical(held, data)
    if same is not None:
        count_resent(session, job_id)
        session.commit()
        logger.info(
            "job %d: an instance identical to image %d was received again; not stored twice", job_id, same.image_id
        )
        return Outcome(SUCCESS, image_id=same.image_id, duplicate=True)
    path = instance_path(study, sop_instance, copy=len(held) + 1)

    def namesake(images: list[Image]) -> None:
        if held and images:
            note_namesake(images[0], held[0].image_id, stored_pixels(settings, held[0]), data)
            logger.warning(
                "job %d: image %d reuses the SOP Instance UID of image %d", job_id, images[0].id, held[0].image_id
            )

    incoming = Incoming(path=path, stream=io.BytesIO(data), parsed=parsed)
    images = receive(session, settings, job_id, [incoming], before_commit=namesake)
    if not images:  # ingest keeps no row for a DICOMDIR: an index of files, not an image
        return Outcome(CANNOT_UNDERSTAND, "not an image (a DICOMDIR)")
    image = images[0]
    if image.status == ImageStatus.failed:
        return Outcome(CANNOT_UNDERSTAND, image.error or "refused", image_id=image.id)
    return Outcome(SUCCESS, image_id=image.id)


def store_instance(
    sessions: sessionmaker[Session],
    settings: Settings,
    client: Celery,
    job_id: int,
    identity: tuple[str, str],
    data: bytes,
    parsed: object = None,
) -> Outcome:
    """Store one Part 10 file, `identity` (Study Instance UID, SOP Instance UID), in the job, commit, then queue the
    job's full batches. `parsed` is what `dicomio.instances.parse_instance` made of it, if the caller parsed it."""
    path = instance_path(*identity)
    try:
        with sessions() as session:
            outcome = _store(session, settings, job_id, identity, data, parsed)
    except OSError as error:
        logger.error("job %s: could not store %s: %s", job_id, path, error)
        return Outcome(OUT_OF_RESOURCES, f"storage failed: {error.strerror or error}")
    except SQLAlchemyError as error:
        logger.error("job %s: database failed while storing %s: %s", job_id, path, error)
        return Outcome(OUT_OF_RESOURCES, "database unavailable")
    if outcome.status == SUCCESS and not outcome.duplicate:
        queue_quietly(sessions, client, job_id, settings.batch_size, full_batches_only=True)
    return outcome


def queue_quietly(
    sessions: sessionmaker[Session], client: Celery, job_id: int, batch_size: int, full_batches_only: bool
) -> int:
    """Send the job's pending images; a broker or database outage leaves them pending (stored and committed)
    for the next call, the job's closing or the recovery sweep, and never fails the sender."""
    try:
        with sessions() as session:
            return queue_pending(session, client, job_id, batch_size, full_batches_only)
    except (QueueUnavailable, SQLAlchemyError) as error:
        logger.warning("job %s: images stored but not queued yet: %s", job_id, error)
        return 0
