"""The model card's "Can a reader trust it" section: native-resolution test images, by subgroup, calibration and
where the Grad-CAM maps look (training.trust), for the served models and the ensemble."""

from __future__ import annotations

from pathlib import Path

from models.registry import ENSEMBLE_MEMBERS, WEIGHTS_DIR
from training.evaluate import evaluate_records
from training.subsets import subset_table

GAP_GOAL = 0.03
PAIRS = (("women", "men"), ("view PA", "view AP"), ("age < 40", "age > 60"))


def native_trust(data_dir: Path, split_file: Path, weights_dir: Path = WEIGHTS_DIR) -> dict:
    """The served models and the ensemble on the native-resolution test images."""
    results, *_ = evaluate_records(data_dir, list(ENSEMBLE_MEMBERS), split_file, "test", weights_dir, native_only=True)
    findings = results.pop("findings", None)
    return {"models": results, "findings": findings}


def _gap_line(name: str, subsets: dict, first: str, second: str) -> str | None:
    a, b = subsets.get(first), subsets.get(second)
    if not a or not b or a["auc"] is None or b["auc"] is None:
        return None
    gap = a["auc"] - b["auc"]
    overlap = a["auc_ci95"][0] <= b["auc_ci95"][1] and b["auc_ci95"][0] <= a["auc_ci95"][1]
    verdict = "within goal" if abs(gap) <= GAP_GOAL else ("CIs overlap" if overlap else "**gap outside the CIs**")
    return f"| {name} | {first} − {second} | {gap:+.3f} | {verdict} |"


def trust_section(trust: dict | None) -> str:
    if not trust:
        return ""
    models = trust["models"]
    rows = []
    for name, m in models.items():
        border = m.get("gradcam_border")
        share = (
            f"{border['mean']:.3f} (median {border['median']:.3f}; >0.5 on {border['share_of_images_over_half']:.0%})"
            if border
            else "n/a"
        )
        cal = m["calibration"]
        rows.append(
            f"| {name} | {m['n']} | {m['auc']:.3f} [{m['auc_ci95'][0]:.3f}, {m['auc_ci95'][1]:.3f}] "
            f"| {cal['brier']:.3f} | {cal['ece']:.3f} | {share} |"
        )
    gaps = [
        line for name, m in models.items() for pair in PAIRS if (line := _gap_line(name, m["subsets"], *pair))
    ]  # fmt: skip
    return f"""
## Native-resolution test images: calibration, heat maps, subgroups

The issue's targets are on the native-resolution test images (not upsampled from 64 px). ECE: 10 equal-width
bins, the image-weighted gap between mean probability and observed disease rate. Border share: the part of each
Grad-CAM map's mass in the outer 15% band of the input square (51% of its area, so uniform heat scores 0.51;
goal ≤ 0.25). Reliability diagram: `models/weights/report/calibration.png`.

| model | images | AUC [95% CI] | Brier | ECE | Grad-CAM border share |
|---|---|---|---|---|---|
{chr(10).join(rows)}

By sex, age band (years) and view (NIH's columns), AUC [95% CI]:

{subset_table({name: m["subsets"] for name, m in models.items()})}
Gaps (goal ≤ {GAP_GOAL} or explained by the CIs):

| model | subgroups | AUC gap | verdict |
|---|---|---|---|
{chr(10).join(gaps)}
"""
