"""Decide which finding heads are served, and set each one's threshold for a stated operating point.

    python -m training.validate_findings --data ../shared/data/nih-cxr14-subset [--weights models/weights]
        [--specificity 0.90]

On the native-resolution images of the validation and the test split of the committed patient-wise split:
a finding is served only where its AUC among disease images has a 95% bootstrap CI lower bound of at least
MIN_AMONG_DISEASE_LOWER on BOTH splits and its AUC over all images is at least MIN_AUC_ALL on both
(models.findings.VALIDATION_RULE). Every threshold is the lowest whose specificity on validation reaches the
target (the operating point, stated in the card and beside every result). Rewrites the findings card (served,
hidden, per-split AUCs with CIs, operating points) and the thresholds in heads.npz; the heads themselves and
their calibration are unchanged. The test split is only measured, never used to choose a threshold.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from models.findings import FINDINGS_FOLDER, VALIDATION_RULE, FindingHeads
from models.operating_point import threshold_for_specificity
from models.registry import WEIGHTS_DIR
from training.data import Record, load_or_create_split, load_records
from training.findings_card import write_findings_card
from training.train import DEFAULT_SPLIT
from training.trust import finding_metrics

log = logging.getLogger("training.validate_findings")

MIN_AMONG_DISEASE_LOWER = 0.60
MIN_AUC_ALL = 0.70
SPECIFICITY = 0.90


def passes(metrics: dict) -> bool:
    """The rule on one split's finding_metrics entry."""
    among, overall = metrics["among_disease"], metrics["all"]
    return (
        among["auc_ci95"] is not None
        and among["auc_ci95"][0] >= MIN_AMONG_DISEASE_LOWER
        and overall["auc"] is not None
        and overall["auc"] >= MIN_AUC_ALL
    )


def decide(per_split: dict[str, dict]) -> list[str]:
    """The findings that pass on validation and on test, in the validation metrics' order."""
    return [f for f in per_split["validation"] if all(passes(per_split[s][f]) for s in ("validation", "test"))]


def operating_points(records: list[Record], findings: list[str], probabilities: np.ndarray, target: float) -> dict:
    points = {}
    for i, finding in enumerate(findings):
        y = np.array([r.has_finding(finding) for r in records], int)
        points[finding] = threshold_for_specificity(y, probabilities[:, i], target)
    return points


def validate_findings(
    data_dir: Path, split_file: Path = DEFAULT_SPLIT, weights_dir: Path = WEIGHTS_DIR, specificity: float = SPECIFICITY
) -> dict:
    from training.findings import extract_features

    heads = FindingHeads.load(weights_dir)
    if heads is None:
        raise FileNotFoundError(f"no finding heads in {Path(weights_dir) / FINDINGS_FOLDER}")
    records = load_records(data_dir, exclude_upsampled=True)
    assignment = load_or_create_split(split_file, load_records(data_dir))
    splits = {s: [r for r in records if assignment[r.image] == s] for s in ("validation", "test")}
    findings = list(heads.findings)
    probabilities = {
        s: heads.probabilities(extract_features(data_dir, chosen, weights_dir)) for s, chosen in splits.items()
    }
    per_split = {s: finding_metrics(splits[s], findings, probabilities[s]) for s in splits}
    served = decide(per_split)
    points = operating_points(splits["validation"], findings, probabilities["validation"], specificity)

    folder = Path(weights_dir) / FINDINGS_FOLDER
    with np.load(folder / "heads.npz") as stored:
        arrays = {key: stored[key] for key in stored.files}
    old_thresholds = arrays["threshold"].copy()
    arrays["threshold"] = np.array(
        [points[f]["threshold"] if points[f] else old_thresholds[i] for i, f in enumerate(findings)], np.float32
    )
    np.savez(folder / "heads.npz", **arrays)
    card = json.loads((folder / "card.json").read_text())
    card.update(
        served=served,
        hidden=[f for f in findings if f not in served],
        hide_rule=VALIDATION_RULE,
        operating_point=f"specificity {specificity:.2f} on validation",
        validation_evaluation={
            "images": "native resolution",
            "n": {s: len(chosen) for s, chosen in splits.items()},
            "metrics": per_split,
            "operating_points": points,
        },
        heads_sha256=hashlib.sha256((folder / "heads.npz").read_bytes()).hexdigest(),
    )
    write_findings_card(folder, card)
    return card


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="NIH-layout folder (images/ + Data_Entry_2017.csv)")
    parser.add_argument("--split-file", type=Path, default=DEFAULT_SPLIT)
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--specificity", type=float, default=SPECIFICITY, help="each finding's operating point")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    card = validate_findings(args.data, args.split_file, args.weights, args.specificity)
    print(json.dumps({k: card[k] for k in ("served", "hidden", "hide_rule", "operating_point")}, indent=2))


if __name__ == "__main__":
    main()
