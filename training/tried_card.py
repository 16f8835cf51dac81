"""The model cards' "What we tried" section, from the JSON the model checks write into the weights folder:
`source_probe.json` (`python -m training.source_probe --output ...`) and `upsampled_check.json`
(`python -m training.upsampled_check --output ...`). Either may be missing; the section says only what was measured.
"""

from __future__ import annotations

import json
from pathlib import Path

from training.source_probe import probe_table
from training.upsampled_check import comparison_table

SOURCE_PROBE_JSON = "source_probe.json"
UPSAMPLED_CHECK_JSON = "upsampled_check.json"


def read_check(weights_dir: Path, file_name: str) -> dict | None:
    path = Path(weights_dir) / file_name
    return json.loads(path.read_text()) if path.exists() else None


def tried_section(name: str, weights_dir: Path) -> str:
    probe, check = read_check(weights_dir, SOURCE_PROBE_JSON), read_check(weights_dir, UPSAMPLED_CHECK_JSON)
    if not probe and not check:
        return ""
    return "\n## What we tried\n" + (probe_text(name, probe) if probe else "") + (check_text(check) if check else "")


def probe_text(name: str, probe: dict) -> str:
    own = probe["probes"].get(name)
    reading = ""
    if own and own["all images"] and own["native resolution"]:
        every, native = own["all images"], own["native resolution"]
        reading = (
            f" This model's features tell the source {every['test_accuracy']:.0%} of the time on all test images "
            f"(always guessing the commonest source: {every['majority_baseline']:.0%}) and "
            f"{native['test_accuracy']:.0%} on native-resolution ones ({native['majority_baseline']:.0%})."
        )
    left_out = ", ".join(f"`{s.removeprefix('github:')}`" for s in probe["left_out"]) or "none"
    return (
        "\n**Source probe** (`python -m training.source_probe --data DIR`): a logistic regression on the frozen "
        "`pooled_features` predicts each image's source (sources.csv); fitted on train, C chosen on validation, "
        "test accuracy with a 95% bootstrap CI against always answering the train split's commonest source. "
        f"Sources under {probe['min_source_images']} images left out: {left_out}.{reading} Accuracy above the "
        "baseline means the features encode where an image came from, a shortcut the disease head can use (it "
        "does not show that it does). The pixel row is the same probe on the image averaged to 16x16, without "
        "any model.\n\n" + probe_table(probe)
    )


def check_text(check: dict) -> str:
    baseline, candidate, decision = check["baseline"], check["candidate"], check["decision"]
    text = (
        f"\n**Without the 721 upsampled images** (`python -m training.upsampled_check`): `{check['model']}`'s "
        f"recipe retrained once with `--exclude-upsampled` ({candidate['train_images']} training images instead "
        f"of {baseline['train_images']}; {candidate['epochs_run']} epochs, best {candidate['best_epoch']}, "
        f"stopped by {candidate['stopped_by']}, {candidate['minutes']} min on {candidate['machine']}) against the "
        f"served `{check['model']}`, both evaluated by `training.evaluate` on the same validation images "
        "(difference = without minus served, paired bootstrap 95% CI):\n\n"
        + comparison_table(check["validation"])
        + f"\n**Decision (validation only): {decision['verdict']} the upsampled images** — {decision['reason']}. "
        "The served weights were not replaced.\n"
    )
    if test := check.get("test_information_only"):
        text += "\nTest split, as information only (it did not enter the decision):\n\n" + comparison_table(test)
    return text
