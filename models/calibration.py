"""Probability calibration (Platt scaling on the logit) and threshold choice, fitted on validation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_curve

_EPS = 1e-6


def logit(probability: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probability, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class PlattScaling:
    """p_calibrated = sigmoid(slope * logit(p) + intercept); slope 1, intercept 0 is the identity."""

    slope: float = 1.0
    intercept: float = 0.0

    def __call__(self, probability: np.ndarray) -> np.ndarray:
        z = self.slope * logit(probability) + self.intercept
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    @classmethod
    def fit(cls, probability: np.ndarray, labels: np.ndarray) -> PlattScaling:
        regression = LogisticRegression(C=1e6, max_iter=1000)
        regression.fit(logit(probability).reshape(-1, 1), np.asarray(labels))
        slope = float(regression.coef_[0, 0])
        if slope <= 0:  # an untrained model: a negative slope would invert its ranking, so don't calibrate
            return cls()
        return cls(slope=slope, intercept=float(regression.intercept_[0]))

    def to_dict(self) -> dict:
        return {"method": "platt", "slope": self.slope, "intercept": self.intercept}

    @classmethod
    def from_dict(cls, data: dict | None) -> PlattScaling:
        data = data or {}
        return cls(slope=float(data.get("slope", 1.0)), intercept=float(data.get("intercept", 0.0)))


def youden_threshold(probability: np.ndarray, labels: np.ndarray) -> float:
    """The threshold maximising Youden's J = sensitivity + specificity - 1."""
    fpr, tpr, thresholds = roc_curve(labels, probability)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))
