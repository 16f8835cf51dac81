"""Train one model on an NIH-layout folder with a patient-wise split.

    python -m training.train --model cnn --data ../shared/data/nih-cxr14-subset

Early stopping, the learning-rate schedule, calibration and the decision threshold
all use the validation split; the test split is never looked at here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from models.calibration import PlattScaling, youden_threshold
from models.registry import MODEL_NAMES, WEIGHTS_DIR, builder, input_spec, save_weights
from training.data import load_arrays, load_or_create_split, load_records, split_report
from training.recipes import RECIPES, Recipe, augmentation_layers

log = logging.getLogger("training.train")

DEFAULT_SPLIT = Path(__file__).resolve().parent / "splits" / "nih-cxr14-subset-seed42.csv"
CACHE_DIR = Path("var") / "cache"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def class_weights(labels: np.ndarray) -> dict[int, float]:
    counts = np.bincount(labels.astype(int), minlength=2)
    return {c: float(len(labels) / (2 * counts[c])) for c in (0, 1)}


def make_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, augment, seed: int, shuffle: bool):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if augment is not None:
        dataset = dataset.map(lambda a, b: (augment(a, training=True), b), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def make_callbacks(recipe: Recipe, max_minutes: float | None, total_epochs: int) -> list:
    """EarlyStopping first (train() reads where it stopped), progress, the LR schedule, the time limit."""
    import keras

    from training.progress import TimeBudget, TqdmProgress

    mode = "max" if recipe.early_stopping_monitor.endswith("auc") else "min"
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor=recipe.early_stopping_monitor,
            mode=mode,
            patience=recipe.early_stopping_patience,
            restore_best_weights=True,
        ),
        TqdmProgress(total_epochs),
    ]
    if recipe.reduce_lr_patience:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=recipe.early_stopping_monitor, mode=mode, factor=0.5, patience=recipe.reduce_lr_patience
            )
        )
    if max_minutes:
        callbacks.append(TimeBudget(max_minutes * 60))
    return callbacks


def train(
    model_name: str,
    data_dir: Path,
    split_file: Path = DEFAULT_SPLIT,
    output_dir: Path = WEIGHTS_DIR,
    seed: int = 42,
    epochs: int | None = None,
    max_minutes: float | None = None,
    exclude_upsampled: bool = False,
    limit: int | None = None,
) -> dict:
    """Train, calibrate on validation, save weights + card.json; returns the card."""
    import keras

    keras.utils.set_random_seed(seed)
    recipe = RECIPES[model_name]
    size, channels = input_spec(model_name)

    all_records = load_records(data_dir)
    assignment = load_or_create_split(split_file, all_records, seed=seed)
    records = [r for r in all_records if not (exclude_upsampled and r.upsampled)]
    train_records = [r for r in records if assignment[r.image] == "train"][:limit]
    val_records = [r for r in records if assignment[r.image] == "validation"][:limit]
    report = split_report(records, assignment)
    log.info("data used: %s", json.dumps(report))

    x_train, y_train = load_arrays(data_dir, train_records, size, channels, CACHE_DIR)
    x_val, y_val = load_arrays(data_dir, val_records, size, channels, CACHE_DIR)

    model = builder(model_name)(input_shape=(size, size, channels))
    optimizer = (
        keras.optimizers.AdamW(recipe.learning_rate, weight_decay=recipe.weight_decay)
        if recipe.optimizer == "adamw"
        else keras.optimizers.Adam(recipe.learning_rate)
    )
    model.compile(optimizer=optimizer, loss="binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")])

    max_epochs = epochs or recipe.max_epochs
    train_data = make_dataset(x_train, y_train, recipe.batch_size, augmentation_layers(recipe.augmentation), seed, True)
    val_data = make_dataset(x_val, y_val, 64, None, seed, False)
    callbacks = make_callbacks(recipe, max_minutes, max_epochs)
    early_stopping = callbacks[0]
    started = time.perf_counter()
    history = model.fit(
        train_data,
        validation_data=val_data,
        epochs=max_epochs,
        class_weight=class_weights(y_train) if recipe.class_weighting else None,
        callbacks=callbacks,
        shuffle=False,  # make_dataset shuffles the training data itself; Keras cannot shuffle a tf.data.Dataset
        verbose=0,
    )
    training_seconds = time.perf_counter() - started
    epochs_run = len(history.history["loss"])
    if early_stopping.stopped_epoch > 0:
        stopped_by = "early stopping"
    elif max_minutes and epochs_run < max_epochs:
        stopped_by = f"time limit ({max_minutes:g} min)"
    else:
        stopped_by = "maximum epochs"

    raw_val = np.asarray(model.predict(x_val, batch_size=64, verbose=0)).reshape(-1)
    calibration = PlattScaling.fit(raw_val, y_val) if recipe.calibrate else PlattScaling()
    calibrated_val = calibration(raw_val)
    threshold = youden_threshold(calibrated_val, y_val) if recipe.threshold_rule == "youden" else 0.5

    model_dir = Path(output_dir) / model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    weights_path = model_dir / "weights.npz"
    save_weights(model, weights_path)
    digest = hashlib.sha256(weights_path.read_bytes()).hexdigest()
    from sklearn.metrics import roc_auc_score

    card = {
        "name": model_name,
        "version": f"{model_name}-{datetime.now(timezone.utc):%Y%m%d}-{digest[:8]}",
        "architecture": model.name,
        "parameters": int(model.count_params()),
        "input": {"size": size, "channels": channels, "preprocess": "models.preprocess.preprocess"},
        "threshold": threshold,
        "threshold_rule": recipe.threshold_rule,
        "calibration": calibration.to_dict() | ({} if recipe.calibrate else {"method": "none"}),
        "recipe": recipe.to_dict(),
        "seed": seed,
        "data": {
            "folder": Path(data_dir).name,
            "split_file": str(Path(split_file).name),
            "exclude_upsampled": exclude_upsampled,
            "splits": report,
        },
        "training": {
            "epochs_run": epochs_run,
            "best_epoch": early_stopping.best_epoch + 1,  # the restored weights, by the recipe's monitor
            "stopped_by": stopped_by,
            "seconds": round(training_seconds, 1),
            "machine": f"{cpu_name()}, {os.cpu_count()} cores, CPU only",
            "history": {k: [round(float(v), 4) for v in vals] for k, vals in history.history.items()},
        },
        "validation": {"auc": float(roc_auc_score(y_val, calibrated_val)), "n": int(len(y_val))},
        "weights_sha256": digest,
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (model_dir / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    log.info("saved %s (val AUC %.3f, %.0f s)", model_dir, card["validation"]["auc"], training_seconds)
    return card


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, choices=MODEL_NAMES)
    parser.add_argument("--data", required=True, type=Path, help="NIH-layout folder (images/ + Data_Entry_2017.csv)")
    parser.add_argument("--split-file", type=Path, default=DEFAULT_SPLIT, help="read if present, else created")
    parser.add_argument("--output", type=Path, default=WEIGHTS_DIR, help="weights folder (default models/weights)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--epochs", type=int, help="override the recipe's maximum epochs")
    parser.add_argument("--max-minutes", type=float, help="stop after the epoch that passes this wall time")
    parser.add_argument("--exclude-upsampled", action="store_true", help="leave out images upsampled from 64 px")
    parser.add_argument("--limit", type=int, help="use at most this many train and validation images (smoke runs)")
    multitask = parser.add_argument_group("multi-task training (training.multitask)")
    multitask.add_argument("--multitask", action="store_true", help="disease + per-finding heads, one backbone")
    multitask.add_argument("--source-balance", choices=("none", "sqrt", "full"), default="sqrt")
    multitask.add_argument("--no-border-augment", action="store_true", help="no collimation/marker augmentation")
    multitask.add_argument("--upsampled-weight", type=float, default=0.5, help="loss weight of 64-px images")
    multitask.add_argument("--init-weights", type=Path, help="fine-tune: start from this weights folder's model")
    multitask.add_argument("--learning-rate", type=float, help="override the recipe's learning rate")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.multitask:
        from training.train_multitask import train_multitask

        card = train_multitask(
            args.model,
            args.data,
            args.split_file,
            args.output,
            seed=args.seed,
            epochs=args.epochs,
            max_minutes=args.max_minutes,
            source_balance=args.source_balance,
            border=not args.no_border_augment,
            upsampled_weight=args.upsampled_weight,
            limit=args.limit,
            init_weights=args.init_weights,
            learning_rate=args.learning_rate,
        )
        print(json.dumps({k: card[k] for k in ("name", "version", "threshold", "validation")}, indent=2))
        return
    card = train(
        args.model,
        args.data,
        split_file=args.split_file,
        output_dir=args.output,
        seed=args.seed,
        epochs=args.epochs,
        max_minutes=args.max_minutes,
        exclude_upsampled=args.exclude_upsampled,
        limit=args.limit,
    )
    print(json.dumps({k: card[k] for k in ("name", "version", "threshold", "validation", "training")}, indent=2))


if __name__ == "__main__":
    main()
