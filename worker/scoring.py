"""Run the served models and the ensemble on a batch of decoded images and shape the prediction rows; keep the
models' other outputs (the feature maps for heat maps) when asked."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded

from models.registry import Ensemble, LoadedModel
from worker import metrics
from worker.reading import Decoded

log = logging.getLogger(__name__)

ENSEMBLE_NAME = "ensemble"


@dataclass
class ModelOutputs:
    ids: list[int]  # the images, in the order of the outputs' first axis
    outputs: dict[str, np.ndarray]


def _stack(model: LoadedModel, ids: list[int], decoded: dict[int, Decoded]) -> np.ndarray:
    return np.stack([decoded[i].inputs[model.name] for i in ids])


def _run(
    model: LoadedModel, ids: list[int], decoded: dict[int, Decoded], errors: dict[int, str]
) -> tuple[list[int], dict[str, np.ndarray]]:
    """Every output of the model for the images it could predict (those ids, in order); if the batch fails,
    retry one by one to isolate the culprit, whose error goes into `errors`."""
    if not ids:
        return [], {}
    try:
        return ids, model.predict_all(_stack(model, ids, decoded))
    except SoftTimeLimitExceeded:
        raise  # out of time: the task retries the images one by one
    except Exception:  # noqa: BLE001 - a model failure must not lose the whole batch
        log.exception("model %s failed on a batch of %d; retrying image by image", model.name, len(ids))
    done, parts = [], []
    for i in ids:
        try:
            parts.append(model.predict_all(_stack(model, [i], decoded)))
            done.append(i)
        except SoftTimeLimitExceeded:
            raise
        except Exception as error:  # noqa: BLE001
            log.exception("model %s failed on image %d", model.name, i)
            errors[i] = f"model {model.name} failed: {type(error).__name__}: {error}"
    return done, {name: np.concatenate([part[name] for part in parts]) for name in parts[0]} if parts else {}


def _row(image_id: int, name: str, version: str, probability: float, label: str, threshold: float) -> dict:
    return {
        "image_id": image_id,
        "model_name": name,
        "model_version": version,
        "probability": probability,
        "label": label,
        "threshold": threshold,
    }


@dataclass
class Scored:
    rows: dict[int, list[dict]]  # image id -> one prediction row per model plus the ensemble
    outputs: dict[str, ModelOutputs]  # model name -> its outputs, for the models that draw heat maps


def score(
    models: Mapping[str, LoadedModel],
    ensemble: Ensemble,
    decoded: dict[int, Decoded],
    errors: dict[int, str],
    keep_outputs: bool = False,
) -> Scored:
    """Prediction rows (one per model plus the ensemble) by image id; a model failure goes into `errors`.
    With `keep_outputs`, every output of the models that have heat maps is kept for them."""
    ok = [i for i in decoded if i not in errors]
    probabilities: dict[str, dict[int, float]] = {}
    kept: dict[str, ModelOutputs] = {}
    with metrics.batch_stage("inference"):
        for name, model in models.items():
            ids, outputs = _run(model, ok, decoded, errors)
            found = model.calibration(model.raw_probabilities(outputs)) if ids else []
            probabilities[name] = {i: float(p) for i, p in zip(ids, found)}
            if keep_outputs and model.has_heatmaps and ids:
                kept[name] = ModelOutputs(ids, outputs)
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
    return Scored(rows, kept)
