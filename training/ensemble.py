"""Write the ensemble's settings (version, members, the derived threshold) and its validation AUC.

    python -m training.ensemble --data ../shared/data/nih-cxr14-subset

The ensemble averages the calibrated members' logits, each relative to its own threshold (models.registry's
`Ensemble`): probability sigmoid(mean logit p_m), threshold sigmoid(mean logit t_m). The threshold is
derived from the members' (tuned on validation by Youden's J), not tuned again, so that the ensemble never
overrules two members that agree; `Ensemble.load` derives it from the member cards, and the numbers written
here are a record of them.
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import datetime, timezone
from pathlib import Path

from sklearn.metrics import roc_auc_score

from models.registry import ENSEMBLE_MEMBERS, WEIGHTS_DIR, Ensemble, load_model
from training.data import load_arrays, load_or_create_split, load_records
from training.train import CACHE_DIR, DEFAULT_SPLIT

log = logging.getLogger("training.ensemble")


def fit_ensemble(data_dir: Path, split_file: Path = DEFAULT_SPLIT, weights_dir: Path = WEIGHTS_DIR) -> dict:
    records = load_records(data_dir)
    assignment = load_or_create_split(split_file, records)
    validation = [r for r in records if assignment[r.image] == "validation"]
    probabilities, versions, thresholds = {}, {}, {}
    for name in ENSEMBLE_MEMBERS:
        model = load_model(name, weights_dir)
        x, y = load_arrays(data_dir, validation, model.input_size, model.channels, CACHE_DIR)
        probabilities[name] = model.predict(x)
        versions[name], thresholds[name] = model.version, model.threshold
    ensemble = Ensemble(version="", member_thresholds=thresholds, members=ENSEMBLE_MEMBERS)
    combined = ensemble.combine(probabilities)
    settings = {
        "version": "ensemble-logit-" + "+".join(versions[m].split("-")[-1] for m in ENSEMBLE_MEMBERS),
        "members": list(ENSEMBLE_MEMBERS),
        "member_versions": versions,
        "combine": "sigmoid(mean of the members' logit(calibrated probability))",
        "threshold": ensemble.threshold,
        "threshold_rule": "sigmoid(mean of the members' logit(threshold)): derived, never overrules agreeing members",
        "member_thresholds": thresholds,
        "validation": {"auc": float(roc_auc_score(y, combined)), "n": int(len(y))},
        "fitted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (Path(weights_dir) / "ensemble.json").write_text(json.dumps(settings, indent=2) + "\n")
    return settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--split-file", type=Path, default=DEFAULT_SPLIT)
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(fit_ensemble(args.data, args.split_file, args.weights), indent=2))


if __name__ == "__main__":
    main()
