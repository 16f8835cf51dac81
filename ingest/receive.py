"""The one way files enter radbatch: store, flush, commit, queue. The REST API, STOW-RS and the DICOM listener
all call `receive`, so a file is durable before its row is committed and its row is committed before any task
names it, whichever door it came through."""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Celery
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from db.jobs import refresh_job
from db.models import Image
from ingest.durable import sync_stored
from ingest.files import Incoming, add_files, discarded_unless_committed
from ingest.queueing import QueueUnavailable, queue_pending
from settings import Settings

logger = logging.getLogger(__name__)


def receive(
    session: Session,
    settings: Settings,
    job_id: int,
    files: list[Incoming],
    *,
    before_commit: Callable[[list[Image]], None] | None = None,
    commit: Callable[[list[Image]], None] | None = None,
) -> list[Image]:
    """Store the files (`add_files`), flush them to the store, then commit their rows and the job's counts.

    `before_commit(images)` adds the caller's own changes to the same transaction; `commit(images)` replaces
    `session.commit()` (the REST API's commit that remembers an Idempotency-Key). If anything fails, the rows are
    rolled back and the files stored for them deleted. A full store raises ingest.StorageFull.
    """
    images = add_files(session, job_id, files, settings)
    with discarded_unless_committed(session, images, settings):
        if before_commit is not None:
            before_commit(images)
        sync_stored(images, settings)
        refresh_job(session, job_id)
        if commit is None:
            session.commit()
        else:
            commit(images)
    return images


def queue_received(
    session: Session, client: Celery, job_id: int, batch_size: int, full_batches_only: bool
) -> str | None:
    """Send the job's pending images to the workers. A broker or database outage leaves them pending (stored and
    committed) for the next call, the job's closing or the recovery sweep, and never fails the sender: it
    returns what went wrong instead, None when all went."""
    try:
        queue_pending(session, client, job_id, batch_size, full_batches_only)
    except (QueueUnavailable, SQLAlchemyError) as error:
        session.rollback()
        logger.warning("job %s: images stored but not queued yet: %s", job_id, error)
        return str(error)
    return None
