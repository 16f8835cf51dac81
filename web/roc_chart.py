"""The ROC chart of a job's evaluation, drawn by matplotlib as SVG.

It uses a `matplotlib.figure.Figure` directly, never pyplot: no GUI backend and no global figure state, so it
is safe in a threaded web server (matplotlib's own advice for web apps).
"""

from __future__ import annotations

import io

import numpy as np


def draw_roc(
    curves: dict[str, tuple[np.ndarray, np.ndarray, float, tuple[float, float]]],
    target: float,
    colours: dict[str, str] | None = None,
) -> str:
    """One ROC curve per model (false positive rate, sensitivity, AUC, operating point at the served threshold), in
    each model's colour from the catalogue (`colours`)."""
    colours = colours or {}
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.2, 5), dpi=100)
    axes = figure.subplots()
    for name, (fpr, tpr, auc, (op_fpr, op_tpr)) in curves.items():
        colour = colours.get(name)
        axes.plot(fpr, tpr, color=colour, lw=1.8, label=f"{name}  AUC {auc:.3f}")
        axes.plot([op_fpr], [op_tpr], "o", color=colour, ms=6)
    axes.plot([0, 1], [0, 1], ls="--", lw=0.8, color="#9ca3af")
    axes.axhline(target, ls=":", lw=0.8, color="#6b7280")
    axes.text(0.99, target - 0.035, f"{target:.0%} sensitivity", ha="right", fontsize=8, color="#6b7280")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.set_xlabel("1 - specificity (false positive rate)")
    axes.set_ylabel("sensitivity (true positive rate)")
    title = "ROC against your labels" if curves else "ROC: needs labelled images of both classes with predictions"
    axes.set_title(title, fontsize=10)
    if curves:
        axes.legend(loc="lower right", fontsize=9, title="dot: served threshold", title_fontsize=8)
    axes.grid(alpha=0.3)
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    return buffer.getvalue()
