"""Predict one batch of images: a plain function of a session, the loaded models and the settings.

`predict_batch` is idempotent: images already finished, or in a cancelled job, are skipped, and a
redelivered batch never writes a second prediction for an (image, model). The slow part (decoding
and the models) runs outside any transaction; the results, the image statuses and the job counters
are then written in one transaction, which the caller commits.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from db.models import Image, ImageStatus, JobStatus, Prediction, utcnow
from db.progress import refresh_job
from models.preprocess import ImageDecodeError, decode_image, preprocess, to_gray
from models.registry import Ensemble, LoadedModel
from settings import Settings

log = logging.getLogger(__name__)

THUMBNAIL_PX = 128
ENSEMBLE_NAME = "ensemble"
TODO = (ImageStatus.pending, ImageStatus.queued)


@dataclass
class Decoded:
    width: int
    height: int
    mode: str
    inputs: dict[str, np.ndarray]  # model name -> (size, size, channels)


@dataclass
class BatchOutcome:
    done: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)


def _is_todo(image: Image) -> bool:
    return image.status in TODO and image.job.status != JobStatus.cancelled


def _load_rows(session: Session, image_ids: list[int], lock: bool = False) -> list[Image]:
    query = select(Image).where(Image.id.in_(image_ids)).options(joinedload(Image.job)).order_by(Image.id)
    if lock and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=Image)
    return list(session.scalars(query).unique())


def write_thumbnail(image: PILImage.Image, path: Path) -> None:
    """An 8-bit gray PNG at most THUMBNAIL_PX on a side, written atomically."""
    gray = np.clip(np.rint(to_gray(image) * 255.0), 0, 255).astype(np.uint8)
    thumbnail = PILImage.fromarray(gray, mode="L")
    thumbnail.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX), PILImage.Resampling.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            thumbnail.save(handle, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def decode_one(image: Image, models: Mapping[str, LoadedModel], settings: Settings) -> Decoded:
    """Read, decode, thumbnail and preprocess one stored file; ImageDecodeError says what is wrong."""
    if not image.stored_name:
        raise ImageDecodeError("the upload was not stored, so there is nothing to read")
    path = settings.upload_dir / image.stored_name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageDecodeError("the uploaded file is missing from the server's upload folder") from None
    picture = decode_image(data)
    write_thumbnail(picture, settings.thumbnail_dir / f"{image.id}.png")
    inputs = {name: preprocess(picture, size=m.input_size, channels=m.channels) for name, m in models.items()}
    return Decoded(width=picture.width, height=picture.height, mode=picture.mode, inputs=inputs)


def _predict(model: LoadedModel, ids: list[int], decoded: dict[int, Decoded], errors: dict[int, str]) -> dict:
    """Calibrated probabilities by image id; if the batch fails, retry one by one to isolate the culprit."""
    if not ids:
        return {}
    try:
        probabilities = model.predict(np.stack([decoded[i].inputs[model.name] for i in ids]))
        return {i: float(p) for i, p in zip(ids, probabilities)}
    except Exception:  # noqa: BLE001 - a model failure must not lose the whole batch
        log.exception("model %s failed on a batch of %d; retrying image by image", model.name, len(ids))
    results = {}
    for i in ids:
        try:
            results[i] = float(model.predict(decoded[i].inputs[model.name][None])[0])
        except Exception as error:  # noqa: BLE001
            log.exception("model %s failed on image %d", model.name, i)
            errors[i] = f"model {model.name} failed: {type(error).__name__}: {error}"
    return results


def _prediction(image_id: int, name: str, version: str, probability: float, label: str, threshold: float) -> dict:
    return {
        "image_id": image_id,
        "model_name": name,
        "model_version": version,
        "probability": probability,
        "label": label,
        "threshold": threshold,
    }


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
    todo = [(image.id, image) for image in _load_rows(session, image_ids) if _is_todo(image)]
    if not todo:
        outcome.skipped = sorted(image_ids)
        return outcome

    decoded: dict[int, Decoded] = {}
    errors: dict[int, str] = {}
    for image_id, image in todo:
        try:
            decoded[image_id] = decode_one(image, models, settings)
        except ImageDecodeError as error:
            errors[image_id] = str(error)
        except Exception as error:  # noqa: BLE001 - one bad image must not fail the batch
            log.exception("unexpected error on image %d", image_id)
            errors[image_id] = f"internal error while reading the image: {type(error).__name__}: {error}"
    session.rollback()  # end the read-only transaction before the slow part

    ok = [i for i in decoded if i not in errors]
    probabilities = {name: _predict(model, ok, decoded, errors) for name, model in models.items()}
    rows: dict[int, list[dict]] = {}
    for i in ok:
        if i in errors:
            continue
        per_model = {name: probabilities[name][i] for name in models}
        rows[i] = [
            _prediction(i, name, models[name].version, p, models[name].label(p), models[name].threshold)
            for name, p in per_model.items()
        ]
        p = float(ensemble.combine({m: np.array([per_model[m]]) for m in ensemble.members})[0])
        rows[i].append(_prediction(i, ENSEMBLE_NAME, ensemble.version, p, ensemble.label(p), ensemble.threshold))

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
        if not _is_todo(image) or (image.id not in errors and image.id not in rows):
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
