"""Compare a multi-task candidate (training.train --multitask) with the served model, on validation only.

    python -m training.multitask_trial --data ../shared/data/nih-cxr14-subset --candidate var/candidates/mt \
        --model cnn [--output models/weights/multitask_trial.json]

Both are evaluated by training.evaluate on the native-resolution validation images: disease AUC, ECE, Grad-CAM
border share and each finding's AUC among disease images. The rule, fixed before the candidate was trained:
the candidate is served only if its training ran to early stopping (not cut by the time limit), its disease
AUC is at least the served model's and its mean among-disease finding AUC is higher than the served heads'.
The JSON (with the candidate's whole validation curve) becomes the cards' "What we tried" entry.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from models.registry import WEIGHTS_DIR, read_card
from training.evaluate import evaluate_records
from training.train import DEFAULT_SPLIT

TRIAL_JSON = "multitask_trial.json"


def _summary(data_dir: Path, model: str, weights_dir: Path, split_file: Path) -> dict:
    results, *_ = evaluate_records(data_dir, [model], split_file, "validation", weights_dir, native_only=True)
    m, findings = results[model], results.get("findings")
    among = {f: v["among_disease"]["auc"] for f, v in (findings or {"metrics": {}})["metrics"].items()}
    return {
        "n": m["n"],
        "auc": m["auc"],
        "auc_ci95": m["auc_ci95"],
        "ece": m["calibration"]["ece"],
        "border_share": (m.get("gradcam_border") or {}).get("mean"),
        "findings_among_disease": among,
        "findings_mean_among_disease": float(np.nanmean([a for a in among.values() if a is not None]))
        if among
        else None,
    }


def trial(data_dir: Path, candidate_dir: Path, model: str, served_dir: Path = WEIGHTS_DIR, split_file=DEFAULT_SPLIT):
    card = read_card(model, candidate_dir)
    served, candidate = (_summary(data_dir, model, d, split_file) for d in (served_dir, candidate_dir))
    finished = card["training"]["stopped_by"] == "early stopping"
    wins = candidate["auc"] >= served["auc"] and (candidate["findings_mean_among_disease"] or 0) > (
        served["findings_mean_among_disease"] or 0
    )
    reasons = [] if finished else ["training was cut by the time limit before early stopping"]
    reasons += [] if wins else ["it does not beat the served model on native validation"]
    return {
        "model": model,
        "candidate_version": card["version"],
        "recipe": card["recipe"],
        "training": {k: card["training"][k] for k in ("epochs_run", "best_epoch", "seconds", "stopped_by")},
        "curve": card["training"]["history"],
        "validation_native": {"served": served, "candidate": candidate},
        "decision": {"serve": finished and wins, "reasons": reasons or ["wins on validation"]},
    }


def trial_text(result: dict) -> str:
    served, candidate = result["validation_native"]["served"], result["validation_native"]["candidate"]
    rows = [
        f"| {role} | {m['auc']:.3f} [{m['auc_ci95'][0]:.3f}, {m['auc_ci95'][1]:.3f}] | {m['ece']:.3f} | "
        + (f"{m['border_share']:.3f}" if m["border_share"] is not None else "n/a")
        + f" | {m['findings_mean_among_disease']:.3f} |"
        for role, m in (("served", served), ("multi-task candidate", candidate))
    ]
    curve = ", ".join(
        f"{h['epoch']}: {h['disease_auc']:.3f}/{h['findings_among_disease_auc']:.3f}" for h in result["curve"]
    )
    t, r = result["training"], result["recipe"]
    return (
        f"\n**Multi-task training** (`python -m training.train --model {result['model']} --multitask`): one backbone, "
        f"a disease head and {len(r['findings'])} finding heads trained together, class-weighted, source balance "
        f"`{r['source_balance']}`, border/marker augmentation {r['border_augment']}, upsampled images at loss "
        f"weight {r['upsampled_weight']} (rule fixed before training). {t['epochs_run']} epochs in "
        f"{t['seconds'] / 60:.0f} min, stopped by {t['stopped_by']}. Native validation images "
        f"(n={candidate['n']}):\n\n| model | disease AUC [95% CI] | ECE | Grad-CAM border share | mean finding AUC "
        "among disease |\n|---|---|---|---|---|\n" + "\n".join(rows) + "\n\nValidation curve (epoch: disease AUC/"
        f"mean finding AUC among disease): {curve}.\n\n**Decision: "
        f"{'served' if result['decision']['serve'] else 'not served'}** — {'; '.join(result['decision']['reasons'])}.\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--candidate", required=True, type=Path, help="the --output folder of the multi-task run")
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--split-file", type=Path, default=DEFAULT_SPLIT)
    parser.add_argument("--output", type=Path, default=WEIGHTS_DIR / TRIAL_JSON)
    args = parser.parse_args(argv)
    result = trial(args.data, args.candidate, args.model, split_file=args.split_file)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(trial_text(result))


if __name__ == "__main__":
    main()
