"""Write the model cards: test-split metrics of all four models side by side, in markdown and JSON.

    python -m training.cards --data ../shared/data/nih-cxr14-subset

Run after training all four models, `training.ensemble`, `training.findings` and the model checks
(`training.source_probe`, `training.upsampled_check`, whose JSON in the weights folder becomes each card's
"What we tried"). It evaluates every model (and the ensemble) on the TEST split of the committed patient-wise
split, on all images and on each subset of training/subsets.py (native resolution, upsampled, each source), adds
the results to each `card.json`, writes each `card.md` (with the per-finding table of the findings card, for the
models whose features it reads), and the plots under models/weights/report/.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from models.findings import FINDINGS_FOLDER
from models.registry import ENSEMBLE_MEMBERS, MODEL_NAMES, WEIGHTS_DIR, read_card
from training.evaluate import evaluate_records
from training.findings_card import findings_table
from training.report import write_report
from training.subsets import subset_table
from training.train import DEFAULT_SPLIT
from training.tried_card import tried_section
from training.trust_card import native_trust, trust_section

LIMITS = """\
- **Not a medical device.** A research and engineering artefact; it must not be used to diagnose, triage or
  exclude disease in any patient.
- **Noisy labels.** NIH's labels were mined from radiology reports by NLP (NIH estimates over 90% accuracy);
  "No Finding" does not mean a radiologist confirmed a normal film.
- **Small data, low resolution.** 2,230 images from 1,287 patients at 128x128; 721 of them reached us at
  64x64 and were upsampled. Test-set AUCs carry wide intervals (see the 95% bootstrap CIs).
- **Shortcuts.** Disease is more common on AP (bedside) films than PA; a model may partly learn the view,
  markers or image quality rather than the pathology. Performance on other hospitals, scanners, children
  or non-frontal views is unknown.
- **Binary.** "Disease" lumps 14 findings of very different difficulty; the model does not say which. Per-finding
  probabilities come from a second small model on its features (`models/weights/findings/card.md`).
"""


CARD_TEMPLATE = """# Model card: `{name}`

Version `{version}` · architecture `{architecture}` ({parameters} parameters) ·
input {size}x{size}x{channels} through `models.preprocess.preprocess` (the same function the worker uses) ·
trained {trained_at}.

**Resizing:** larger uploads are resized with Lanczos (reducing gap 3), the filter NIH's 128-px training copies
were made with: on the 15 shared 1024-px originals against their 128-px copies every served model's probability
moves by at most 0.011 (mean 0.003; with the earlier bilinear resize up to 0.266, mean 0.116, downwards).
Matching the training filter was chosen over retraining with resize augmentation, which was not tried: it removes
the drift at its cause for every trained model (`tests/test_resolution_drift.py`, also on 16-bit DICOM copies).

**Task:** chest radiograph → probability of *disease* (any of NIH's 14 findings) vs *healthy* ("No Finding").

## Data and split

NIH ChestX-ray14 (folder `{folder}`), NIH Clinical Center, https://nihcc.app.box.com/v/ChestXray-NIHCC;
Wang et al., *ChestX-ray8*, IEEE CVPR 2017. Patient-wise split, seed {seed}, stratified by label
(`training/splits/{split_file}`): no patient appears in two splits. Images upsampled from 64 px excluded:
{exclude_upsampled}.

| split | images | patients | disease | healthy | upsampled from 64 px |
|---|---|---|---|---|---|
{split_lines}

## Recipe

Optimizer {recipe[optimizer]} (learning rate {recipe[learning_rate]}, weight decay {recipe[weight_decay]}),
batch {recipe[batch_size]}, at most {recipe[max_epochs]} epochs, early stopping on
`{recipe[early_stopping_monitor]}` (validation, patience {recipe[early_stopping_patience]}, best weights restored),
learning rate halved on a validation plateau: {reduce_lr}, augmentation `{recipe[augmentation]}`
(see `training/recipes.py`), class weighting: {recipe[class_weighting]}.
Ran {training[epochs_run]} epochs in {minutes} min on {training[machine]}, stopped by {training[stopped_by]};
the weights are those of epoch {training[best_epoch]}, the best by `{recipe[early_stopping_monitor]}`.

**Calibration:** {calibration_text}
**Decision threshold:** {threshold}, {threshold_text}.
Validation AUC {val_auc} (n={val_n}).

## Test-split metrics (all four models and the ensemble, the same {test_n} images)

{table}
The ensemble is sigmoid(mean of the calibrated `cnn` and `unet` logits) against sigmoid(mean of their thresholds'
logits): derived, not tuned, so it never overrules the two when they agree.
Plots: `models/weights/report/`. Re-run on any NIH-layout folder:
`python -m training.evaluate --data DIR --models cnn,unet,seed-cnn,seed-unet --json`.
{subsets}{trust}{findings}{tried}
## Limits

{limits}"""


def metrics_table(test_metrics: dict) -> str:
    header = "| model | AUC [95% CI] | sensitivity | specificity | PPV | NPV | F1 | Brier | threshold |\n"
    header += "|---|---|---|---|---|---|---|---|---|\n"
    rows = []
    for name, m in test_metrics.items():
        low, high = m["auc_ci95"]
        rows.append(
            f"| {name} | {m['auc']:.3f} [{low:.3f}, {high:.3f}] | {m['sensitivity']:.3f} | {m['specificity']:.3f} "
            f"| {m['ppv']:.3f} | {m['npv']:.3f} | {m['f1']:.3f} | {m['brier']:.3f} | {m['threshold']:.3f} |"
        )
    return header + "\n".join(rows) + "\n"


def render_card(
    card: dict, test_metrics: dict, findings_card: dict | None = None, tried: str = "", trust: dict | None = None
) -> str:
    recipe, training, splits = card["recipe"], card["training"], card["data"]["splits"]
    split_lines = "\n".join(
        f"| {s} | {v['images']} | {v['patients']} | {v['disease']} | {v['healthy']} | {v['upsampled_from_64px']} |"
        for s, v in splits.items()
    )
    calibration = card["calibration"]
    calibration_text = (
        f"{calibration['method'].capitalize()} scaling on the {calibration.get('fitted_on', 'validation split')}: "
        f"p = sigmoid({calibration['slope']:.3f} * logit(raw) + {calibration['intercept']:.3f})"
        + (f", chosen by {calibration['chosen_by']} (`training.recalibrate`)." if "chosen_by" in calibration else ".")
        if calibration.get("method") in ("platt", "temperature")
        else "None (the notebook's recipe reports the raw sigmoid output)."
    )
    threshold_text = (
        "Youden's J (sensitivity + specificity - 1) maximised on the validation split"
        + (
            ", carried through the recalibration (the same raw cut, so no image changes label)"
            if "previous" in calibration
            else ""
        )
        if card["threshold_rule"] == "youden"
        else "fixed at 0.5, as in the notebook"
    )
    fields = {
        "name": card["name"],
        "version": card["version"],
        "architecture": card["architecture"],
        "parameters": f"{card['parameters']:,}",
        "size": card["input"]["size"],
        "channels": card["input"]["channels"],
        "trained_at": card["trained_at"],
        "folder": card["data"]["folder"],
        "seed": card["seed"],
        "split_file": card["data"]["split_file"],
        "exclude_upsampled": card["data"]["exclude_upsampled"],
        "split_lines": split_lines,
        "recipe": recipe,
        "reduce_lr": bool(recipe["reduce_lr_patience"]),
        "training": training,
        "minutes": f"{training['seconds'] / 60:.1f}",
        "calibration_text": calibration_text,
        "threshold": f"{card['threshold']:.3f}",
        "threshold_text": threshold_text,
        "val_auc": f"{card['validation']['auc']:.3f}",
        "val_n": card["validation"]["n"],
        "test_n": next(iter(test_metrics.values()))["n"],
        "table": metrics_table(test_metrics),
        "subsets": subsets_section(test_metrics),
        "trust": trust_section(trust) if card["name"] in ENSEMBLE_MEMBERS else "",
        "findings": findings_section(card["name"], findings_card),
        "tried": tried,
        "limits": LIMITS,
    }
    return CARD_TEMPLATE.format(**fields)


def subsets_section(test_metrics: dict) -> str:
    if not all("subsets" in m for m in test_metrics.values()):
        return ""
    return (
        "\n## Test AUC by subset\n\nNative resolution (`upsampled_from_64px == 0` in sources.csv), upsampled "
        "from 64 px, and within each source (the public copy an image came from; AUC only where each class has at "
        "least 5 images): a model can score by recognising the source instead of the image.\n\n"
        + subset_table({name: m["subsets"] for name, m in test_metrics.items()})
    )


def findings_section(name: str, findings_card: dict | None) -> str:
    if not findings_card or name not in findings_card["feature_models"]:
        return ""
    return (
        f"\n## Per-finding probabilities\n\nThe findings heads (`models/weights/findings/card.md`, version "
        f"`{findings_card['version']}`) read this model's `pooled_features`. Test AUC per finding:\n\n"
        + findings_table(findings_card)
        + f"\nHidden from results: {', '.join(findings_card['hidden']) or 'none'} ({findings_card['hide_rule']}).\n"
    )


def read_findings_card(weights_dir: Path) -> dict | None:
    path = Path(weights_dir) / FINDINGS_FOLDER / "card.json"
    return json.loads(path.read_text()) if path.exists() else None


def write_cards(data_dir: Path, split_file: Path = DEFAULT_SPLIT, weights_dir: Path = WEIGHTS_DIR) -> dict:
    results, probabilities, labels, _ = evaluate_records(data_dir, list(MODEL_NAMES), split_file, "test", weights_dir)
    results.pop("findings", None)  # the findings card has them, on the native images (training.validate_findings)
    test_metrics = {name: {k: v for k, v in m.items() if k != "images_per_s"} for name, m in results.items()}
    findings_card = read_findings_card(weights_dir)
    write_report(weights_dir / "report", results, probabilities, labels)
    trust = native_trust(data_dir, split_file, weights_dir)
    for name in MODEL_NAMES:
        card = read_card(name, weights_dir)
        card["test"] = test_metrics
        if name in ENSEMBLE_MEMBERS:
            card["test_native"] = trust
        (weights_dir / name / "card.json").write_text(json.dumps(card, indent=2) + "\n")
        (weights_dir / name / "card.md").write_text(
            render_card(card, test_metrics, findings_card, tried_section(name, weights_dir), trust)
        )
    (weights_dir / "test_metrics.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--split-file", type=Path, default=DEFAULT_SPLIT)
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    args = parser.parse_args(argv)
    print(metrics_table(write_cards(args.data, args.split_file, args.weights)))


if __name__ == "__main__":
    main()
