"""Run the served models, the ensemble and the per-finding heads on a batch of decoded images and shape the rows.

The findings heads read each feature model's `pooled_features`, and the heat maps (worker.heatmaps) the feature
maps of the models that have them, from the same forward pass as its disease probability: no second run of any
model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded

from models.findings import FindingHeads
from models.prevalence import PriorShift, shifted
from models.registry import Ensemble, LoadedModel
from worker import metrics
from worker.reading import Decoded

log = logging.getLogger(__name__)

ENSEMBLE_NAME = "ensemble"


@dataclass
class ModelOutputs:
    ids: list[int]  # the images, in the order of the outputs' first axis
    outputs: dict[str, np.ndarray]


@dataclass
class Scores:
    predictions: dict[int, list[dict]] = field(default_factory=dict)  # by image id: one row per model + ensemble
    findings: dict[int, list[dict]] = field(default_factory=dict)  # by image id: one row per finding head
    outputs: dict[str, ModelOutputs] = field(default_factory=dict)  # by model: every output, if kept for heat maps


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


def _probabilities(model: LoadedModel, ids: list[int], outputs: dict[str, np.ndarray]) -> dict:
    """(calibrated probability, pooled features or None) by image id."""
    if not ids:
        return {}
    probabilities, features = model.disease_and_features(outputs)
    features = [None] * len(ids) if features is None else features
    return {i: (float(p), f) for i, p, f in zip(ids, probabilities, features)}


def _row(
    image_id: int, name: str, version: str, probability: float, label: str, threshold: float, shift: PriorShift
) -> dict:
    """A prediction row at the shift's target prevalence (`shifted`)."""
    return {
        "image_id": image_id,
        "model_name": name,
        "model_version": version,
        **shifted(probability, label, threshold, shift),
    }


def _finding_rows(
    heads: FindingHeads, outputs: dict[str, dict], ids: list[int], prevalence: float | None
) -> dict[int, list[dict]]:
    if not ids:
        return {}
    features = {m: np.stack([outputs[m][i][1] for i in ids]) for m in heads.feature_models}
    return {
        i: [{"image_id": i, "finding": name, "model_version": heads.version, **found} for name, found in per.items()]
        for i, per in zip(ids, heads.all_findings(features, prevalence))
    }


def score(
    models: Mapping[str, LoadedModel],
    ensemble: Ensemble,
    decoded: dict[int, Decoded],
    errors: dict[int, str],
    findings: FindingHeads | None = None,
    keep_outputs: bool = False,
    prevalence: float | None = None,
) -> Scores:
    """Prediction rows (one per model plus the ensemble) and finding rows by image id; a model failure goes
    into `errors`. Findings need every one of the heads' feature models among `models`. With `keep_outputs`,
    every output of the models that have heat maps is kept for them. Probabilities and thresholds of models,
    ensemble and findings are shifted to `prevalence` (None: each one's trained prevalence)."""
    ok = [i for i in decoded if i not in errors]
    scores = Scores()
    outputs: dict[str, dict] = {}
    with metrics.batch_stage("inference"):
        for name, model in models.items():
            ids, found = _run(model, ok, decoded, errors)
            outputs[name] = _probabilities(model, ids, found)
            if keep_outputs and model.has_heatmaps and ids:
                scores.outputs[name] = ModelOutputs(ids, found)
    shifts = {name: PriorShift.to(prevalence, model.trained_prevalence) for name, model in models.items()}
    ensemble_shift = PriorShift.to(prevalence, ensemble.trained_prevalence)
    for i in ok:
        if i in errors:
            continue
        per_model = {name: outputs[name][i][0] for name in models}
        rows = [
            _row(i, name, models[name].version, p, models[name].label(p), models[name].threshold, shifts[name])
            for name, p in per_model.items()
        ]
        members = {m: np.array([per_model[m]]) for m in ensemble.members}
        p, label = float(ensemble.combine(members)[0]), ensemble.labels(members)[0]
        rows.append(_row(i, ENSEMBLE_NAME, ensemble.version, p, label, ensemble.threshold, ensemble_shift))
        scores.predictions[i] = rows
    if findings is not None and set(findings.feature_models) <= set(models):
        scores.findings = _finding_rows(findings, outputs, list(scores.predictions), prevalence)
    return scores
