"""The findings card (models/weights/findings/card.md) and its test table, from card.json."""

from __future__ import annotations


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


def render_findings_card(card: dict) -> str:
    feature_sets = ", ".join(f"{name} {auc:.3f}" for name, auc in card["feature_set_validation_auc"].items())
    hidden = ", ".join(card["hidden"]) or "none"
    versions = "`, `".join(card["feature_model_versions"].values())
    return f"""# Model card: `findings` (per-finding probabilities)

Version `{card["version"]}` · trained {card["trained_at"]} · `python -m training.findings --data DIR`.

**Task:** one probability per NIH finding, for the findings with at least {card["min_positives"]} images in
the data: {", ".join(card["findings"])}. Each is one-vs-rest over all images (healthy and other findings).

**Model:** a second small model on the served models' frozen features: for each finding a class-weighted
scikit-learn logistic regression on the standardised `{card["feature_output"]}` output (the input of the
final Dense layer) of `{"` + `".join(card["feature_models"])}` (`{versions}`), computed in the same forward
pass as the disease probability. Fitted on the train split of `training/splits/{card["data"]["split_file"]}`
(patient-wise); C from {card["c_grid"]} and the feature models chosen on validation (mean validation AUC:
{feature_sets}); Platt calibration and the decision threshold (Youden's J) on validation. The test split
was used only for the numbers below.

## Test-split metrics

*Test AUC* is one-vs-rest over all test images; *among disease images* ranks the finding against the other
findings only, so that recognising disease (or healthy films) earns nothing.

{findings_table(card)}
**Hidden:** {hidden} ({card["hide_rule"]}): trained and measured, but not shown in results.

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
