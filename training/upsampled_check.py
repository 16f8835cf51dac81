"""Do the 721 images upsampled from 64 px help or hurt? Compare a model trained with `--exclude-upsampled`
against the served one, on validation, and decide there.

    python -m training.train --model cnn --data DIR --exclude-upsampled --max-minutes 25 --output /tmp/without
    python -m training.upsampled_check --data DIR --candidate /tmp/without [--with-test]
        [--output models/weights/upsampled_check.json]

Both models are evaluated by `training.evaluate` on the same validation images of the committed patient-wise
split: all of them, and the native-resolution ones (what users upload). The AUC difference (candidate minus
served) has a paired percentile bootstrap 95% CI. The decision reads the native-resolution validation AUC only:
exclude the upsampled images when the candidate is better with the CI's lower bound above 0, keep them when it
is worse with the upper bound below 0, otherwise keep the training set as it is (no measurable difference).
`--with-test` adds the test numbers afterwards, as information; they never enter the decision.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from models.metrics import bootstrap_ci
from models.registry import WEIGHTS_DIR
from training.evaluate import evaluate_records
from training.subsets import ALL, NATIVE, subset_masks
from training.train import DEFAULT_SPLIT

DECIDING_SUBSET = NATIVE
BOOTSTRAP_ROUNDS = 1000


def paired_auc_difference_ci(
    labels: np.ndarray, baseline: np.ndarray, candidate: np.ndarray, rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0
) -> list[float] | None:
    """95% percentile CI of AUC(candidate) - AUC(baseline), resampling images (the same ones for both); None
    when no resample holds both classes."""

    def difference(idx: np.ndarray) -> float:
        return roc_auc_score(labels[idx], candidate[idx]) - roc_auc_score(labels[idx], baseline[idx])

    return bootstrap_ci(labels, difference, rounds, seed)


def compare(data_dir: Path, model: str, baseline_dir: Path, candidate_dir: Path, split: str, split_file: Path) -> dict:
    """{subset: {n, disease, baseline, candidate, difference, difference_ci95}} on one split, for all images
    and the native-resolution ones."""
    runs = {}
    for role, weights_dir in (("baseline", baseline_dir), ("candidate", candidate_dir)):
        results, probabilities, labels, records = evaluate_records(data_dir, [model], split_file, split, weights_dir)
        runs[role] = (results[model]["subsets"], probabilities[model])
    masks = subset_masks(records)
    compared = {}
    for subset in (ALL, NATIVE):
        mask = masks[subset]
        entry = {"n": int(mask.sum()), "disease": int(labels[mask].sum())}
        for role, (subsets, _) in runs.items():
            entry[role] = {"auc": subsets[subset]["auc"], "auc_ci95": subsets[subset]["auc_ci95"]}
        measured = entry["baseline"]["auc"] is not None and entry["candidate"]["auc"] is not None
        entry["difference"] = entry["candidate"]["auc"] - entry["baseline"]["auc"] if measured else None
        entry["difference_ci95"] = (
            paired_auc_difference_ci(labels[mask], runs["baseline"][1][mask], runs["candidate"][1][mask])
            if measured
            else None
        )
        compared[subset] = entry
    return compared


def decide(validation: dict) -> dict:
    """The decision from the validation comparison alone (see the module docstring)."""
    entry = validation[DECIDING_SUBSET]
    if entry["difference_ci95"] is None:
        reason = f"too few {DECIDING_SUBSET} validation images of each class to measure; nothing changes"
        return {"subset": DECIDING_SUBSET, "verdict": "keep", "reason": reason}
    low, high = entry["difference_ci95"]
    summary = f"{entry['difference']:+.3f} AUC [{low:+.3f}, {high:+.3f}] on {entry['n']} {DECIDING_SUBSET} images"
    if low > 0:
        verdict, reason = "exclude", f"training without them is better: {summary}"
    elif high < 0:
        verdict, reason = "keep", f"training without them is worse: {summary}"
    else:
        verdict, reason = "keep", f"no measurable difference ({summary}); the training set stays as it is"
    return {"subset": DECIDING_SUBSET, "verdict": verdict, "reason": reason}


def describe(weights_dir: Path, model: str) -> dict:
    card = json.loads((Path(weights_dir) / model / "card.json").read_text())
    training = card["training"]
    return {
        "weights": str(weights_dir),
        "version": card["version"],
        "exclude_upsampled": card["data"]["exclude_upsampled"],
        "train_images": card["data"]["splits"]["train"]["images"],
        "epochs_run": training["epochs_run"],
        "best_epoch": training["best_epoch"],
        "stopped_by": training["stopped_by"],
        "minutes": round(training["seconds"] / 60, 1),
        "machine": training["machine"],
    }


def run_check(
    data_dir: Path,
    candidate_dir: Path,
    baseline_dir: Path = WEIGHTS_DIR,
    model: str = "cnn",
    split_file: Path = DEFAULT_SPLIT,
    with_test: bool = False,
) -> dict:
    validation = compare(data_dir, model, baseline_dir, candidate_dir, "validation", split_file)
    result = {
        "model": model,
        "baseline": describe(baseline_dir, model),
        "candidate": describe(candidate_dir, model),
        "validation": validation,
        "decision": decide(validation),
    }
    if with_test:
        result["test_information_only"] = compare(data_dir, model, baseline_dir, candidate_dir, "test", split_file)
    return result


def comparison_table(compared: dict) -> str:
    lines = ["| subset | n | disease | served | without upsampled | difference [95% CI] |", "|---|---|---|---|---|---|"]
    for subset, e in compared.items():
        served, without = (_auc_cell(e[role]["auc"], e[role]["auc_ci95"], "") for role in ("baseline", "candidate"))
        difference = _auc_cell(e["difference"], e["difference_ci95"], "+")
        lines.append(f"| {subset} | {e['n']} | {e['disease']} | {served} | {without} | {difference} |")
    return "\n".join(lines) + "\n"


def _auc_cell(value: float | None, ci: list[float] | None, sign: str) -> str:
    if value is None or ci is None:
        return "n/a"
    return f"{value:{sign}.3f} [{ci[0]:{sign}.3f}, {ci[1]:{sign}.3f}]"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="NIH-layout folder with sources.csv")
    parser.add_argument("--candidate", required=True, type=Path, help="weights folder trained --exclude-upsampled")
    parser.add_argument("--baseline", type=Path, default=WEIGHTS_DIR, help="weights folder (default: the served)")
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--split-file", type=Path, default=DEFAULT_SPLIT)
    parser.add_argument("--with-test", action="store_true", help="also report test AUCs, as information only")
    parser.add_argument("--output", type=Path, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    for folder in (args.baseline, args.candidate):
        if not (folder / args.model / "card.json").exists():
            parser.error(f"{folder / args.model / 'card.json'} not found")
    if not (args.data / "sources.csv").exists():
        parser.error(f"{args.data / 'sources.csv'} not found: the check needs to know which images were upsampled")
    result = run_check(args.data, args.candidate, args.baseline, args.model, args.split_file, args.with_test)
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    print("Validation (decides):\n\n" + comparison_table(result["validation"]))
    print(f"Decision: {result['decision']['verdict']} the upsampled images: {result['decision']['reason']}.")
    if with_test := result.get("test_information_only"):
        print("\nTest (information only, not used to decide):\n\n" + comparison_table(with_test), end="")


if __name__ == "__main__":
    main()
