"""The prediction queues (`radbatch-u0` … `radbatch-u7`, broker.PREDICT_QUEUES): one batch of image ids, predicted
and stored by `worker.inference`."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import OperationalError

from broker import PREDICT_TASK, send_forwards
from db.jobs import requeue_images
from db.session import session_scope
from storage import StorageUnavailable
from worker import delivery, inference, metrics, runtime
from worker.forwarding import one_per_study

log = logging.getLogger(__name__)
STORE_RETRIES = 20  # about 17 minutes of waiting for the object store; then the recovery sweep sends them again


@shared_task(
    name=PREDICT_TASK,
    bind=True,
    autoretry_for=(OperationalError,),  # database restarting, locked or unreachable: try again later
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=10,
)
def predict_batch(self, image_ids: list[int]) -> dict:
    """Predict a batch of image ids and store the results; safe to run twice."""
    clock = metrics.Clock(process=True)  # the whole task, claim included
    loaded = runtime.models()
    settings = runtime.settings()
    sessions = runtime.session_factory()
    ids = [int(i) for i in image_ids]
    with session_scope(sessions) as session:  # committed before any risky work
        claim = delivery.claim(session, ids, settings.max_attempts)
    delivery.send_alone(self.app, claim.alone, claim.lane, claim.owner)
    counts = {"done": 0, "failed": len(claim.given_up), "skipped": len(ids) - len(claim.run) - len(claim.given_up)}
    if not claim.run:
        metrics.count_batch(counts)
        return counts
    try:
        with session_scope(sessions) as session:
            outcome = inference.predict_batch(
                session,
                claim.run,
                loaded.models,
                loaded.ensemble,
                settings,
                loaded.findings,
                shadow=loaded.shadow,
                headline=loaded.headline,
            )
            commit_clock = metrics.Clock(process=True)
    except StorageUnavailable as error:  # the images are fine: wait for the store, then the sweep takes over
        with session_scope(sessions) as session:
            delivery.give_back(session, claim.run)
        wait = min(60, 5 * 2**self.request.retries)
        log.warning("object store unavailable (%s); batch of %d tried again in %d s", error, len(claim.run), wait)
        raise self.retry(exc=error, countdown=wait, max_retries=STORE_RETRIES) from None
    except SoftTimeLimitExceeded:
        with session_scope(sessions) as session:
            retry = requeue_images(session, claim.run)
        log.warning("a batch ran past %d s; %d images sent again alone", settings.task_soft_time_limit, len(retry))
        delivery.send_alone(self.app, retry, claim.lane, claim.owner)
        return counts | {"skipped": counts["skipped"] + len(claim.run)}
    metrics.observe_batch_stage("commit", *commit_clock.lap())
    metrics.observe_batch_stage("total", *clock.lap())
    counts = {name: counts[name] + n for name, n in outcome.counts().items()}
    if (settings.dicom_forward or settings.fhir_forward or settings.hl7_forward) and outcome.done:
        _forward(self.app, sessions, settings, outcome.done)
    metrics.count_batch(counts)
    log.info("batch of %d: %s", len(ids), ", ".join(f"{n} {what}" for what, n in counts.items()))
    return counts


def _forward(app, sessions, settings, image_ids: list[int]) -> None:
    """Hand the stored results to the forwarding worker, one task per study; a broker or database outage loses the
    forwarding, never the batch."""
    try:
        with sessions() as session:
            image_ids = one_per_study(session, image_ids)
        on = {
            "dicom": bool(settings.dicom_forward),
            "fhir": bool(settings.fhir_forward),
            "hl7": bool(settings.hl7_forward),
        }
        send_forwards(app, image_ids, **on)
    except (BrokerError, OperationalError) as error:
        log.error("could not queue the forwarding of %d SRs: %s", len(image_ids), error)
