"""Binary classification metrics shared by training and the web app: numpy and scikit-learn only, no TensorFlow."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)


def bootstrap_auc_ci(labels: np.ndarray, scores: np.ndarray, rounds: int = 1000, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(rounds):
        idx = rng.integers(0, len(labels), len(labels))
        if labels[idx].min() != labels[idx].max():
            aucs.append(roc_auc_score(labels[idx], scores[idx]))
    if not aucs:
        return [float("nan"), float("nan")]
    low, high = np.percentile(aucs, [2.5, 97.5])
    return [float(low), float(high)]


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
