"""The ensemble: the members' logits, each relative to its own threshold, averaged (a catalogue entry naming its
members; models/catalogue.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.calibration import logit
from models.prevalence import card_prevalence, mean_logit_rate


@dataclass(frozen=True)
class Ensemble:
    """The members' logits, each relative to its own threshold, averaged.

    probability = sigmoid(mean of the members' logit(p)), threshold = sigmoid(mean of their logit(threshold)),
    so the ensemble says disease exactly when mean(logit p_m − logit t_m) ≥ 0: when every member is on the
    same side of its own threshold, the ensemble is too; it only decides between members that disagree.
    The threshold is derived from the members' (read from their cards), never tuned on its own.
    """

    version: str
    member_thresholds: Mapping[str, float]
    members: tuple[str, ...]
    member_prevalences: Mapping[str, float] | None = None  # each member's trained prevalence (models.prevalence)
    name: str = ""  # its catalogue name

    @classmethod
    def load(cls, weights_dir: Path, name: str = "") -> Ensemble:
        """From `<weights_dir>/ensemble.json` and the members' cards beside it."""
        data = json.loads((weights_dir / "ensemble.json").read_text())
        members = tuple(data["members"])
        cards = {m: json.loads((weights_dir / m / "card.json").read_text()) for m in members}
        return cls(
            version=data["version"],
            member_thresholds={m: float(cards[m]["threshold"]) for m in members},
            members=members,
            member_prevalences={m: card_prevalence(cards[m]) for m in members},
            name=name,
        )

    @property
    def threshold(self) -> float:
        return mean_logit_rate(self.member_thresholds[m] for m in self.members)

    @property
    def trained_prevalence(self) -> float:
        """The prevalence its probabilities reflect: the members' by the same rule as the threshold."""
        return mean_logit_rate((self.member_prevalences or {})[m] for m in self.members)

    def combine(self, member_probabilities: Mapping[str, np.ndarray]) -> np.ndarray:
        z = np.mean([logit(member_probabilities[m]) for m in self.members], axis=0)
        return 1.0 / (1.0 + np.exp(-z))

    def margin(self, member_probabilities: Mapping[str, np.ndarray]) -> np.ndarray:
        """mean(logit p_m − logit t_m): ≥ 0 is disease."""
        return np.mean(
            [logit(member_probabilities[m]) - logit(self.member_thresholds[m]) for m in self.members], axis=0
        )

    def labels(self, member_probabilities: Mapping[str, np.ndarray]) -> list[str]:
        """The ensemble's labels: the members' own when they all agree (what the margin gives, stated so that
        no rounding at a threshold can flip it), else the sign of the margin."""
        votes = np.array([np.atleast_1d(member_probabilities[m]) >= self.member_thresholds[m] for m in self.members])
        disease = np.where(
            votes.all(axis=0) | ~votes.any(axis=0), votes[0], np.atleast_1d(self.margin(member_probabilities)) >= 0
        )
        return ["disease" if d else "healthy" for d in disease]

    def label(self, probability: float) -> str:
        return "disease" if probability >= self.threshold else "healthy"
