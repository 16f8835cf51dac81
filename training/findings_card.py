"""The findings card (models/weights/findings/card.md) and its test table, from card.json."""

from __future__ import annotations

import json
from pathlib import Path


def _interval(metrics: dict) -> str:
    if metrics.get("auc") is None:
        return "n/a"
    low, high = metrics["auc_ci95"]
    return f"{metrics['auc']:.3f} [{low:.3f}, {high:.3f}]"


def findings_table(card: dict) -> str:
    """Per finding: positives per split, chosen C, validation AUC, test AUC with CI, served or hidden."""
    lines = [
        "| finding | positives train/val/test | C | validation AUC | test AUC [95% CI] | among disease images "
        "| served |",
        "|---|---|---|---|---|---|---|",
    ]
    for finding in card["findings"]:
        m = card["metrics"][finding]
        positives = "/".join(str(m["positives"][s]) for s in ("train", "validation", "test"))
        served = "yes" if finding in card["served"] else "hidden"
        among = _interval(m["test_among_disease"]) if "test_among_disease" in m else "n/a"
        lines.append(
            f"| {finding} | {positives} | {m['c']:g} | {m['validation_auc']:.3f} | {_interval(m['test'])} "
            f"| {among} | {served} |"
        )
    return "\n".join(lines) + "\n"


def within_source_table(card: dict) -> str:
    """Test AUC inside each source that has both classes of the finding."""
    lines = ["| finding | source | images | disease | positives | test AUC [95% CI] |", "|---|---|---|---|---|---|"]
    confounded = []
    for finding in card["findings"]:
        for source, m in card["metrics"][finding]["test_within_source"].items():
            disease = m.get("disease", "")
            lines.append(f"| {finding} | `{source}` | {m['n']} | {disease} | {m['positives']} | {_interval(m)} |")
            if m["positives"] == disease:
                confounded.append(f"{finding} in `{source}`")
    if confounded:
        lines.append(
            f"\nEvery disease image has the finding in: {', '.join(confounded)}. There the AUC is disease vs "
            "healthy and says nothing about the finding itself; the column *among disease images* above does."
        )
    return "\n".join(lines) + "\n"


def rule_table(card: dict) -> str:
    """Per finding, on native-resolution validation and test images: AUC [95% CI] over all images and among
    disease images, the validation threshold at the operating point, and whether the rule serves it."""
    evaluation = card["validation_evaluation"]
    n = evaluation["n"]
    lines = [
        f"| finding | validation all (n={n['validation']}) | validation among disease | test all (n={n['test']}) "
        "| test among disease | threshold (sens./spec. on validation) | served |",
        "|---|---|---|---|---|---|---|",
    ]
    for finding in card["findings"]:
        v, t = evaluation["metrics"]["validation"][finding], evaluation["metrics"]["test"][finding]
        point = evaluation["operating_points"].get(finding)
        where = f"{point['threshold']:.3f} ({point['sensitivity']:.2f}/{point['specificity']:.2f})" if point else "n/a"
        served = "yes" if finding in card["served"] else "hidden"
        lines.append(
            f"| {finding} | {_interval(v['all'])} | {_interval(v['among_disease'])} | {_interval(t['all'])} "
            f"| {_interval(t['among_disease'])} | {where} | {served} |"
        )
    return "\n".join(lines) + "\n"


def rule_section(card: dict) -> str:
    if "validation_evaluation" not in card:
        return ""
    return f"""
## Which findings are served

Rule: {card["hide_rule"]}. Thresholds: {card["operating_point"]}. Hidden findings are computed and stored
but shown nowhere (page, CSV, SR, API) unless RADBATCH_SHOW_UNVALIDATED_FINDINGS is on, and then labelled
"not validated".

{rule_table(card)}"""


def render_findings_card(card: dict) -> str:
    if "c_grid" not in card:  # heads trained end to end with the disease model (training.multitask)
        return f"""# Model card: `findings` (per-finding probabilities)

Version `{card["version"]}` · trained {card["trained_at"]} · {card.get("trained", "")}.

Findings: {", ".join(card["findings"])}; read from `{card["feature_output"]}` of
`{"`, `".join(card["feature_model_versions"].values())}`, Platt-calibrated on native validation images.
{rule_section(card)}"""
    feature_sets = ", ".join(f"{name} {auc:.3f}" for name, auc in card["feature_set_validation_auc"].items())
    hidden = ", ".join(card["hidden"]) or "none"
    versions = "`, `".join(card["feature_model_versions"].values())
    point = card.get("operating_point", "Youden's J on validation")
    return f"""# Model card: `findings` (per-finding probabilities)

Version `{card["version"]}` · trained {card["trained_at"]} · `python -m training.findings --data DIR`.

**Task:** one probability per NIH finding, for the findings with at least {card["min_positives"]} images in
the data: {", ".join(card["findings"])}. Each is one-vs-rest over all images (healthy and other findings).

**Model:** a second small model on the served models' frozen features: for each finding a class-weighted
scikit-learn logistic regression on the standardised `{card["feature_output"]}` output (the input of the
final Dense layer) of `{"` + `".join(card["feature_models"])}` (`{versions}`), computed in the same forward
pass as the disease probability. Fitted on the train split of `training/splits/{card["data"]["split_file"]}`
(patient-wise); C from {card["c_grid"]} and the feature models chosen on validation (mean validation AUC:
{feature_sets}); Platt calibration on validation, and each decision threshold at {point}. The test split
was used only for the numbers below.

## Test-split metrics

*Test AUC* is one-vs-rest over all test images; *among disease images* ranks the finding against the other
findings only, so that recognising disease (or healthy films) earns nothing.

{findings_table(card)}
**Hidden:** {hidden} ({card["hide_rule"]}): trained and measured, but not shown in results.
{rule_section(card)}
## Within source

NIH's labels came to this subset through several public copies; one copy holds most Pneumonia images,
so a model can score on Pneumonia by recognising that copy. AUC inside each source that has both classes
(at least 5 of each in the test split) is the honest check:

{within_source_table(card)}
## Limits

Not a medical device. NIH's finding labels were mined from reports by NLP and are noisy; positives per
finding are few (see the table), so the intervals are wide. The features were trained for disease vs
healthy, not for the findings, and the images are 128 px: small findings (Nodule, Mass) suffer most.
"""


def write_findings_card(folder: Path, card: dict) -> None:
    """The finding heads' card, as card.json and as the card.md rendered from it."""
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    (folder / "card.md").write_text(render_findings_card(card))
