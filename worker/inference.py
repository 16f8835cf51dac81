"""Predict one batch of images: a plain function of a session, the loaded models and the settings.

Read (worker.reading) -> score (worker.scoring) -> heat maps (worker.heatmaps) -> store (here).
`predict_batch` is idempotent, image by image, on SQLite and PostgreSQL alike: images already finished, or
in a cancelled job, are skipped; each image is stored only if a conditional UPDATE still finds it unfinished
(so of two deliveries racing on it, exactly one stores it), and its predictions are inserted with ON
CONFLICT DO NOTHING on (image, model), its findings on (image, finding). A duplicate delivery therefore never
rolls back its batch-mates. The slow part (decoding, the models and the heat maps) runs outside any
transaction; the results, the image statuses and the job counters are then written in one transaction, which
the caller commits.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import bindparam, exists, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, joinedload

from db.findings import FindingPrediction
from db.jobs import refresh_job
from db.models import Image, ImageStatus, Job, JobStatus, Prediction, join_notes, split_notes, utcnow
from db.shadow import ShadowPrediction
from models.drift import input_statistics
from models.findings import FindingHeads
from models.registry import Ensemble, LoadedModel
from settings import Settings
from worker import metrics
from worker.heatmaps import write_heatmaps
from worker.reading import Decoded, read_images
from worker.scoring import Scores, score

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


def _load_rows(session: Session, image_ids: list[int]) -> list[Image]:
    query = select(Image).where(Image.id.in_(image_ids)).options(joinedload(Image.job)).order_by(Image.id)
    return list(session.scalars(query).unique())


def predict_batch(
    session: Session,
    image_ids: list[int],
    models: Mapping[str, LoadedModel],
    ensemble: Ensemble | None,
    settings: Settings,
    findings: FindingHeads | None = None,
    shadow: Mapping[str, LoadedModel] | None = None,
    headline: str = "",
) -> BatchOutcome:
    """Predict `image_ids` and stage the results in `session` (the caller commits).

    Expects a session with nothing else pending: it ends its read-only transaction before the
    slow part, so no lock or snapshot is held while the models run.
    """
    missing = set(ensemble.members if ensemble else ()) - set(models)
    if missing:
        raise ValueError(f"the ensemble needs models that are not loaded: {', '.join(sorted(missing))}")
    outcome = BatchOutcome()
    todo = [image for image in _load_rows(session, image_ids) if _needs_work(image)]
    if not todo:
        outcome.skipped = sorted(image_ids)
        return outcome

    without_heatmaps = {image.id for image in todo if not image.job.heatmaps}  # read before the rollback expires it
    decoded, errors = read_images(todo, {**models, **(shadow or {})}, settings)  # bad files get their error
    ingest_notes = {image.id: split_notes(image.notes) for image in todo}
    session.rollback()  # end the read-only transaction before the slow part

    for image_id, found in decoded.items():
        found.notes = ingest_notes.get(image_id, []) + found.notes  # join_notes drops the repeats
    keep_outputs = len(without_heatmaps) < len(todo)
    scores = score(
        models,
        ensemble,
        decoded,
        errors,
        findings,
        keep_outputs=keep_outputs,
        prevalence=settings.prevalence,
        shadow=shadow,
        headline=headline,
    )
    if scores.outputs:
        with metrics.batch_stage("heatmaps"):
            write_heatmaps(models, scores.outputs, decoded, set(errors) | without_heatmaps, settings)
    with metrics.batch_stage("db_write"):
        return _store(session, image_ids, decoded, errors, scores, outcome)


def _insert_ignoring_duplicates(session: Session, table: type, unique: list[str]):
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing(index_elements=unique)


def _store(
    session: Session,
    image_ids: list[int],
    decoded: dict[int, Decoded],
    errors: dict[int, str],
    scores: Scores,
    outcome: BatchOutcome,
) -> BatchOutcome:
    """Write the batch in the session's transaction, each image only if it is still unfinished.

    One conditional UPDATE claims every predicted image at once (its RETURNING says which ones this delivery
    stored); failed images are written one by one with their own error. Then one statement each writes the
    stored images' columns, predictions and findings.
    """
    now = utcnow()
    not_cancelled = ~exists().where(Job.id == Image.job_id, Job.status == JobStatus.cancelled)
    still_unfinished = (Image.status.in_(ImageStatus.unfinished()), not_cancelled)
    ids = sorted(image_ids)  # ascending ids: concurrent deliveries lock rows in the same order
    outcome.skipped += [i for i in ids if i not in errors and i not in scores.predictions]  # finished or cancelled
    jobs: dict[int, int] = {}  # image id -> job id, of the images this delivery stored
    for image_id in (i for i in ids if i in errors):
        job_id = session.scalar(
            update(Image)
            .where(Image.id == image_id, *still_unfinished)
            .values(status=ImageStatus.failed, error=errors[image_id], processed_at=now)
            .returning(Image.job_id),
            execution_options={"synchronize_session": False},
        )
        if job_id is not None:
            jobs[image_id] = job_id
            outcome.failed.append(image_id)
    predicted = [i for i in ids if i in scores.predictions and i not in errors]
    if predicted:
        claimed = session.execute(
            update(Image)
            .where(Image.id.in_(predicted), *still_unfinished)
            .values(status=ImageStatus.done, error=None, processed_at=now)
            .returning(Image.id, Image.job_id),
            execution_options={"synchronize_session": False},
        ).all()
        jobs |= dict(claimed)
        outcome.done += sorted(image_id for image_id, _ in claimed)
    lost = set(ids) - set(jobs) - set(outcome.skipped)
    outcome.skipped = sorted(set(outcome.skipped) | lost)  # finished by another delivery meanwhile, or cancelled
    _write_columns(session, [i for i in sorted(jobs) if i in decoded], decoded)
    _insert_rows(session, Prediction, ["image_id", "model_name"], scores.predictions, outcome.done)
    _insert_rows(session, FindingPrediction, ["image_id", "finding"], scores.findings, outcome.done)
    _insert_rows(session, ShadowPrediction, ["image_id", "model_name", "model_version"], scores.shadow, outcome.done)
    for job_id in sorted(set(jobs.values())):
        refresh_job(session, job_id)
    session.flush()
    return outcome


def _write_columns(session: Session, image_ids: list[int], decoded: dict[int, Decoded]) -> None:
    """The decoded size, mode, notes and input statistics (drift monitoring) of images this delivery just stored,
    in one executemany UPDATE."""
    if not image_ids:
        return
    columns = ("width", "height", "mode", "notes", "pixel_mean", "pixel_std")
    statement = (
        update(Image.__table__)
        .where(Image.__table__.c.id == bindparam("stored_id"))
        .values({name: bindparam(f"new_{name}") for name in columns})
    )
    rows = [
        {"stored_id": i} | {f"new_{name}": value for name, value in zip(columns, _columns(decoded[i]))}
        for i in image_ids
    ]
    session.execute(statement, rows)


def _columns(found: Decoded) -> tuple:
    pixels = input_statistics(next(iter(found.inputs.values()))) if found.inputs else (None, None)
    return found.width, found.height, found.mode, join_notes(found.notes), *pixels


def _insert_rows(session: Session, table: type, unique: list[str], rows: dict[int, list[dict]], ids: list[int]):
    """Every row of `ids` in one INSERT ... ON CONFLICT DO NOTHING (an image stored twice keeps its first rows)."""
    found = [row for i in ids for row in rows.get(i, [])]
    if found:
        session.execute(_insert_ignoring_duplicates(session, table, unique), found)
