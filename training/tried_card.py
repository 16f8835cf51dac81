"""The model cards' "What we tried" section, from the JSON the model checks write into the weights folder:
`source_probe.json` (`python -m training.source_probe --output ...`), `upsampled_check.json`
(`python -m training.upsampled_check --output ...`), `multitask_trial.json` (`python -m training.multitask_trial`),
`tta_trial.json` (`python -m training.tta_trial`, the served members' cards only) and `border_trial.json`
(`python -m training.border_trial`). Any may be missing; the section says only what was measured.
"""

from __future__ import annotations

import json
from pathlib import Path

from models.registry import ENSEMBLE_MEMBERS
from training.border_trial import BORDER_TRIAL_JSON, border_text
from training.multitask_trial import TRIAL_JSON, trial_text
from training.source_probe import DISEASE_ONLY, SCOPES, probe_table
from training.tta_trial import TTA_JSON, tta_text
from training.upsampled_check import comparison_table

SOURCE_PROBE_JSON = "source_probe.json"
UPSAMPLED_CHECK_JSON = "upsampled_check.json"


def read_check(weights_dir: Path, file_name: str) -> dict | None:
    path = Path(weights_dir) / file_name
    return json.loads(path.read_text()) if path.exists() else None


def tried_section(name: str, weights_dir: Path) -> str:
    probe, check = read_check(weights_dir, SOURCE_PROBE_JSON), read_check(weights_dir, UPSAMPLED_CHECK_JSON)
    multitask = read_check(weights_dir, TRIAL_JSON)
    multitask = multitask if multitask and multitask["model"] == name else None
    tta = read_check(weights_dir, TTA_JSON) if name in ENSEMBLE_MEMBERS else None
    border = read_check(weights_dir, BORDER_TRIAL_JSON)
    border = border if border and border["model"] == name else None
    if not probe and not check and not multitask and not tta and not border:
        return ""
    return (
        "\n## What we tried\n"
        + (probe_text(name, probe) if probe else "")
        + (check_text(check) if check else "")
        + (trial_text(multitask) if multitask else "")
        + (tta_text(tta) if tta else "")
        + (border_text(border) if border else "")
    )


def probe_text(name: str, probe: dict) -> str:
    own, control = probe["probes"].get(name), probe["probes"].get(name + DISEASE_ONLY)
    reading = ""
    if own and control and all(own[s] and control[s] for s in SCOPES):
        every, native, native_disease = (own[s] for s in SCOPES)
        low, high = native_disease["test_accuracy_ci95"]
        reading = (
            f" This model's features tell the source in {every['test_accuracy']:.0%} of all test images (its "
            f"disease logit alone: {control['all images']['test_accuracy']:.0%}; always guessing the commonest "
            f"source: {every['majority_baseline']:.0%}), in {native['test_accuracy']:.0%} of native-resolution ones "
            f"(disease logit alone {control['native resolution']['test_accuracy']:.0%}, baseline "
            f"{native['majority_baseline']:.0%}), and in {native_disease['test_accuracy']:.0%} [{low:.0%}, "
            f"{high:.0%}] of native-resolution disease images (baseline {native_disease['majority_baseline']:.0%})."
            " Where the features beat their own disease logit they hold source information beyond the disease"
            " (on all images: the 64-px upsampling); where they do not, the sources differ by their disease rate"
            " (one native source has only disease images)."
        )
    left_out = ", ".join(f"`{s.removeprefix('github:')}`" for s in probe["left_out"]) or "none"
    return (
        "\n**Source probe** (`python -m training.source_probe --data DIR`): a logistic regression on the frozen "
        "`pooled_features` predicts each image's source (sources.csv); fitted on train, C chosen on validation, "
        "test accuracy with a 95% bootstrap CI against always answering the train split's commonest source. "
        f"Sources under {probe['min_source_images']} images left out: {left_out}.{reading} Accuracy above the "
        "baseline means the features encode where an image came from, a shortcut the disease head can use (it "
        "does not show that it does). The pixel row is the same probe on the image averaged to 16x16, without "
        "any model; each model's disease-logit row reads only its disease output.\n\n" + probe_table(probe)
    )


def check_text(check: dict) -> str:
    baseline, candidate, decision = check["baseline"], check["candidate"], check["decision"]
    text = (
        f"\n**Without the 721 upsampled images** (`python -m training.upsampled_check`): `{check['model']}`'s "
        f"recipe retrained once with `--exclude-upsampled` ({candidate['train_images']} training images instead "
        f"of {baseline['train_images']}; {candidate['epochs_run']} epochs, best {candidate['best_epoch']}, "
        f"stopped by {candidate['stopped_by']}, {candidate['minutes']} min on {candidate['machine']}) against the "
        f"served `{check['model']}`, both evaluated by `training.evaluate` on the same validation images "
        "(difference = without minus served, paired bootstrap 95% CI). The served model's epoch was chosen on all "
        "validation images, the candidate's on the native ones (all it had), which favours the candidate on the "
        "deciding row:\n\n"
        + comparison_table(check["validation"])
        + f"\n**Decision (validation only): {decision['verdict']} the upsampled images** — {decision['reason']}. "
        "The served weights were not replaced.\n"
    )
    if test := check.get("test_information_only"):
        text += "\nTest split, as information only (it did not enter the decision):\n\n" + comparison_table(test)
    return text
