"""Run the served models, the ensemble, the shadow models and the per-finding heads on a batch of decoded images
and shape the rows. Shadow rows are kept apart (`Scores.shadow`): they go to their own table, never to results.

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


@dataclass
class ModelOutputs:
    ids: list[int]  # the images, in the order of the outputs' first axis
    outputs: dict[str, np.ndarray]


@dataclass
class Scores:
    predictions: dict[int, list[dict]] = field(default_factory=dict)  # by image id: one row per model + ensemble
    findings: dict[int, list[dict]] = field(default_factory=dict)  # by image id: one row per finding head
    outputs: dict[str, ModelOutputs] = field(default_factory=dict)  # by model: every output, if kept for heat maps
    shadow: dict[int, list[dict]] = field(default_factory=dict)  # by image id: one row per shadow model


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


def _model_rows(i: int, models: Mapping[str, LoadedModel], outputs: dict[str, dict], prevalence: float | None):
    rows = []
    for name, model in models.items():
        p = outputs[name][i][0]
        shift = PriorShift.to(prevalence, model.trained_prevalence)
        rows.append(_row(i, name, model.version, p, model.label(p), model.threshold, shift))
    return rows


def _shadow_rows(
    shadow: Mapping[str, LoadedModel], decoded: dict[int, Decoded], ok: list[int], prevalence: float | None
) -> dict[int, list[dict]]:
    """Each shadow model on the batch, timed as the `shadow` stage; a shadow model failing fails no image."""
    found: dict[int, list[dict]] = {}
    with metrics.batch_stage("shadow"):
        for name, model in shadow.items():
            errors: dict[int, str] = {}
            ids, raw = _run(model, ok, decoded, errors)
            probabilities = _probabilities(model, ids, raw)
            for i in ids:
                found.setdefault(i, []).extend(_model_rows(i, {name: model}, {name: probabilities}, prevalence))
    return found


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
    ensemble: Ensemble | None,
    decoded: dict[int, Decoded],
    errors: dict[int, str],
    findings: FindingHeads | None = None,
    keep_outputs: bool = False,
    prevalence: float | None = None,
    shadow: Mapping[str, LoadedModel] | None = None,
    headline: str = "",
) -> Scores:
    """Prediction rows (one per served model plus the ensemble, if one is served) and finding rows by image id; a
    model failure goes into `errors`. Findings need every one of the heads' feature models among `models`. With
    `keep_outputs`, every output of the models that have heat maps is kept for them. Probabilities and thresholds
    of models, ensemble and findings are shifted to `prevalence` (None: each one's trained prevalence). The row of
    `headline` (default: the ensemble's) is marked as the study-level one. `shadow` models' rows go to
    `Scores.shadow`."""
    ok = [i for i in decoded if i not in errors]
    scores = Scores()
    outputs: dict[str, dict] = {}
    headline = headline or (ensemble.name if ensemble else "")
    with metrics.batch_stage("inference"):
        for name, model in models.items():
            ids, found = _run(model, ok, decoded, errors)
            outputs[name] = _probabilities(model, ids, found)
            if keep_outputs and model.has_heatmaps and ids:
                scores.outputs[name] = ModelOutputs(ids, found)
    ensemble_shift = PriorShift.to(prevalence, ensemble.trained_prevalence) if ensemble else None
    for i in ok:
        if i in errors:
            continue
        rows = _model_rows(i, models, outputs, prevalence)
        if ensemble is not None and ensemble_shift is not None:
            members = {m: np.array([outputs[m][i][0]]) for m in ensemble.members}
            p, label = float(ensemble.combine(members)[0]), ensemble.labels(members)[0]
            rows.append(_row(i, ensemble.name, ensemble.version, p, label, ensemble.threshold, ensemble_shift))
        for row in rows:
            row["headline"] = row["model_name"] == headline
        scores.predictions[i] = rows
    if shadow:
        scores.shadow = _shadow_rows(shadow, decoded, list(scores.predictions), prevalence)
    if findings is not None and set(findings.feature_models) <= set(models):
        scores.findings = _finding_rows(findings, outputs, list(scores.predictions), prevalence)
    return scores
