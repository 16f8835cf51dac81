"""Evaluate a job's predictions against the site's own labels: per model, everything from scikit-learn.

The result (JSON and the ROC chart) is cached on the job's label set and recomputed only when the labels or
the job's counts change, so the page and the API stay fast after the first look.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
from flask import g
from sqlalchemy.orm import Session

from db.findings import scored_findings
from db.labels import LabelSet, finding_counts, images_without_label, label_set_for, scored_labels, unused_rows
from db.models import Job, iso
from ingest.labels import store_labels
from models.metrics import binary_metrics
from models.operating_point import confusion_counts, roc_points, threshold_for_sensitivity
from web.audit import audit
from web.extensions import get_catalogue, get_db
from web.results import show_unvalidated_findings
from web.roc_chart import draw_roc

TARGET_SENSITIVITY = 0.9
LISTED = 1000  # at most this many unmatched rows and unlabelled images are listed; the counts are always exact


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: None instead, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _model_metrics(rows: list[tuple[int, float, float, str]], matched: int) -> tuple[dict[str, Any], tuple | None]:
    """Metrics for one model from (label, probability, threshold, version) rows, and its ROC curve if any."""
    if not rows:
        return {"n": 0, "labelled_not_scored": matched}, None
    labels = np.array([row[0] for row in rows])
    probabilities = np.array([row[1] for row in rows], dtype=float)
    threshold = Counter(row[2] for row in rows).most_common(1)[0][0]  # the served one (one unless redeployed)
    versions = sorted({row[3] for row in rows})
    metrics = binary_metrics(labels, probabilities, threshold)
    metrics.update(
        confusion_matrix=confusion_counts(labels, probabilities, threshold),
        threshold_for_90_sensitivity=threshold_for_sensitivity(labels, probabilities, TARGET_SENSITIVITY),
        positives=int(labels.sum()),
        negatives=int(len(labels) - labels.sum()),
        labelled_not_scored=matched - len(rows),
        model_versions=versions,
    )
    curve = None
    if metrics["auc"] is not None:
        fpr, tpr = roc_points(labels, probabilities)
        operating = (1.0 - metrics["specificity"], metrics["sensitivity"])
        curve = (fpr, tpr, metrics["auc"], operating)
    return metrics, curve


def _finding_metrics(session: Session, job: Job) -> dict[str, Any]:
    """Per finding the site labelled and the models predict: the same metrics as a model's, on its own labels."""
    by_finding: dict[str, list[tuple[int, float, float, str]]] = {}
    scored = scored_findings(session, job.id, include_unvalidated=show_unvalidated_findings())
    for finding, label, probability, threshold, version in scored:
        by_finding.setdefault(finding, []).append((label, probability, threshold, version))
    return {name: _model_metrics(rows, len(rows))[0] for name, rows in sorted(by_finding.items())}


def labels_summary(session: Session, job: Job, label_set: LabelSet) -> dict[str, Any]:
    unmatched, unmatched_count = unused_rows(session, job.id, LISTED)
    unlabelled, unlabelled_count = images_without_label(session, job.id, LISTED)
    return {
        "uploaded_at": iso(label_set.uploaded_at),
        "uploaded_by": label_set.uploaded_by,
        "rows": label_set.rows,
        "used": label_set.matched,
        "unused": {"count": unmatched_count, "rows": unmatched, "listed": len(unmatched)},
        "images_without_label": {"count": unlabelled_count, "paths": unlabelled, "listed": len(unlabelled)},
        "findings": finding_counts(session, job.id),
        "ignored_columns": label_set.ignored_columns,
    }


def compute(session: Session, job: Job, label_set: LabelSet) -> tuple[dict[str, Any], str]:
    by_model: dict[str, list[tuple[int, float, float, str]]] = {}
    for model, label, probability, threshold, version in scored_labels(session, job.id):
        by_model.setdefault(model, []).append((label, probability, threshold, version))
    catalogue = get_catalogue()
    order = catalogue.served_names  # the catalogue's served models first, then any that served this job before
    names = [m for m in order if m in by_model] + sorted(set(by_model) - set(order))
    models, curves = {}, {}
    for name in names or list(order):
        models[name], curve = _model_metrics(by_model.get(name, []), label_set.matched)
        if curve is not None:
            curves[name] = curve
    evaluation = {
        "job_id": job.id,
        "job_status": job.status.value,
        "labels": labels_summary(session, job, label_set),
        "models": models,
        "findings": _finding_metrics(session, job),
        "findings_note": "per finding: images with a 0/1 label in that column and a predicted probability",
    }
    return _finite(evaluation), draw_roc(curves, TARGET_SENSITIVITY, {name: catalogue.colour(name) for name in curves})


def _key(job: Job, label_set: LabelSet) -> str:
    shown = "all findings" if show_unvalidated_findings() else "validated findings"
    return f"{iso(label_set.uploaded_at)}|{job.status.value}|{job.total}|{job.done}|{job.failed}|{shown}"


def current_evaluation(session: Session, job: Job) -> tuple[dict[str, Any], str] | None:
    """The job's evaluation and ROC chart (SVG), from the cache when still valid; None without labels.

    A recomputed result is stored on the label set; the caller commits.
    """
    label_set = label_set_for(session, job.id)
    if label_set is None:
        return None
    key = _key(job, label_set)
    if label_set.evaluation_key != key or label_set.evaluation is None or label_set.roc_svg is None:
        label_set.evaluation, label_set.roc_svg = compute(session, job, label_set)
        label_set.evaluation_key = key
    return label_set.evaluation, label_set.roc_svg


def save_labels(job: Job, data: bytes) -> dict[str, Any]:
    """Store a labels CSV for `job`, audit it and commit; what matched and what did not. Raises LabelFileError."""
    db = get_db()
    label_set = store_labels(db, job.id, data, g.user.username)
    audit("labels.upload", job.id, rows=label_set.rows, used=label_set.matched)
    summary = labels_summary(db, job, label_set)
    db.commit()
    return {"job_id": job.id, **summary}
