"""What a radiologist needs before trusting a number: calibration, where the heat maps look, and per-finding AUC.

- `calibration_summary`: Brier score, expected calibration error (ECE: 10 equal-width bins of the predicted
  probability, the image-weighted mean gap between mean prediction and observed disease rate) and the bins
  for a reliability diagram.
- `border_share`: the share of each Grad-CAM map's mass in the outer BORDER_FRACTION band of the (padded,
  square) model input; the band is 51% of the area, so uniform heat scores 0.51 and a map on the lungs far less.
- `finding_metrics`: per finding, AUC with a 95% bootstrap CI over all images and among disease images only.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import brier_score_loss, roc_auc_score

from models.metrics import bootstrap_auc_ci
from training.data import Record

BORDER_FRACTION = 0.15
CALIBRATION_BINS = 10


def calibration_summary(labels: np.ndarray, probabilities: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
    labels, probabilities = np.asarray(labels, float), np.asarray(probabilities, float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        chosen = which == b
        if not chosen.any():
            continue
        predicted, observed = float(probabilities[chosen].mean()), float(labels[chosen].mean())
        ece += chosen.mean() * abs(predicted - observed)
        table.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "n": int(chosen.sum()),
                "mean_predicted": predicted,
                "observed_rate": observed,
            }
        )
    return {
        "n": int(len(labels)),
        "brier": float(brier_score_loss(labels, probabilities)),
        "ece": float(ece),
        "bins": table,
    }


def band_mask(side: int, fraction: float = BORDER_FRACTION) -> np.ndarray:
    """True in the outer band of a side x side square (`fraction` of the side on each edge)."""
    width = int(round(side * fraction))
    mask = np.ones((side, side), bool)
    mask[width : side - width, width : side - width] = False
    return mask


def border_shares(heatmaps: np.ndarray, fraction: float = BORDER_FRACTION) -> np.ndarray:
    """Per map (n, side, side): heat in the band / all heat; NaN for a map with no heat at all."""
    heat = np.clip(np.asarray(heatmaps, np.float64), 0, None)
    total = heat.sum(axis=(1, 2))
    band = heat[:, band_mask(heat.shape[1], fraction)].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, band / total, np.nan)


def border_summary(shares: np.ndarray, side: int, fraction: float = BORDER_FRACTION) -> dict:
    measured = shares[np.isfinite(shares)]
    return {
        "n": int(len(measured)),
        "band_fraction_of_side": fraction,
        "band_share_of_area": float(band_mask(side, fraction).mean()),
        "mean": float(measured.mean()) if len(measured) else None,
        "median": float(np.median(measured)) if len(measured) else None,
        "share_of_images_over_half": float((measured > 0.5).mean()) if len(measured) else None,
    }


def _auc(y: np.ndarray, p: np.ndarray) -> dict:
    both = 0 < y.sum() < len(y)
    return {
        "n": int(len(y)),
        "positives": int(y.sum()),
        "auc": float(roc_auc_score(y, p)) if both else None,
        "auc_ci95": bootstrap_auc_ci(y, p) if both else None,
    }


def finding_metrics(records: list[Record], findings: list[str], probabilities: np.ndarray) -> dict:
    """{finding: {"all": AUC summary, "among_disease": AUC summary}} for probabilities (n, k) in `findings`
    order: one finding against the rest over all images, and among the images labelled disease only."""
    disease = np.array([r.label == 1 for r in records])
    result = {}
    for i, finding in enumerate(findings):
        y = np.array([r.has_finding(finding) for r in records], int)
        result[finding] = {
            "all": _auc(y, probabilities[:, i]),
            "among_disease": _auc(y[disease], probabilities[disease, i]),
        }
    return result


def _cell(m: dict) -> str:
    return "n/a" if m["auc"] is None else f"{m['auc']:.3f} [{m['auc_ci95'][0]:.3f}, {m['auc_ci95'][1]:.3f}]"


def findings_table(findings: dict) -> str:
    """Markdown: one row per finding, AUC [95% CI] over all images and among disease images, served or hidden."""
    lines = ["| finding | served | positives | AUC, all images | AUC, among disease |", "|---|---|---|---|---|"]
    for name, m in findings["metrics"].items():
        served = "yes" if name in findings["served"] else "hidden"
        lines.append(
            f"| {name} | {served} | {m['all']['positives']} | {_cell(m['all'])} | {_cell(m['among_disease'])} |"
        )
    return "\n".join(lines) + "\n"
