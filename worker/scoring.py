"""Run the served models and the ensemble on a batch of decoded images and shape the prediction rows."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded

from models.registry import Ensemble, LoadedModel
from worker import metrics
from worker.reading import Decoded

log = logging.getLogger(__name__)

ENSEMBLE_NAME = "ensemble"


def _probabilities(model: LoadedModel, ids: list[int], decoded: dict[int, Decoded], errors: dict[int, str]) -> dict:
    """Calibrated probabilities by image id; if the batch fails, retry one by one to isolate the culprit."""
    if not ids:
        return {}
    try:
        probabilities = model.predict(np.stack([decoded[i].inputs[model.name] for i in ids]))
        return {i: float(p) for i, p in zip(ids, probabilities)}
    except SoftTimeLimitExceeded:
        raise  # out of time: the task retries the images one by one
    except Exception:  # noqa: BLE001 - a model failure must not lose the whole batch
        log.exception("model %s failed on a batch of %d; retrying image by image", model.name, len(ids))
    results = {}
    for i in ids:
        try:
            results[i] = float(model.predict(decoded[i].inputs[model.name][None])[0])
        except SoftTimeLimitExceeded:
            raise
        except Exception as error:  # noqa: BLE001
            log.exception("model %s failed on image %d", model.name, i)
            errors[i] = f"model {model.name} failed: {type(error).__name__}: {error}"
    return results


def _row(image_id: int, name: str, version: str, probability: float, label: str, threshold: float) -> dict:
    return {
        "image_id": image_id,
        "model_name": name,
        "model_version": version,
        "probability": probability,
        "label": label,
        "threshold": threshold,
    }


def score(
    models: Mapping[str, LoadedModel], ensemble: Ensemble, decoded: dict[int, Decoded], errors: dict[int, str]
) -> dict[int, list[dict]]:
    """Prediction rows (one per model plus the ensemble) by image id; a model failure goes into `errors`."""
    ok = [i for i in decoded if i not in errors]
    with metrics.batch_stage("inference"):
        probabilities = {name: _probabilities(model, ok, decoded, errors) for name, model in models.items()}
    rows: dict[int, list[dict]] = {}
    for i in ok:
        if i in errors:
            continue
        per_model = {name: probabilities[name][i] for name in models}
        rows[i] = [
            _row(i, name, models[name].version, p, models[name].label(p), models[name].threshold)
            for name, p in per_model.items()
        ]
        p = float(ensemble.combine({m: np.array([per_model[m]]) for m in ensemble.members})[0])
        rows[i].append(_row(i, ENSEMBLE_NAME, ensemble.version, p, ensemble.label(p), ensemble.threshold))
    return rows
