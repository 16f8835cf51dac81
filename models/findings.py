"""Per-finding probabilities: small logistic-regression heads on the served models' pooled features.

A second small model, trained by `python -m training.findings` on frozen features: each served model gives
its `pooled_features` output (the input of its final Dense layer) in the same forward pass as its disease
probability; the heads read the features of `feature_models` side by side, standardised, and give one
probability per NIH finding, Platt-calibrated on validation, with a threshold by Youden's J on validation.

  models/weights/findings/heads.npz   mean, scale (n_features,), coef (n_features, k), intercept, platt
                                      slope and intercept, threshold (k,): all findings trained
  models/weights/findings/card.json   version, feature models, findings (in heads.npz order), which are
                                      served (validated) and which hidden, by VALIDATION_RULE; metrics;
                                      "operating_point": how the thresholds were chosen

Every head is computed and stored (`all_findings`, each with "validated"); results show the served ones only
unless RADBATCH_SHOW_UNVALIDATED_FINDINGS asks for the others, which they then label "not validated".

NumPy only: the web app and the tests read it without TensorFlow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.prevalence import PriorShift, card_prevalence, shifted

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
FINDINGS_FOLDER = "findings"
PRESENT, ABSENT = "present", "absent"
VALIDATION_RULE = (
    "served only where the AUC among disease images has a 95% CI lower bound >= 0.60 on validation and on test, "
    "and the AUC over all images is >= 0.70 (native-resolution images)"
)
DEFAULT_OPERATING_POINT = "Youden's J on validation"


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
    # the rate of each finding (heads' order) and of disease in the validation split the heads were calibrated
    # on; None when the feature model's card is not of the same split, and then RADBATCH_PREVALENCE leaves them
    finding_rates: np.ndarray | None = None
    disease_rate: float | None = None
    operating_point: str = DEFAULT_OPERATING_POINT  # how the thresholds were chosen, shown beside each result

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
            operating_point=card.get("operating_point", DEFAULT_OPERATING_POINT),
            **stored,
            **_validation_rates(card, Path(weights_dir)),
        )

    def shift(self, index: int, prevalence: float | None) -> PriorShift | None:
        """Finding `index`'s prior shift when disease has `prevalence` (None: the trained one), assuming the mix
        of findings among diseased images stays: π_f' = π_f × π'/π. None when the rates are unknown."""
        if self.finding_rates is None or self.disease_rate is None:
            return None
        trained = float(self.finding_rates[index])
        target = trained if prevalence is None else trained * prevalence / self.disease_rate
        return PriorShift(trained=trained, target=float(np.clip(target, 1e-4, 1 - 1e-4)))

    def features(self, by_model: Mapping[str, np.ndarray]) -> np.ndarray:
        """The heads' input: each feature model's pooled features side by side, (n, n_features)."""
        return np.concatenate([np.asarray(by_model[m], np.float64) for m in self.feature_models], axis=1)

    def probabilities(self, by_model: Mapping[str, np.ndarray]) -> np.ndarray:
        """Calibrated probabilities (n, k) of every trained finding, from the feature models' pooled features."""
        z = ((self.features(by_model) - self.mean) / self.scale) @ self.coef + self.intercept
        calibrated = self.platt_slope * z + self.platt_intercept
        return (1.0 / (1.0 + np.exp(-calibrated))).astype(np.float32)

    def served_findings(
        self, by_model: Mapping[str, np.ndarray], prevalence: float | None = None
    ) -> list[dict[str, dict]]:
        """Per image, {finding: {...}} for the served (validated) findings only; see `all_findings`."""
        return [
            {name: found for name, found in per.items() if found["validated"]}
            for per in self.all_findings(by_model, prevalence)
        ]

    def all_findings(
        self, by_model: Mapping[str, np.ndarray], prevalence: float | None = None
    ) -> list[dict[str, dict]]:
        """Per image, {finding: {"probability", "label", "threshold", "prevalence", "validated", "operating_point"}}
        for every trained head, at disease prevalence `prevalence` (`shift`); the label is decided before the
        shift, which cannot change it. "prevalence" is the finding's own rate the probability is expressed at
        (None if unknown); "validated" is whether the card serves it."""
        probabilities = self.probabilities(by_model)
        columns = list(enumerate(self.findings))
        shifts = {i: self.shift(i, prevalence) for i, _ in columns}
        marks = {
            name: {"validated": name in self.served, "operating_point": self.operating_point} for _, name in columns
        }
        return [
            {name: _finding(row[i], float(self.threshold[i]), shifts[i]) | marks[name] for i, name in columns}
            for row in probabilities
        ]


def _finding(probability: float, threshold: float, shift: PriorShift | None) -> dict:
    return shifted(probability, PRESENT if probability >= threshold else ABSENT, threshold, shift)


def _validation_rates(card: dict, weights_dir: Path) -> dict:
    """finding_rates and disease_rate from the heads' card and their first feature model's card (the split's
    size and disease rate), if both describe the same split file; else {}."""
    feature_card_path = weights_dir / card["feature_models"][0] / "card.json"
    if not feature_card_path.exists():
        return {}
    feature_card = json.loads(feature_card_path.read_text())
    data = feature_card.get("data", {})
    if data.get("split_file") != card.get("data", {}).get("split_file") or "splits" not in data:
        return {}
    images = card.get("calibration_images") or data["splits"]["validation"]["images"]
    rates = [card["metrics"][f]["positives"]["validation"] / images for f in card["findings"]]
    disease_rate = card.get("calibration_disease_rate") or card_prevalence(feature_card)
    return {"finding_rates": np.array(rates), "disease_rate": disease_rate}
