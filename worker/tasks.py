"""Celery tasks: thin shells that open a session and call plain functions in worker/."""

from __future__ import annotations

import logging

from celery import shared_task
from sqlalchemy.exc import IntegrityError, OperationalError

from db.session import session_scope
from worker import inference, runtime
from worker.celery_app import PREDICT_TASK

log = logging.getLogger(__name__)

MAX_DB_RETRIES = 10


@shared_task(name=PREDICT_TASK, bind=True, max_retries=MAX_DB_RETRIES)
def predict_batch(self, image_ids: list[int]) -> dict:
    """Predict a batch of image ids and store the results; safe to run twice."""
    loaded = runtime.models()
    ids = [int(i) for i in image_ids]
    try:
        with session_scope(runtime.session_factory()) as session:
            outcome = inference.predict_batch(session, ids, loaded.models, loaded.ensemble, runtime.settings())
    except OperationalError as error:  # database restarting, locked or unreachable: try again later
        log.warning("database error on batch %s (retry %d): %s", ids[:5], self.request.retries, error)
        raise self.retry(exc=error, countdown=min(60, 2**self.request.retries)) from error
    except IntegrityError:  # another delivery of the same batch stored it first
        log.info("batch %s was already stored by another delivery", ids[:5])
        return {"done": 0, "failed": 0, "skipped": len(ids)}
    log.info(
        "batch of %d: %d done, %d failed, %d skipped",
        len(ids),
        len(outcome.done),
        len(outcome.failed),
        len(outcome.skipped),
    )
    return {"done": len(outcome.done), "failed": len(outcome.failed), "skipped": len(outcome.skipped)}
