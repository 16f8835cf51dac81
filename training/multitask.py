"""End-to-end multi-task training: one backbone, a disease head and one head per NIH finding, trained together.

    python -m training.train --model cnn --multitask --output var/candidates/multitask \
        --data ../shared/data/nih-cxr14-subset [--source-balance sqrt] [--border-augment] [--upsampled-weight 0.5]

The backbone is the architecture's own builder (models.architectures), so the saved disease model has exactly
the served layout; the finding heads are one Dense layer on the same pooled features and are written as
`findings/heads.npz` in the layout models.findings reads (mean 0, scale 1). All heads come from one forward pass.

Loss: binary cross-entropy per output column (disease, then each finding), each image weighted per column so
that within every column positives and negatives weigh the same (class weighting) and, with source balancing,
each source weighs the same within each class: w = n / (cells x count(source, y)) ** strength, where strength is
1 ("full"), 0.5 ("sqrt") or 0 ("none"), clipped to [0.1, 10] and scaled to mean 1 per column.

Upsampled images (reached us at 64 px): the rule was fixed before any validation number was seen: they train
with `upsampled_weight` (default 0.5), and model selection, calibration and thresholds use the native-resolution
validation images only, because the targets and the served inputs are native images.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from training.data import Record

log = logging.getLogger("training.multitask")

MIN_POSITIVES = 100  # a finding gets a head when it has at least this many images (as training.findings)
STRENGTHS = {"none": 0.0, "sqrt": 0.5, "full": 1.0}
BORDER_FRACTION = 0.15  # the outer band the Grad-CAM border share is measured on


def head_findings(records: list[Record], min_positives: int = MIN_POSITIVES) -> list[str]:
    counts: dict[str, int] = {}
    for r in records:
        for finding in r.findings.split("|"):
            if finding != "No Finding":
                counts[finding] = counts.get(finding, 0) + 1
    frequent = [f for f, n in counts.items() if n >= min_positives]
    return sorted(frequent, key=lambda f: (-counts[f], f))


def label_matrix(records: list[Record], findings: list[str]) -> np.ndarray:
    """(n, 1 + k): disease, then each finding (0/1)."""
    rows = [[r.label, *(int(r.has_finding(f)) for f in findings)] for r in records]
    return np.array(rows, dtype=np.float32)


def loss_weights(
    records: list[Record], labels: np.ndarray, strength: float, upsampled_weight: float = 0.5
) -> np.ndarray:
    """(n, columns) per-image, per-column loss weights: class-balanced and source-balanced (see module doc)."""
    sources = np.array([r.source or "?" for r in records])
    weights = np.ones_like(labels)
    for column in range(labels.shape[1]):
        y = labels[:, column]
        cells = {(s, v): int(((sources == s) & (y == v)).sum()) for s in set(sources) for v in (0.0, 1.0)}
        cells = {key: count for key, count in cells.items() if count}
        for v in (0.0, 1.0):
            in_class = y == v
            class_weight = len(y) / (2 * max(int(in_class.sum()), 1))
            sources_in_class = [s for (s, value) in cells if value == v]
            for s in sources_in_class:
                mask = in_class & (sources == s)
                source_factor = (in_class.sum() / len(sources_in_class)) / cells[(s, v)]
                weights[mask, column] = class_weight * source_factor**strength
        weights[:, column] = np.clip(weights[:, column], 0.1, 10.0)
    upsampled = np.array([r.upsampled for r in records])
    weights[upsampled] *= upsampled_weight
    return (weights / weights.mean(axis=0, keepdims=True)).astype(np.float32)


def weighted_bce(y_true_and_weight, y_pred):
    """Mean over images and columns of weight x BCE; y_true carries [labels | weights] side by side."""
    from keras import ops

    columns = ops.shape(y_pred)[-1]
    y_true, weight = y_true_and_weight[:, :columns], y_true_and_weight[:, columns:]
    p = ops.clip(y_pred, 1e-6, 1 - 1e-6)
    bce = -(y_true * ops.log(p) + (1 - y_true) * ops.log(1 - p))
    return ops.mean(weight * bce)


def border_augment(batch, seed: int):
    """Collimation and markers: per image, with probability 1/2 each, constant strips of random width (up to
    BORDER_FRACTION of the side) at the four edges, and a bright or dark rectangle (4-14 px) in the outer band."""
    import tensorflow as tf

    n, size = tf.shape(batch)[0], tf.shape(batch)[1]
    side = tf.cast(size, tf.float32)
    grid = tf.cast(tf.range(size), tf.float32)
    yy, xx = grid[None, :, None, None], grid[None, None, :, None]

    def uniform(shape, low, high):
        return tf.random.uniform(shape, low, high)

    widths = uniform((4, n, 1, 1, 1), 0.0, BORDER_FRACTION) * side
    strips = (yy < widths[0]) | (yy >= side - widths[1]) | (xx < widths[2]) | (xx >= side - widths[3])
    strips &= uniform((n, 1, 1, 1), 0, 1) < 0.5
    fill = uniform((n, 1, 1, 1), 0.0, 1.0)
    out = tf.where(strips, fill, batch)

    band = BORDER_FRACTION * side
    width, height = tf.minimum(uniform((n, 1, 1, 1), 4.0, 14.0), band), uniform((n, 1, 1, 1), 4.0, 14.0)
    on_right = uniform((n, 1, 1, 1), 0, 1) < 0.5
    x0 = uniform((n, 1, 1, 1), 0, 1) * (band - width) + tf.where(on_right, side - band, 0.0)
    y0 = uniform((n, 1, 1, 1), 0, 1) * (side - height)
    marker = (xx >= x0) & (xx < x0 + width) & (yy >= y0) & (yy < y0 + height)
    marker &= uniform((n, 1, 1, 1), 0, 1) < 0.5
    shade = tf.where(uniform((n, 1, 1, 1), 0, 1) < 0.7, 1.0, 0.0)
    return tf.where(marker, shade, out)


class ValidationScore:
    """Disease AUC and each finding's AUC among the disease images, on the (native) validation images."""

    def __init__(self, x: np.ndarray, labels: np.ndarray, findings: list[str]):
        self.x, self.labels, self.findings = x, labels, findings

    def __call__(self, model) -> dict:
        p = np.asarray(model.predict(self.x, batch_size=64, verbose=0))
        disease = self.labels[:, 0] == 1
        among = {}
        for i, f in enumerate(self.findings, start=1):
            y = self.labels[disease, i]
            among[f] = float(roc_auc_score(y, p[disease, i])) if 0 < y.sum() < len(y) else float("nan")
        y = self.labels[:, 0]
        disease_auc = float(roc_auc_score(y, p[:, 0])) if 0 < y.sum() < len(y) else float("nan")
        measured = [a for a in among.values() if np.isfinite(a)]
        findings_mean = float(np.mean(measured)) if measured else float("nan")
        return {
            "disease_auc": disease_auc,
            "findings_among_disease_auc": findings_mean,
            "per_finding": among,
            "score": (disease_auc + findings_mean) / 2,
        }


def make_callback(score: ValidationScore, history: list, history_path: Path | None = None):
    import keras

    class Score(keras.callbacks.Callback):
        """Computes the validation score into the logs (as val_score) before EarlyStopping reads them."""

        def on_epoch_end(self, epoch, logs=None):
            started = time.perf_counter()
            result = score(self.model)
            logs = logs if logs is not None else {}
            logs["val_score"] = result["score"]
            history.append({"epoch": epoch + 1, "loss": float(logs.get("loss", np.nan)), **result})
            log.info(
                "epoch %d loss %.4f val disease AUC %.3f findings-among-disease %.3f score %.3f (%.0f s eval)",
                epoch + 1,
                logs.get("loss", np.nan),
                result["disease_auc"],
                result["findings_among_disease_auc"],
                result["score"],
                time.perf_counter() - started,
            )
            if history_path is not None:
                save_history(history_path, history)

    return Score()


def build_multitask(name: str, findings: list[str], input_shape: tuple[int, int, int]):
    """(training model with outputs [disease | findings] concatenated, the backbone in served layout, the
    finding Dense layer)."""
    import keras
    from keras import layers

    from models.registry import builder

    backbone = builder(name)(input_shape=input_shape)
    pooled = backbone.layers[-1].input
    finding_layer = layers.Dense(len(findings), activation="sigmoid", name="finding_heads")
    outputs = layers.Concatenate(name="all_heads")([backbone.output, finding_layer(pooled)])
    return keras.Model(backbone.input, outputs, name=f"{name}_multitask"), backbone, finding_layer


def save_history(path: Path, history: list) -> None:
    path.write_text(json.dumps(history, indent=1) + "\n")
