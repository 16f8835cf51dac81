"""Binary classification metrics shared by training and the web app: numpy and scikit-learn only, no TensorFlow."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)


def bootstrap_ci(
    labels: np.ndarray, statistic: Callable[[np.ndarray], float], rounds: int = 1000, seed: int = 0
) -> list[float] | None:
    """95% percentile CI of `statistic(indices)` over resamples of the images that hold both classes; None when
    none does."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        idx = rng.integers(0, len(labels), len(labels))
        if labels[idx].min() != labels[idx].max():
            values.append(statistic(idx))
    if not values:
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return [float(low), float(high)]


def rank_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney U statistic (ties count half): equal to roc_auc_score, without its input
    checks, which cost more than the statistic in a bootstrap of thousands of resamples."""
    positive = labels == 1
    n_positive = int(positive.sum())
    n_negative = len(labels) - n_positive
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))


def bootstrap_auc_ci(labels: np.ndarray, scores: np.ndarray, rounds: int = 1000, seed: int = 0) -> list[float]:
    labels, scores = np.asarray(labels), np.asarray(scores)
    ci = bootstrap_ci(labels, lambda idx: rank_auc(labels[idx], scores[idx]), rounds, seed)
    return ci or [float("nan"), float("nan")]


def binary_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict:
    predicted = (probabilities >= threshold).astype(int)
    both_classes = labels.min() != labels.max()
    return {
        "n": int(len(labels)),
        "auc": float(roc_auc_score(labels, probabilities)) if both_classes else None,
        "auc_ci95": bootstrap_auc_ci(labels, probabilities) if both_classes else None,
        "sensitivity": float(recall_score(labels, predicted, pos_label=1, zero_division=0)),
        "specificity": float(recall_score(labels, predicted, pos_label=0, zero_division=0)),
        "ppv": float(precision_score(labels, predicted, pos_label=1, zero_division=0)),
        "npv": float(precision_score(labels, predicted, pos_label=0, zero_division=0)),
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "accuracy": float(accuracy_score(labels, predicted)),
        "threshold": float(threshold),
        "brier": float(brier_score_loss(labels, probabilities)),
    }
