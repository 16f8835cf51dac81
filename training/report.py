"""ROC, calibration and confusion-matrix plots (matplotlib, scikit-learn's displays)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.calibration import CalibrationDisplay  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, roc_curve  # noqa: E402


def write_report(out_dir: Path, results: dict, probabilities: dict[str, np.ndarray], labels: np.ndarray) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    fig, ax = plt.subplots(figsize=(6, 6))
    for name, p in probabilities.items():
        false_positive_rate, true_positive_rate, _ = roc_curve(labels, p)
        ax.plot(false_positive_rate, true_positive_rate, label=f"{name} (AUC {results[name]['auc']:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="1 - specificity (false positive rate)", ylabel="sensitivity (true positive rate)")
    ax.legend(loc="lower right")
    ax.set_title(f"ROC, disease vs No Finding (n={len(labels)})")
    written.append(_save(fig, out_dir / "roc.png"))

    fig, ax = plt.subplots(figsize=(6, 6))
    for name, p in probabilities.items():
        ece = results[name]["calibration"]["ece"] if "calibration" in results[name] else None
        label = name if ece is None else f"{name} (ECE {ece:.3f})"
        CalibrationDisplay.from_predictions(labels, p, n_bins=10, name=label, ax=ax)
    ax.set_title("Calibration (reliability diagram)")
    written.append(_save(fig, out_dir / "calibration.png"))

    fig, axes = plt.subplots(1, len(probabilities), figsize=(3.6 * len(probabilities), 3.6), squeeze=False)
    for ax, (name, p) in zip(axes[0], probabilities.items()):
        predicted = (p >= results[name]["threshold"]).astype(int)
        ConfusionMatrixDisplay.from_predictions(
            labels, predicted, display_labels=["healthy", "disease"], ax=ax, colorbar=False
        )
        ax.set_title(f"{name} @ {results[name]['threshold']:.2f}")
    written.append(_save(fig, out_dir / "confusion.png"))
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
