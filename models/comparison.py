"""A shadow model against the served reference on the same images: agreement, and on labelled images both AUCs with
paired-bootstrap 95% CIs and the CI of their difference (the same resampled images for both models)."""

from __future__ import annotations

import math

import numpy as np

from models.metrics import bootstrap_ci, rank_auc

BOOTSTRAP_ROUNDS = 1000


def agreement(labels: list[str], reference_labels: list[str], p: np.ndarray, reference_p: np.ndarray) -> dict:
    """The share of images given the same label, and the mean and largest |difference| of probability."""
    n = len(labels)
    if n == 0:
        return {"n": 0, "same_label": None, "mean_abs_difference": None, "max_abs_difference": None}
    same = sum(a == b for a, b in zip(labels, reference_labels))
    difference = np.abs(np.asarray(p, dtype=float) - np.asarray(reference_p, dtype=float))
    return {
        "n": n,
        "same_label": same / n,
        "mean_abs_difference": float(difference.mean()),
        "max_abs_difference": float(difference.max()),
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def paired_auc(
    truth: np.ndarray, p: np.ndarray, reference_p: np.ndarray, rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0
) -> dict:
    """AUC of each model and of the difference (shadow minus reference), each with a 95% percentile CI from the same
    bootstrap resamples of the images; None where the labels hold one class only."""
    truth, p, reference_p = np.asarray(truth), np.asarray(p, dtype=float), np.asarray(reference_p, dtype=float)
    result = {"n": int(len(truth)), "positives": int(truth.sum()) if len(truth) else 0}
    if len(truth) == 0 or truth.min() == truth.max():
        return result | {"auc": None, "reference_auc": None, "difference": None, "note": "needs both classes labelled"}
    auc, reference_auc = rank_auc(truth, p), rank_auc(truth, reference_p)
    draws: list[tuple[float, float]] = []

    def pair(idx: np.ndarray) -> float:
        draws.append((rank_auc(truth[idx], p[idx]), rank_auc(truth[idx], reference_p[idx])))
        return draws[-1][0] - draws[-1][1]

    difference_ci = bootstrap_ci(truth, pair, rounds, seed)
    mine, theirs = (np.percentile([d[k] for d in draws], [2.5, 97.5]).tolist() for k in (0, 1))
    return result | {
        "auc": _finite(auc),
        "auc_ci95": mine,
        "reference_auc": _finite(reference_auc),
        "reference_auc_ci95": theirs,
        "difference": _finite(auc - reference_auc),
        "difference_ci95": difference_ci,
        "bootstrap_rounds": rounds,
    }
