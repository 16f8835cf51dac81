"""Predict one batch of images: a plain function of a session, the loaded models and the settings.

Read (worker.reading) -> score (worker.scoring) -> store (here). `predict_batch` is idempotent: images
already finished, or in a cancelled job, are skipped, and a redelivered batch never writes a second
prediction for an (image, model). The slow part (decoding and the models) runs outside any transaction;
the results, the image statuses and the job counters are then written in one transaction, which the
caller commits.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from db.jobs import refresh_job
from db.models import Image, ImageStatus, JobStatus, Prediction, utcnow
from models.registry import Ensemble, LoadedModel
from settings import Settings
from worker import metrics
from worker.reading import Decoded, read_images
from worker.scoring import score

log = logging.getLogger(__name__)


@dataclass
class BatchOutcome:
    done: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"done": len(self.done), "failed": len(self.failed), "skipped": len(self.skipped)}


def _needs_work(image: Image) -> bool:
    return image.status.is_unfinished and image.job.status != JobStatus.cancelled


def _load_rows(session: Session, image_ids: list[int], lock: bool = False) -> list[Image]:
    query = select(Image).where(Image.id.in_(image_ids)).options(joinedload(Image.job)).order_by(Image.id)
    if lock and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=Image)
    return list(session.scalars(query).unique())


def predict_batch(
    session: Session,
    image_ids: list[int],
    models: Mapping[str, LoadedModel],
    ensemble: Ensemble,
    settings: Settings,
) -> BatchOutcome:
    """Predict `image_ids` and stage the results in `session` (the caller commits).

    Expects a session with nothing else pending: it ends its read-only transaction before the
    slow part, so no lock or snapshot is held while the models run.
    """
    missing = set(ensemble.members) - set(models)
    if missing:
        raise ValueError(f"the ensemble needs models that are not loaded: {', '.join(sorted(missing))}")
    outcome = BatchOutcome()
    todo = [image for image in _load_rows(session, image_ids) if _needs_work(image)]
    if not todo:
        outcome.skipped = sorted(image_ids)
        return outcome

    decoded, errors = read_images(todo, models, settings)  # in the decoding threads; bad files get their error
    session.rollback()  # end the read-only transaction before the slow part

    rows = score(models, ensemble, decoded, errors)
    with metrics.batch_stage("db_write"):
        return _store(session, image_ids, decoded, errors, rows, outcome)


def _store(
    session: Session,
    image_ids: list[int],
    decoded: dict[int, Decoded],
    errors: dict[int, str],
    rows: dict[int, list[dict]],
    outcome: BatchOutcome,
) -> BatchOutcome:
    """Write the batch in the session's transaction, re-checking each image under a row lock."""
    images = _load_rows(session, image_ids, lock=True)
    existing = set(
        session.execute(select(Prediction.image_id, Prediction.model_name).where(Prediction.image_id.in_(image_ids)))
    )
    now = utcnow()
    for image in images:
        if not _needs_work(image) or (image.id not in errors and image.id not in rows):
            outcome.skipped.append(image.id)  # finished by another delivery meanwhile, or cancelled
            continue
        if image.id in decoded:
            found = decoded[image.id]
            image.width, image.height, image.mode = found.width, found.height, found.mode
        image.processed_at = now
        if image.id in errors:
            image.status, image.error = ImageStatus.failed, errors[image.id]
            outcome.failed.append(image.id)
            continue
        for row in rows[image.id]:
            if (image.id, row["model_name"]) not in existing:
                session.add(Prediction(**row))
        image.status, image.error = ImageStatus.done, None
        outcome.done.append(image.id)
    for job_id in sorted({image.job_id for image in images}):
        refresh_job(session, job_id)
    session.flush()
    return outcome
