"""Where a binary classifier operates: the confusion matrix at a threshold, and the threshold for a sensitivity.

numpy and scikit-learn only (no TensorFlow); `models.metrics` has the threshold-free and summary metrics.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, roc_curve


def confusion_counts(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, int]:
    """{"tn", "fp", "fn", "tp"} when `probability >= threshold` means disease (label 1)."""
    predicted = (probabilities >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    return {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}


def threshold_for_sensitivity(labels: np.ndarray, probabilities: np.ndarray, target: float) -> dict | None:
    """The highest threshold whose sensitivity on these labels is at least `target`, with what it gives there.

    None without both classes. A threshold above every probability (sensitivity 0) is never returned.
    """
    if labels.min() == labels.max():
        return None
    fpr, tpr, thresholds = roc_curve(labels, probabilities, drop_intermediate=False)
    reaching = np.flatnonzero((tpr >= target) & np.isfinite(thresholds))
    if reaching.size == 0:
        return None
    best = reaching[0]  # roc_curve lists thresholds from high to low, so the first is the highest
    return {
        "target_sensitivity": float(target),
        "threshold": float(thresholds[best]),
        "sensitivity": float(tpr[best]),
        "specificity": float(1.0 - fpr[best]),
    }


def roc_points(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) along the ROC curve."""
    fpr, tpr, _ = roc_curve(labels, probabilities)
    return fpr, tpr


def threshold_for_specificity(labels: np.ndarray, probabilities: np.ndarray, target: float) -> dict | None:
    """The lowest threshold whose specificity on these labels is at least `target`, with what it gives there.

    None without both classes. Of the thresholds reaching the target, the lowest has the highest sensitivity.
    """
    if labels.min() == labels.max():
        return None
    fpr, tpr, thresholds = roc_curve(labels, probabilities, drop_intermediate=False)
    reaching = np.flatnonzero((1.0 - fpr >= target) & np.isfinite(thresholds))
    if reaching.size == 0:
        return None
    best = reaching[-1]  # thresholds fall along the curve, so the last one reaching the target is the lowest
    return {
        "target_specificity": float(target),
        "threshold": float(min(thresholds[best], 1.0)),
        "sensitivity": float(tpr[best]),
        "specificity": float(1.0 - fpr[best]),
    }
