"""Celery tasks: thin shells that open a session and call plain functions in worker/."""

from __future__ import annotations

import logging
import time

from celery import shared_task
from sqlalchemy.exc import IntegrityError, OperationalError

from broker import PREDICT_TASK
from db.session import session_scope
from worker import inference, metrics, runtime

log = logging.getLogger(__name__)


@shared_task(
    name=PREDICT_TASK,
    autoretry_for=(OperationalError,),  # database restarting, locked or unreachable: try again later
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=10,
)
def predict_batch(image_ids: list[int]) -> dict:
    """Predict a batch of image ids and store the results; safe to run twice."""
    loaded = runtime.models()
    ids = [int(i) for i in image_ids]
    started = time.perf_counter()
    try:
        with session_scope(runtime.session_factory()) as session:
            outcome = inference.predict_batch(session, ids, loaded.models, loaded.ensemble, runtime.settings())
            committing = time.perf_counter()
    except IntegrityError:  # another delivery of the same batch stored it first
        log.info("batch %s was already stored by another delivery", ids[:5])
        return {"done": 0, "failed": 0, "skipped": len(ids)}
    metrics.observe_batch_stage("commit", time.perf_counter() - committing)
    metrics.observe_batch_stage("total", time.perf_counter() - started)
    counts = outcome.counts()
    metrics.count_batch(counts)
    log.info("batch of %d: %s", len(ids), ", ".join(f"{n} {what}" for what, n in counts.items()))
    return counts
