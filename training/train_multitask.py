"""The multi-task training run (training.multitask has the parts): train, calibrate and save on validation only.

Writes, under the output folder, `<model>/weights.npz` + `card.json` (the disease model in its served layout,
readable by models.registry), `findings/heads.npz` + `card.json` (models.findings' layout) and
`<model>/history.json` (the validation curve, rewritten after every epoch so a stopped run still has it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from models.calibration import PlattScaling, logit, youden_threshold
from models.findings import FINDINGS_FOLDER
from models.operating_point import threshold_for_specificity
from models.registry import FEATURES_OUTPUT, input_spec, load_weights, read_card, save_weights
from training.data import load_arrays, load_or_create_split, load_records, split_report
from training.multitask import (
    MIN_POSITIVES,
    STRENGTHS,
    ValidationScore,
    border_augment,
    build_multitask,
    head_findings,
    label_matrix,
    loss_weights,
    make_callback,
    weighted_bce,
)
from training.recipes import IMPROVED_RECIPE, augmentation_layers

log = logging.getLogger("training.train_multitask")

FINDING_SPECIFICITY = 0.90  # each finding's operating point, chosen on validation


def train_multitask(
    model_name: str,
    data_dir: Path,
    split_file: Path,
    output_dir: Path,
    seed: int = 42,
    epochs: int | None = None,
    max_minutes: float | None = None,
    source_balance: str = "sqrt",
    border: bool = True,
    upsampled_weight: float = 0.5,
    limit: int | None = None,
    cache_dir: Path = Path("var") / "cache",
    init_weights: Path | None = None,
    learning_rate: float | None = None,
    min_positives: int = MIN_POSITIVES,
) -> dict:
    import keras
    import tensorflow as tf

    from training.progress import TimeBudget

    keras.utils.set_random_seed(seed)
    recipe = IMPROVED_RECIPE
    size, channels = input_spec(model_name)
    records = load_records(data_dir)
    assignment = load_or_create_split(split_file, records, seed=seed)
    findings = head_findings(records, min_positives)
    train_records = [r for r in records if assignment[r.image] == "train"][:limit]
    val_records = [r for r in records if assignment[r.image] == "validation" and not r.upsampled][:limit]
    x_train, _ = load_arrays(data_dir, train_records, size, channels, cache_dir)
    x_val, _ = load_arrays(data_dir, val_records, size, channels, cache_dir)
    y_train, y_val = label_matrix(train_records, findings), label_matrix(val_records, findings)
    weights = loss_weights(train_records, y_train, STRENGTHS[source_balance], upsampled_weight)

    model, backbone, finding_layer = build_multitask(model_name, findings, (size, size, channels))
    if init_weights is not None:  # fine-tune: start the backbone and disease head from a trained model's weights
        load_weights(backbone, Path(init_weights) / model_name / "weights.npz")
    rate = learning_rate or recipe.learning_rate
    model.compile(optimizer=keras.optimizers.AdamW(rate, weight_decay=recipe.weight_decay), loss=weighted_bce)
    augment = augmentation_layers(recipe.augmentation)

    def augment_batch(x, y):
        x = augment(x, training=True)
        return (border_augment(x, seed) if border else x), y

    train_data = (
        tf.data.Dataset.from_tensor_slices((x_train, np.concatenate([y_train, weights], axis=1)))
        .shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True)
        .batch(recipe.batch_size)
        .map(augment_batch, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    model_dir = Path(output_dir) / model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    history: list[dict] = []
    early_stopping = keras.callbacks.EarlyStopping(
        monitor="val_score", mode="max", patience=recipe.early_stopping_patience, restore_best_weights=True
    )
    callbacks = [
        make_callback(ValidationScore(x_val, y_val, findings), history, model_dir / "history.json"),
        early_stopping,
        keras.callbacks.ReduceLROnPlateau(monitor="val_score", mode="max", factor=0.5, patience=3),
    ]
    if max_minutes:
        callbacks.append(TimeBudget(max_minutes * 60))
    max_epochs = epochs or recipe.max_epochs
    started = time.perf_counter()
    model.fit(train_data, epochs=max_epochs, callbacks=callbacks, verbose=0, shuffle=False)  # the dataset shuffles
    seconds = time.perf_counter() - started
    best = max(history, key=lambda h: h["score"])

    raw = np.asarray(model.predict(x_val, batch_size=64, verbose=0))
    both = 0 < y_val[:, 0].sum() < len(y_val)
    disease_platt = PlattScaling.fit(raw[:, 0], y_val[:, 0]) if both else PlattScaling()
    disease_threshold = youden_threshold(disease_platt(raw[:, 0]), y_val[:, 0]) if both else 0.5
    weights_path = model_dir / "weights.npz"
    save_weights(backbone, weights_path)
    digest = hashlib.sha256(weights_path.read_bytes()).hexdigest()
    report = split_report(records, assignment)
    card = {
        "name": model_name,
        "version": f"{model_name}-mt-{datetime.now(timezone.utc):%Y%m%d}-{digest[:8]}",
        "architecture": backbone.name,
        "parameters": int(model.count_params()),
        "input": {"size": size, "channels": channels, "preprocess": "models.preprocess.preprocess"},
        "threshold": disease_threshold,
        "threshold_rule": "youden",
        "calibration": disease_platt.to_dict()
        | {
            "fitted_on": f"native-resolution validation images (n={len(y_val)})",
            "prevalence": float(y_val[:, 0].mean()),
        },
        "recipe": recipe.to_dict()
        | {
            "multitask": True,
            "findings": findings,
            "source_balance": source_balance,
            "border_augment": border,
            "upsampled_weight": upsampled_weight,
            "learning_rate": rate,
            "init_weights": read_card(model_name, init_weights)["version"] if init_weights else None,
        },
        "seed": seed,
        "data": {
            "folder": Path(data_dir).name,
            "split_file": Path(split_file).name,
            "exclude_upsampled": False,
            "selection_on": "native-resolution validation images",
            "splits": report,
        },
        "training": {
            "epochs_run": len(history),
            "best_epoch": best["epoch"],
            "seconds": round(seconds, 1),
            "stopped_by": "early stopping" if early_stopping.stopped_epoch > 0 else "epochs or time limit",
            "history": history,
        },
        "validation": {
            "auc": float(roc_auc_score(y_val[:, 0], raw[:, 0])) if both else None,
            "n": len(y_val),
            "native_only": True,
        },
        "weights_sha256": digest,
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (model_dir / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    save_finding_heads(
        Path(output_dir), card, finding_layer, findings, raw[:, 1:], y_val[:, 1:], train_records, val_records
    )
    log.info("saved %s: validation disease AUC %s, best epoch %d", model_dir, card["validation"]["auc"], best["epoch"])
    return card


def save_finding_heads(output_dir, card, finding_layer, findings, raw, labels, train_records, val_records) -> None:
    """The finding Dense layer as models.findings heads: z = pooled @ coef + intercept, Platt on z, thresholds at
    FINDING_SPECIFICITY on validation."""
    kernel, bias = (np.asarray(w, np.float64) for w in finding_layer.get_weights())
    platts = [
        PlattScaling.fit(raw[:, i], labels[:, i]) if 0 < labels[:, i].sum() < len(labels) else PlattScaling()
        for i in range(len(findings))
    ]
    calibrated = np.stack([platts[i](raw[:, i]) for i in range(len(findings))], axis=1)
    points = [
        threshold_for_specificity(labels[:, i], calibrated[:, i], FINDING_SPECIFICITY) for i in range(len(findings))
    ]
    folder = output_dir / FINDINGS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "mean": np.zeros(kernel.shape[0]),
        "scale": np.ones(kernel.shape[0]),
        "coef": kernel,
        "intercept": bias,
        "platt_slope": np.array([p.slope for p in platts]),
        "platt_intercept": np.array([p.intercept for p in platts]),
        "threshold": np.array([(pt or {"threshold": 0.5})["threshold"] for pt in points]),
    }
    np.savez(folder / "heads.npz", **{k: v.astype(np.float32) for k, v in arrays.items()})
    digest = hashlib.sha256((folder / "heads.npz").read_bytes()).hexdigest()
    metrics = {
        f: {
            "positives": {
                "train": int(sum(r.has_finding(f) for r in train_records)),
                "validation": int(labels[:, i].sum()),
            },
            "validation_auc": float(roc_auc_score(labels[:, i], logit(raw[:, i]))) if points[i] else None,
            "operating_point": points[i],
        }
        for i, f in enumerate(findings)
    }
    heads_card = {
        "name": "findings",
        "version": f"findings-mt-{datetime.now(timezone.utc):%Y%m%d}-{digest[:8]}",
        "feature_models": [card["name"]],
        "feature_model_versions": {card["name"]: card["version"]},
        "feature_output": FEATURES_OUTPUT,
        "trained": "end to end with the disease head (training.multitask)",
        "findings": findings,
        "served": [],  # decided by training.validate_findings on validation and test
        "hidden": findings,
        "metrics": metrics,
        "data": {"split_file": card["data"]["split_file"]},
        "calibration_images": int(len(labels)),
        "calibration_disease_rate": card["calibration"]["prevalence"],
        "heads_sha256": digest,
        "trained_at": card["trained_at"],
    }
    (folder / "card.json").write_text(json.dumps(heads_card, indent=2) + "\n")
