"""Prior shift: re-express calibrated probabilities at a site's expected disease rate (RADBATCH_PREVALENCE).

Each model's probabilities are calibrated (Platt scaling) on the validation split, so they reflect that split's
disease rate, the model's *trained prevalence* (0.64 for the NIH subset). At a site where a fraction π' of the
images shows disease, Bayes' rule with the likelihood ratio unchanged gives

    odds' = odds × [π' / (1 − π')] / [π / (1 − π)]

Thresholds move by the same factor, so every label, and the sensitivity and specificity validated for it, stay
as they were; only the probabilities become post-test probabilities at the site's prevalence.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from models.calibration import logit


def card_prevalence(card: dict) -> float:
    """The disease rate a model's calibrated probabilities reflect: that of the images its calibration was fitted
    on (recorded by training.recalibrate), else its validation split's; an installed model's card states it."""
    if "prevalence" in card:
        return float(card["prevalence"])
    if "prevalence" in (card.get("calibration") or {}):
        return float(card["calibration"]["prevalence"])
    split = card["data"]["splits"]["validation"]
    return split["disease"] / split["images"]


def mean_logit_rate(rates: Iterable[float]) -> float:
    """sigmoid(mean logit): the ensemble's rule, applied to rates (thresholds, prevalences)."""
    return float(1.0 / (1.0 + np.exp(-np.mean(logit(np.asarray(list(rates), dtype=np.float64))))))


@dataclass(frozen=True)
class PriorShift:
    """Moves probabilities from the `trained` prevalence to `target` by the odds ratio; identity when equal."""

    trained: float
    target: float

    @classmethod
    def to(cls, target: float | None, trained: float) -> PriorShift:
        """The shift to `target`, or none (the trained prevalence) when `target` is None."""
        return cls(trained=trained, target=trained if target is None else target)

    @property
    def odds_ratio(self) -> float:
        return (self.target / (1 - self.target)) / (self.trained / (1 - self.trained))

    def __call__(self, probability: np.ndarray | float) -> np.ndarray:
        p = np.asarray(probability, dtype=np.float64)
        if self.target == self.trained:
            return p
        shifted_odds = p * self.odds_ratio
        return shifted_odds / (shifted_odds + (1 - p))


def shifted(probability: float, label: str, threshold: float, shift: PriorShift | None) -> dict:
    """{"probability", "label", "threshold", "prevalence"} at the shift's target prevalence; the label was decided
    before the shift, which moves probability and threshold alike and so cannot change it. With no shift (the
    trained prevalence unknown), the values as they are and "prevalence" None."""
    if shift is None:
        return {"probability": float(probability), "label": label, "threshold": float(threshold), "prevalence": None}
    return {
        "probability": float(shift(probability)),
        "label": label,
        "threshold": float(shift(threshold)),
        "prevalence": shift.target,
    }
