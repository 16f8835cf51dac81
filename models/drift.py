"""Drift statistics: how far what the models see and say today is from what they saw and said on the validation split.

The reference (`models/weights/drift_reference.json`, written by `python -m training.drift_reference`) keeps, for
each continuous figure, the validation images' values (the pixel mean and standard deviation after
preprocessing, and each model's calibrated probability of disease), and for each rate figure (each model's
positive rate, the ensemble members' disagreement rate) the validation rate.

A figure is compared with two statistics, and it drifts only when both say so, on at least MIN_IMAGES (20) images:

* PSI, the population stability index, over the reference's deciles (rates: over yes/no). It measures how much
  the distribution moved, whatever the sample size: below 0.1 stable, 0.1 to 0.2 worth watching, above
  PSI_THRESHOLD (0.2) a real shift. On few images it is noisy (a sample of n images from the reference itself
  scores roughly 9/n or more on ten bins), so a small batch can exceed 0.2 by chance.
* A p-value: the two-sample Kolmogorov-Smirnov test against the reference's values (rates: an exact binomial
  test against the reference's rate). It says whether a shift that size could be chance at this sample size;
  below P_THRESHOLD (0.01) it is not. On many images the binomial test flags rate changes too small to matter
  (52% positive instead of 50% over 10,000 images), which PSI ignores. The KS test's power is bounded by the
  reference's size as well as the day's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REFERENCE_FILE = Path(__file__).resolve().parent / "weights" / "drift_reference.json"
PSI_THRESHOLD = 0.2
P_THRESHOLD = 0.01
MIN_IMAGES = 20  # fewer images say nothing either way: a couple of odd ones make any test fire
SMOOTHING = 0.5  # added to every bin's count (Jeffreys), so an empty bin of a small sample keeps PSI finite
BINS = 10

EXPLANATIONS = {
    "pixel_mean": "mean brightness of the model input (0 black, 1 white): exposure, windowing, inverted images",
    "pixel_std": "contrast of the model input: blur, flat windowing, burnt-out or cropped images",
    "probability": "the model's calibrated probability of disease: a changed population or an input the model "
    "was not trained for",
    "positive": "the share of images the model calls disease at its threshold",
    "disagreement": "the share of images on which the ensemble's members give different labels",
}


class ReferenceMissingError(FileNotFoundError):
    pass


def figure_kind(figure: str) -> str:
    """`probability:cnn` -> `probability`; `pixel_mean` -> `pixel_mean`."""
    return figure.split(":", 1)[0]


def decile_edges(values: Sequence[float]) -> list[float]:
    """The nine inner edges of ten equally filled bins of `values`."""
    return [float(x) for x in np.quantile(np.asarray(values, dtype=float), np.linspace(0, 1, BINS + 1)[1:-1])]


def counts(values: Sequence[float], edges: Sequence[float]) -> np.ndarray:
    """How many `values` fall in each bin (len(edges) + 1 bins, the outer ones open)."""
    found = np.searchsorted(edges, np.asarray(values, dtype=float), side="right")
    return np.bincount(found, minlength=len(edges) + 1)


def psi(expected: np.ndarray, observed: np.ndarray) -> float:
    """Σ (o − e) · ln(o / e) over the bins, o and e the observed and expected shares of the counts given, each
    count plus SMOOTHING."""
    e, o = (np.asarray(c, dtype=float) + SMOOTHING for c in (expected, observed))
    e, o = e / e.sum(), o / o.sum()
    return float(np.sum((o - e) * np.log(o / e)))


@dataclass(frozen=True)
class Comparison:
    figure: str
    n: int  # images compared
    value: float  # the observed mean (continuous figures) or rate
    reference: float  # the same on the validation split
    psi: float
    statistic: str  # "ks" or "binomial"
    p_value: float
    drift: bool

    def to_dict(self) -> dict:
        found = asdict(self)
        return found | {"psi": round(self.psi, 4), "p_value": float(f"{self.p_value:.3g}")}


def compare_values(figure: str, observed: Sequence[float], reference: dict) -> Comparison:
    """A continuous figure against the reference's values (`{"values": [...], "edges": [...]}`)."""
    from scipy.stats import ks_2samp

    expected_values = np.asarray(reference["values"], dtype=float)
    values = np.asarray(observed, dtype=float)
    score = psi(counts(expected_values, reference["edges"]), counts(values, reference["edges"]))
    p_value = float(ks_2samp(expected_values, values).pvalue)
    return Comparison(
        figure,
        len(values),
        float(values.mean()),
        float(expected_values.mean()),
        score,
        "ks",
        p_value,
        _drifts(score, p_value, len(values)),
    )


def compare_rate(figure: str, hits: int, n: int, reference_rate: float, reference_n: int) -> Comparison:
    """A rate (hits of n) against the reference's rate (on reference_n images)."""
    from scipy.stats import binomtest

    rate = hits / n
    expected = np.array([1 - reference_rate, reference_rate]) * reference_n
    score = psi(expected, np.array([n - hits, hits]))
    p_value = float(binomtest(hits, n, min(max(reference_rate, 1e-9), 1 - 1e-9)).pvalue)
    return Comparison(figure, n, rate, reference_rate, score, "binomial", p_value, _drifts(score, p_value, n))


def _drifts(score: float, p_value: float, n: int) -> bool:
    return n >= MIN_IMAGES and score > PSI_THRESHOLD and p_value < P_THRESHOLD


def compare(reference: dict, values: dict[str, list[float]], rates: dict[str, tuple[int, int]]) -> list[Comparison]:
    """Every figure the reference knows that has at least one observation: continuous figures from `values`
    (figure -> observations), rate figures from `rates` (figure -> (hits, n))."""
    found = [
        compare_values(figure, values[figure], stored)
        for figure, stored in reference["values"].items()
        if len(values.get(figure, ())) > 0
    ]
    found += [
        compare_rate(figure, *rates[figure], rate, reference["n"])
        for figure, rate in reference["rates"].items()
        if rates.get(figure, (0, 0))[1] > 0
    ]
    return found


def thresholds() -> dict:
    """The rule, as the API and the page state it next to the numbers."""
    return {
        "psi": PSI_THRESHOLD,
        "p_value": P_THRESHOLD,
        "min_images": MIN_IMAGES,
        "rule": f"a figure drifts when PSI > {PSI_THRESHOLD} (the distribution moved) and p < {P_THRESHOLD} "
        f"(the move is not chance at this sample size), on at least {MIN_IMAGES} images",
        "psi_reading": "PSI below 0.1: stable; 0.1 to 0.2: watch; above 0.2: shifted",
    }


def load_reference(path: Path = REFERENCE_FILE) -> dict:
    if not path.exists():
        raise ReferenceMissingError(f"no drift reference at {path}: run python -m training.drift_reference")
    return json.loads(path.read_text())


def save_reference(reference: dict, path: Path = REFERENCE_FILE) -> None:
    path.write_text(json.dumps(reference, indent=1, sort_keys=True) + "\n")


def input_statistics(model_input: np.ndarray) -> tuple[float, float]:
    """(mean, standard deviation) of a preprocessed model input's gray plane, (size, size, channels) in [0, 1]."""
    plane = model_input[..., 0]
    return float(plane.mean()), float(plane.std())
