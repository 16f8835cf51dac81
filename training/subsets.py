"""Metrics on the subsets that tell shortcuts from skill, and the per-image predictions file.

When the folder has a sources.csv, `evaluate` reports, besides all images, the native-resolution images
(`upsampled_from_64px == 0`), the images upsampled from 64 px, and each source (the public copy an image came
from): a model can score well by recognising where an image came from instead of what it shows, so AUC within
one source that holds both classes is the honest check.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from models.metrics import bootstrap_auc_ci
from training.data import Record

ALL, NATIVE, UPSAMPLED = "all", "native resolution", "upsampled from 64 px"
SOURCE_PREFIX = "source "
AGE_BANDS = (("age < 40", 0, 40), ("age 40-60", 40, 61), ("age > 60", 61, 200))  # years, [low, high)
MIN_PER_CLASS = 5  # fewer healthy or disease images than this in a subset: no AUC (it would say nothing)


def subset_masks(records: list[Record]) -> dict[str, np.ndarray]:
    """{subset name: boolean mask over records}; only "all" when no record has a source."""
    masks = {ALL: np.ones(len(records), bool)} | patient_masks(records)
    if not any(r.source for r in records):
        return masks
    masks[NATIVE] = np.array([not r.upsampled for r in records])
    masks[UPSAMPLED] = np.array([r.upsampled for r in records])
    for source in sorted({r.source for r in records if r.source}):
        masks[SOURCE_PREFIX + source] = np.array([r.source == source for r in records])
    return masks


def patient_masks(records: list[Record]) -> dict[str, np.ndarray]:
    """By sex, age band and view, for the values the records carry (NIH's own columns)."""
    masks = {}
    for sex, name in (("F", "women"), ("M", "men")):
        if any(r.sex == sex for r in records):
            masks[name] = np.array([r.sex == sex for r in records])
    for band, low, high in AGE_BANDS:
        mask = np.array([r.age is not None and low <= r.age < high for r in records])
        if mask.any():
            masks[band] = mask
    for view in ("PA", "AP"):
        if any(r.view == view for r in records):
            masks[f"view {view}"] = np.array([r.view == view for r in records])
    return masks


def auc_summary(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """n, disease count, AUC and its 95% bootstrap CI (None unless both classes have MIN_PER_CLASS images)."""
    disease = int(labels.sum())
    both = min(disease, len(labels) - disease) >= MIN_PER_CLASS
    return {
        "n": int(len(labels)),
        "disease": disease,
        "auc": float(roc_auc_score(labels, probabilities)) if both else None,
        "auc_ci95": bootstrap_auc_ci(labels, probabilities) if both else None,
    }


def subset_metrics(records: list[Record], labels: np.ndarray, probabilities: dict[str, np.ndarray]) -> dict:
    """{model: {subset: auc_summary}} for every model in `probabilities`."""
    masks = subset_masks(records)
    return {
        name: {subset: auc_summary(labels[mask], p[mask]) for subset, mask in masks.items()}
        for name, p in probabilities.items()
    }


def _auc_cell(m: dict) -> str:
    return "n/a" if m["auc"] is None else f"{m['auc']:.3f} [{m['auc_ci95'][0]:.3f}, {m['auc_ci95'][1]:.3f}]"


def subset_table(per_model: dict[str, dict[str, dict]]) -> str:
    """A markdown table: one row per subset, AUC [95% CI] per model."""
    names = list(per_model)
    subsets = list(next(iter(per_model.values()))) if per_model else []
    lines = ["| subset | n | disease | " + " | ".join(names) + " |", "|---" * (len(names) + 3) + "|"]
    for subset in subsets:
        first = per_model[names[0]][subset]
        cells = [_auc_cell(per_model[name][subset]) for name in names]
        lines.append(f"| {subset} | {first['n']} | {first['disease']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_predictions(path: Path, records: list[Record], probabilities: dict[str, np.ndarray]) -> None:
    """One row per image: image, patient, source, upsampled, label, then one column per model."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(probabilities)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "patient", "source", "upsampled", "label", *names])
        for i, r in enumerate(records):
            scores = [f"{probabilities[name][i]:.9g}" for name in names]
            writer.writerow([r.image, r.patient, r.source, int(r.upsampled), r.label, *scores])
