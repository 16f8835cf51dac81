"""Run the served models, the ensemble and the per-finding heads on a batch of decoded images and shape the rows.

The findings heads read each feature model's `pooled_features` from the same forward pass as its disease
probability: no second run of any model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded

from models.findings import FindingHeads
from models.prevalence import PriorShift
from models.registry import Ensemble, LoadedModel
from worker import metrics
from worker.reading import Decoded

log = logging.getLogger(__name__)

ENSEMBLE_NAME = "ensemble"


@dataclass
class Scores:
    predictions: dict[int, list[dict]] = field(default_factory=dict)  # by image id: one row per model + ensemble
    findings: dict[int, list[dict]] = field(default_factory=dict)  # by image id: one row per served finding


def _probabilities(model: LoadedModel, ids: list[int], decoded: dict[int, Decoded], errors: dict[int, str]) -> dict:
    """(calibrated probability, pooled features) by image id; if the batch fails, retry one by one to isolate
    the culprit."""
    if not ids:
        return {}
    try:
        probabilities, features = model.predict_with_features(np.stack([decoded[i].inputs[model.name] for i in ids]))
        features = [None] * len(ids) if features is None else features
        return {i: (float(p), f) for i, p, f in zip(ids, probabilities, features)}
    except SoftTimeLimitExceeded:
        raise  # out of time: the task retries the images one by one
    except Exception:  # noqa: BLE001 - a model failure must not lose the whole batch
        log.exception("model %s failed on a batch of %d; retrying image by image", model.name, len(ids))
    results = {}
    for i in ids:
        try:
            probability, features = model.predict_with_features(decoded[i].inputs[model.name][None])
            results[i] = (float(probability[0]), None if features is None else features[0])
        except SoftTimeLimitExceeded:
            raise
        except Exception as error:  # noqa: BLE001
            log.exception("model %s failed on image %d", model.name, i)
            errors[i] = f"model {model.name} failed: {type(error).__name__}: {error}"
    return results


def _row(
    image_id: int, name: str, version: str, probability: float, label: str, threshold: float, shift: PriorShift
) -> dict:
    """A prediction row at the shift's target prevalence; the label was decided before the shift, which moves
    probability and threshold alike and so cannot change it."""
    return {
        "image_id": image_id,
        "model_name": name,
        "model_version": version,
        "probability": float(shift(probability)),
        "label": label,
        "threshold": float(shift(threshold)),
        "prevalence": shift.target,
    }


def _finding_rows(
    heads: FindingHeads, outputs: dict[str, dict], ids: list[int], prevalence: float | None
) -> dict[int, list[dict]]:
    if not ids:
        return {}
    features = {m: np.stack([outputs[m][i][1] for i in ids]) for m in heads.feature_models}
    return {
        i: [{"image_id": i, "finding": name, "model_version": heads.version, **found} for name, found in per.items()]
        for i, per in zip(ids, heads.served_findings(features, prevalence))
    }


def score(
    models: Mapping[str, LoadedModel],
    ensemble: Ensemble,
    decoded: dict[int, Decoded],
    errors: dict[int, str],
    findings: FindingHeads | None = None,
    prevalence: float | None = None,
) -> Scores:
    """Prediction rows (one per model plus the ensemble) and finding rows by image id; a model failure goes
    into `errors`. Findings need every one of the heads' feature models among `models`. Model and ensemble
    probabilities and thresholds are shifted to `prevalence` (None: each model's trained prevalence)."""
    ok = [i for i in decoded if i not in errors]
    with metrics.batch_stage("inference"):
        outputs = {name: _probabilities(model, ok, decoded, errors) for name, model in models.items()}
    scores = Scores()
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
