"""Recalibrate the served disease models on the native-resolution validation images, choosing the method there.

    python -m training.recalibrate --data ../shared/data/nih-cxr14-subset [--weights models/weights]

Candidates, each compared by 5-fold cross-validation on the validation images (out-of-fold log loss and ECE):
- temperature scaling: sigmoid(logit(p) / T), one parameter, never changes the ranking;
- Platt scaling: sigmoid(a logit(p) + b), two parameters, never changes the ranking;
- isotonic regression: a free monotone step function.
The served method is the parametric one with the lower out-of-fold log loss (a proper score). Isotonic is
measured and reported but not served: on ~200 validation images its steps tie many images at one
probability, which lowers the AUC the models are chosen by and moves thresholds onto step edges.
The decision threshold is carried through the new calibration, so no image changes label; the calibration's
own disease rate is recorded, and RADBATCH_PREVALENCE shifts from it (models.prevalence).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold

from models.calibration import PlattScaling, logit
from models.registry import ENSEMBLE_MEMBERS, WEIGHTS_DIR, read_card
from training.data import load_or_create_split, load_records
from training.train import DEFAULT_SPLIT
from training.trust import calibration_summary

log = logging.getLogger("training.recalibrate")

FOLDS = 5
SERVABLE = ("temperature", "platt")


def fit(method: str, raw: np.ndarray, labels: np.ndarray):
    """A callable raw probability -> calibrated probability, and its card entry (None for isotonic)."""
    if method == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=1e-4, y_max=1 - 1e-4).fit(raw, labels)
        return iso.predict, None
    if method == "platt":
        platt = PlattScaling.fit(raw, labels)
        return platt, platt.to_dict()
    regression = LogisticRegression(C=1e6, fit_intercept=False, max_iter=1000)
    regression.fit(logit(raw).reshape(-1, 1), labels)
    temperature = PlattScaling(slope=float(regression.coef_[0, 0]), intercept=0.0)
    return temperature, temperature.to_dict() | {"method": "temperature", "temperature": 1.0 / temperature.slope}


def cross_validated(raw: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict[str, dict]:
    """Out-of-fold log loss, ECE and Brier per method."""
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
    found = {}
    for method in ("temperature", "platt", "isotonic"):
        out = np.zeros(len(raw))
        for fit_idx, held_idx in folds.split(raw, labels):
            calibrate, _ = fit(method, raw[fit_idx], labels[fit_idx])
            out[held_idx] = calibrate(raw[held_idx])
        summary = calibration_summary(labels, out)
        found[method] = {
            "log_loss": float(log_loss(labels, np.clip(out, 1e-6, 1 - 1e-6))),
            "ece": summary["ece"],
            "brier": summary["brier"],
        }
    return found


def carried_threshold(old: PlattScaling, new: PlattScaling, threshold: float) -> float:
    """The new calibrated value of the raw probability the old threshold stood for."""
    raw_logit = (logit(np.array([threshold]))[0] - old.intercept) / old.slope
    return float(1.0 / (1.0 + np.exp(-(new.slope * raw_logit + new.intercept))))


def recalibrate(data_dir: Path, split_file: Path = DEFAULT_SPLIT, weights_dir: Path = WEIGHTS_DIR) -> dict:
    from training.source_probe import DISEASE_ONLY, model_features

    records = load_records(data_dir, exclude_upsampled=True)
    assignment = load_or_create_split(split_file, load_records(data_dir))
    validation = [r for r in records if assignment[r.image] == "validation"]
    labels = np.array([r.label for r in validation])
    chosen = {}
    for name in ENSEMBLE_MEMBERS:
        disease_logit = model_features(data_dir, validation, name, weights_dir)[name + DISEASE_ONLY][:, 0]
        raw = 1.0 / (1.0 + np.exp(-disease_logit))
        compared = cross_validated(raw, labels)
        method = min(SERVABLE, key=lambda m: compared[m]["log_loss"])
        calibrate, entry = fit(method, raw, labels)
        card_path = Path(weights_dir) / name / "card.json"
        card = read_card(name, weights_dir)
        old = PlattScaling.from_dict(card.get("calibration"))
        card["threshold"] = carried_threshold(old, calibrate, float(card["threshold"]))
        card["calibration"] = entry | {
            "fitted_on": f"native-resolution validation images (n={len(labels)})",
            "prevalence": float(labels.mean()),
            "cross_validated": compared,
            "chosen_by": "lower 5-fold out-of-fold log loss of temperature and Platt; isotonic not served",
            "previous": old.to_dict(),
        }
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        chosen[name] = {"method": method, "cross_validated": compared, "threshold": card["threshold"]}
        log.info("%s: %s (%s)", name, method, json.dumps(compared))
    return chosen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="NIH-layout folder (images/ + Data_Entry_2017.csv)")
    parser.add_argument("--split-file", type=Path, default=DEFAULT_SPLIT)
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(json.dumps(recalibrate(args.data, args.split_file, args.weights), indent=2))


if __name__ == "__main__":
    main()
