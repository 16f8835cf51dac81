"""Does border augmentation alone pull the Grad-CAM mass off the image edge? A short fine-tune, decided on
validation only.

    python -m training.border_trial --data ../shared/data/nih-cxr14-subset --candidate var/candidates/border \
        [--model unet] [--max-minutes 15] [--output models/weights/border_trial.json]

The served model (disease only, single task) is fine-tuned from its own weights with its own recipe's
augmentation plus `training.multitask.border_augment` (constant strips of random width up to 15% of the side at
the four edges, and a bright or dark marker in the outer band, each on half the images), AdamW at 3e-4, early
stopping on the validation AUC (patience 4, best weights restored), at most `--max-minutes`. The multi-task
trial used the same augmentation together with finding heads and source balancing, and its border share rose;
this isolates the augmentation. The candidate is Platt-calibrated on the native validation images, as the
served model is (`training.recalibrate`), and both are evaluated by `training.evaluate` on them.

The rule, fixed before the fine-tune ran: the candidate replaces the served weights only if its native
validation AUC gain has a paired bootstrap 95% CI above 0 AND its border share is at least 0.05 lower; then
calibration, thresholds, ensemble, cards and their tests are redone. Otherwise it is recorded and not served.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from models.calibration import PlattScaling, youden_threshold
from models.registry import WEIGHTS_DIR, input_spec, read_card, save_weights, trained_keras
from training.data import load_arrays, load_or_create_split, load_records
from training.evaluate import evaluate_records
from training.recipes import RECIPES, augmentation_layers
from training.train import CACHE_DIR, DEFAULT_SPLIT, class_weights, cpu_name, make_dataset
from training.upsampled_check import paired_auc_difference_ci

BORDER_TRIAL_JSON = "border_trial.json"
LEARNING_RATE, PATIENCE, MIN_BORDER_DROP = 3e-4, 4, 0.05


def finetune(data_dir: Path, model_name: str, candidate_dir: Path, max_minutes: float, split_file: Path) -> dict:
    """Fine-tune the served model with border augmentation; write its weights and card into candidate_dir."""
    import keras

    from training.multitask import border_augment
    from training.progress import TimeBudget

    seed = 42
    keras.utils.set_random_seed(seed)
    recipe, (size, channels) = RECIPES[model_name], input_spec(model_name)
    records = load_records(data_dir)
    assignment = load_or_create_split(split_file, records, seed=seed)
    x_train, y_train = load_arrays(
        data_dir, [r for r in records if assignment[r.image] == "train"], size, channels, CACHE_DIR
    )
    val = [r for r in records if assignment[r.image] == "validation"]
    x_val, y_val = load_arrays(data_dir, val, size, channels, CACHE_DIR)
    native = np.array([not r.upsampled for r in val])

    model = trained_keras(model_name)
    model.compile(
        optimizer=keras.optimizers.AdamW(LEARNING_RATE, weight_decay=recipe.weight_decay),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc")],
    )
    layers = augmentation_layers(recipe.augmentation)

    def augment(x, training: bool = True):
        return border_augment(layers(x, training=training), seed)

    stopping = keras.callbacks.EarlyStopping(
        monitor="val_auc", mode="max", patience=PATIENCE, restore_best_weights=True
    )
    started = time.perf_counter()
    history = model.fit(
        make_dataset(x_train, y_train, recipe.batch_size, augment, seed, True),
        validation_data=make_dataset(x_val, y_val, 64, None, seed, False),
        epochs=recipe.max_epochs,
        class_weight=class_weights(y_train),
        callbacks=[stopping, TimeBudget(max_minutes * 60)],
        shuffle=False,
        verbose=0,
    )
    seconds = time.perf_counter() - started
    raw = np.asarray(model.predict(x_val[native], batch_size=64, verbose=0)).reshape(-1)
    calibration = PlattScaling.fit(raw, y_val[native])
    folder = Path(candidate_dir) / model_name
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(model, folder / "weights.npz")
    digest = hashlib.sha256((folder / "weights.npz").read_bytes()).hexdigest()
    epochs_run = len(history.history["loss"])
    served = {k: v for k, v in read_card(model_name).items() if k not in ("test", "test_native", "validation")}
    card = served | {
        "version": f"{model_name}-border-{datetime.now(timezone.utc):%Y%m%d}-{digest[:8]}",
        "threshold": youden_threshold(calibration(raw), y_val[native]),
        "calibration": calibration.to_dict() | {"fitted_on": f"native-resolution validation images (n={native.sum()})"},
        "training": {
            "epochs_run": epochs_run,
            "best_epoch": stopping.best_epoch + 1,
            "stopped_by": "early stopping" if stopping.stopped_epoch > 0 else "epochs or time limit",
            "seconds": round(seconds, 1),
            "machine": f"{cpu_name()}, {os.cpu_count()} cores (shared), CPU only",
            "history": {k: [round(float(v), 4) for v in vals] for k, vals in history.history.items()},
        },
        "weights_sha256": digest,
    }
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def _summary(results: dict, model: str) -> dict:
    m = results[model]
    return {
        "auc": m["auc"],
        "auc_ci95": m["auc_ci95"],
        "ece": m["calibration"]["ece"],
        "brier": m["calibration"]["brier"],
        "border_share": m["gradcam_border"]["mean"],
        "border_over_half": m["gradcam_border"]["share_of_images_over_half"],
    }


def trial(data_dir: Path, model: str, candidate_dir: Path, card: dict, split_file: Path = DEFAULT_SPLIT) -> dict:
    runs = {}
    for role, folder in (("served", WEIGHTS_DIR), ("candidate", candidate_dir)):
        results, probabilities, labels, _ = evaluate_records(
            data_dir, [model], split_file, "validation", folder, native_only=True
        )
        runs[role] = (_summary(results, model), probabilities[model])
    (served, p_served), (candidate, p_candidate) = runs["served"], runs["candidate"]
    ci = paired_auc_difference_ci(labels, p_served, p_candidate)
    auc_gain = ci is not None and ci[0] > 0
    border_drop = candidate["border_share"] <= served["border_share"] - MIN_BORDER_DROP
    low = f"{ci[0]:+.3f}" if ci else "n/a"
    reasons = [] if auc_gain else [f"AUC {candidate['auc'] - served['auc']:+.3f}, CI lower bound {low} not above 0"]
    reasons += [] if border_drop else [f"border share {served['border_share']:.3f} -> {candidate['border_share']:.3f}"]
    return {
        "model": model,
        "candidate_version": card["version"],
        "learning_rate": LEARNING_RATE,
        "training": {k: card["training"][k] for k in ("epochs_run", "best_epoch", "stopped_by", "seconds", "machine")},
        "val_auc_curve": card["training"]["history"].get("val_auc", []),
        "validation_native": {"n": len(labels), "disease": int(labels.sum()), "served": served, "candidate": candidate},
        "auc_difference_ci95": ci,
        "decision": {"serve": auc_gain and border_drop, "reasons": reasons or ["meets the rule"]},
    }


def verdict(result: dict) -> str:
    """The decision's reasons, from the numbers (what the rule compares)."""
    v, ci = result["validation_native"], result["auc_difference_ci95"]
    served, candidate = v["served"], v["candidate"]
    drop = served["border_share"] - candidate["border_share"]
    return (
        f"AUC gain {candidate['auc'] - served['auc']:+.3f}, CI lower bound "
        + (f"{ci[0]:+.3f}" if ci else "n/a")
        + (" above 0" if ci and ci[0] > 0 else " not above 0")
        + f"; border share down by {drop:.3f} (rule: at least {MIN_BORDER_DROP})"
    )


def border_text(result: dict) -> str:
    v, t = result["validation_native"], result["training"]
    ci = result["auc_difference_ci95"]
    rows = "\n".join(
        f"| {role} | {m['auc']:.3f} [{m['auc_ci95'][0]:.3f}, {m['auc_ci95'][1]:.3f}] | {m['ece']:.3f} "
        f"| {m['brier']:.3f} | {m['border_share']:.3f} ({m['border_over_half']:.0%} of images over 0.5) |"
        for role, m in (("served", v["served"]), ("border fine-tune", v["candidate"]))
    )
    curve = ", ".join(f"{a:.3f}" for a in result["val_auc_curve"])
    return (
        f"\n**Border augmentation alone** (`python -m training.border_trial`): the served `{result['model']}` "
        f"fine-tuned from its weights (single task, AdamW {result['learning_rate']:g}) with its augmentation plus "
        "random edge strips and markers (`training.multitask.border_augment`), Platt-calibrated on the native "
        f"validation images as served. {t['epochs_run']} epochs in {t['seconds'] / 60:.1f} min on {t['machine']}, "
        f"best epoch {t['best_epoch']}, stopped by {t['stopped_by']} (validation AUC per epoch, all validation "
        f"images: {curve}). Rule fixed before it ran: served only if the native validation AUC gain's paired 95% "
        f"CI is above 0 and the border share drops by at least {MIN_BORDER_DROP}. Native validation images "
        f"(n={v['n']}, {v['disease']} disease):\n\n| model | AUC [95% CI] | ECE | Brier | Grad-CAM border share |\n"
        f"|---|---|---|---|---|\n{rows}\n\nAUC difference {v['candidate']['auc'] - v['served']['auc']:+.3f} "
        f"[{ci[0]:+.3f}, {ci[1]:+.3f}]. **Decision: {'served' if result['decision']['serve'] else 'not served'}**"
        f" — {verdict(result)}.\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--candidate", required=True, type=Path, help="folder for the fine-tuned weights")
    parser.add_argument("--model", default="unet", choices=("cnn", "unet"))
    parser.add_argument("--max-minutes", type=float, default=15.0)
    parser.add_argument("--split-file", type=Path, default=DEFAULT_SPLIT)
    parser.add_argument("--output", type=Path, default=WEIGHTS_DIR / BORDER_TRIAL_JSON)
    args = parser.parse_args(argv)
    card = finetune(args.data, args.model, args.candidate, args.max_minutes, args.split_file)
    result = trial(args.data, args.model, args.candidate, card, args.split_file)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(border_text(result))


if __name__ == "__main__":
    main()
