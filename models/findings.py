"""Per-finding probabilities: small logistic-regression heads on the served models' pooled features.

A second small model, trained by `python -m training.findings` on frozen features: each served model gives
its `pooled_features` output (the input of its final Dense layer) in the same forward pass as its disease
probability; the heads read the features of `feature_models` side by side, standardised, and give one
probability per NIH finding, Platt-calibrated on validation, with a threshold by Youden's J on validation.

  models/weights/findings/heads.npz   mean, scale (n_features,), coef (n_features, k), intercept, platt
                                      slope and intercept, threshold (k,): all findings trained
  models/weights/findings/card.json   version, feature models, findings (in heads.npz order), which are
                                      served and which hidden (test AUC CI lower bound under 0.60), metrics

NumPy only: the web app and the tests read it without TensorFlow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
FINDINGS_FOLDER = "findings"
PRESENT, ABSENT = "present", "absent"


@dataclass(frozen=True)
class FindingHeads:
    version: str
    feature_models: tuple[str, ...]
    findings: tuple[str, ...]  # every trained head, in column order
    served: tuple[str, ...]  # the ones results show; the others are hidden by the card's rule
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    platt_slope: np.ndarray
    platt_intercept: np.ndarray
    threshold: np.ndarray

    @classmethod
    def load(cls, weights_dir: Path = WEIGHTS_DIR) -> FindingHeads | None:
        """The trained heads, or None when `training.findings` has not written them."""
        folder = Path(weights_dir) / FINDINGS_FOLDER
        if not (folder / "card.json").exists() or not (folder / "heads.npz").exists():
            return None
        card = json.loads((folder / "card.json").read_text())
        with np.load(folder / "heads.npz") as arrays:
            stored = {key: arrays[key].astype(np.float64) for key in arrays.files}
        return cls(
            version=card["version"],
            feature_models=tuple(card["feature_models"]),
            findings=tuple(card["findings"]),
            served=tuple(card["served"]),
            **stored,
        )

    def features(self, by_model: Mapping[str, np.ndarray]) -> np.ndarray:
        """The heads' input: each feature model's pooled features side by side, (n, n_features)."""
        return np.concatenate([np.asarray(by_model[m], np.float64) for m in self.feature_models], axis=1)

    def probabilities(self, by_model: Mapping[str, np.ndarray]) -> np.ndarray:
        """Calibrated probabilities (n, k) of every trained finding, from the feature models' pooled features."""
        z = ((self.features(by_model) - self.mean) / self.scale) @ self.coef + self.intercept
        calibrated = self.platt_slope * z + self.platt_intercept
        return (1.0 / (1.0 + np.exp(-calibrated))).astype(np.float32)

    def served_findings(self, by_model: Mapping[str, np.ndarray]) -> list[dict[str, dict]]:
        """Per image, {finding: {"probability", "label", "threshold"}} for the served findings."""
        probabilities = self.probabilities(by_model)
        columns = [(name, self.findings.index(name)) for name in self.served]
        return [
            {
                name: {
                    "probability": float(row[i]),
                    "label": PRESENT if row[i] >= self.threshold[i] else ABSENT,
                    "threshold": float(self.threshold[i]),
                }
                for name, i in columns
            }
            for row in probabilities
        ]
