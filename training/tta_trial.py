"""Test-time augmentation (TTA) trial for the served disease models, decided on validation only.

    python -m training.tta_trial --data ../shared/data/nih-cxr14-subset [--with-test]
        [--output models/weights/tta_trial.json]

Each native-resolution validation image goes through `models.preprocess.preprocess` once; the model then sees
VIEWS of that input: itself, shifted 4 px (3% of the side) left, right, up and down, and zoomed in and out by
5% about the centre (black fill, like the padding; inside the training augmentation's 6% shifts and 10% zoom).
No flips: a radiograph has a handedness. The disease logits (before the served Platt calibration) are averaged
over the views, then calibrated as served; each view's Grad-CAM map is mapped back to the original frame and
the maps averaged, so the border share is that of the map a reader would see.

The rule, fixed before any TTA number was seen: TTA helps a model (cnn, unet, ensemble) when, on the native
validation images, its AUC gain has a paired bootstrap 95% CI with lower bound above 0, its ECE is at most
0.01 worse and its border share (members) at most 0.02 worse. Serving turns TTA on only if it helps all three,
with its cost (inference ms per image, TTA against plain, measured in the same run) stated; otherwise it stays
off. `--with-test` adds the same numbers on native test images, as information; they never enter the decision.
The JSON becomes the "What we tried" entry of the cnn and unet cards (training/tried_card.py).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import affine_transform
from sklearn.metrics import roc_auc_score

from models.calibration import logit
from models.gradcam import level_maps, upsample
from models.metrics import bootstrap_auc_ci
from models.preprocess import preprocess
from models.registry import ENSEMBLE_MEMBERS, WEIGHTS_DIR, Ensemble, LoadedModel, load_model
from training.evaluate import decode_all, select_records
from training.train import DEFAULT_SPLIT, cpu_name
from training.trust import border_shares, calibration_summary
from training.upsampled_check import paired_auc_difference_ci

TTA_JSON = "tta_trial.json"
SHIFT_PX, ZOOM = 4.0, 0.05
# (name, shift down in px, shift right in px, scale): the output pixel o shows the input at (o - c - shift) / scale + c
VIEWS = (
    ("identity", 0.0, 0.0, 1.0),
    ("right", 0.0, SHIFT_PX, 1.0),
    ("left", 0.0, -SHIFT_PX, 1.0),
    ("down", SHIFT_PX, 0.0, 1.0),
    ("up", -SHIFT_PX, 0.0, 1.0),
    ("zoom in", 0.0, 0.0, 1.0 + ZOOM),
    ("zoom out", 0.0, 0.0, 1.0 - ZOOM),
)
MAX_ECE_LOSS, MAX_BORDER_LOSS = 0.01, 0.02
BATCH = 64


def warp(plane: np.ndarray, down: float, right: float, scale: float, inverse: bool = False) -> np.ndarray:
    """One (side, side) plane through a view (or, with inverse, a map in the view's frame back to the original)."""
    c = (plane.shape[0] - 1) / 2.0
    shift = np.array([down, right])
    if inverse:  # original q shows the view at scale * (q - c) + c + shift
        return affine_transform(plane, np.eye(2) * scale, offset=c + shift - scale * c, order=1, cval=0.0)
    return affine_transform(plane, np.eye(2) / scale, offset=c - (c + shift) / scale, order=1, cval=0.0)


def view_batch(batch: np.ndarray, view: tuple) -> np.ndarray:
    _, down, right, scale = view
    if (down, right, scale) == (0.0, 0.0, 1.0):
        return batch
    out = np.empty_like(batch)
    for i in range(batch.shape[0]):
        for k in range(batch.shape[-1]):
            out[i, :, :, k] = warp(batch[i, :, :, k], down, right, scale)
    return out


def run_model(model: LoadedModel, inputs: np.ndarray) -> dict:
    """Raw logits per view (views, n), the back-mapped Grad-CAM maps averaged (plain and TTA), per-level border
    shares of the plain maps, and the seconds spent on plain inference and on TTA (views + forward passes)."""
    model.predict_all(inputs[:1])  # warm-up
    logits, plain_maps, tta_maps, levels = [], [], [], []
    seconds = {"plain": 0.0, "tta": 0.0}
    for start in range(0, len(inputs), BATCH):
        batch = inputs[start : start + BATCH]
        per_view, maps = [], []
        for view in VIEWS:
            started = time.perf_counter()
            outputs = model.predict_all(view_batch(batch, view))
            spent = time.perf_counter() - started
            seconds["tta"] += spent
            if view[0] == "identity":
                seconds["plain"] += spent
            per_view.append(logit(model.raw_probabilities(outputs)))
            if model.has_heatmaps:
                heat = model.heatmaps(outputs)
                maps.append(np.stack([warp(h, *view[1:], inverse=True) for h in heat]))
                if view[0] == "identity":
                    plain_maps.append(heat)
                    features = [outputs[k] for k in sorted(o for o in outputs if o.startswith("features_"))]
                    per_level = level_maps(features, model.head)
                    levels.append(
                        [border_shares(np.stack([upsample(m, model.input_size) for m in lv])) for lv in per_level]
                    )
        logits.append(np.stack(per_view))
        if maps:
            tta_maps.append(np.mean(maps, axis=0))
    result = {"logits": np.concatenate(logits, axis=1), "seconds": seconds}
    if plain_maps:
        result["border"] = {
            "plain": border_shares(np.concatenate(plain_maps)),
            "tta": border_shares(np.concatenate(tta_maps)),
            "levels": [np.concatenate([batch[i] for batch in levels]) for i in range(len(levels[0]))],
        }
    return result


def _summary(labels: np.ndarray, probability: np.ndarray, border: np.ndarray | None) -> dict:
    return {
        "auc": float(roc_auc_score(labels, probability)),
        "auc_ci95": bootstrap_auc_ci(labels, probability),
        "ece": calibration_summary(labels, probability)["ece"],
        "brier": calibration_summary(labels, probability)["brier"],
        "border_share": float(np.nanmean(border)) if border is not None else None,
    }


def compare(data_dir: Path, split: str, split_file: Path, weights_dir: Path = WEIGHTS_DIR) -> dict:
    records = select_records(data_dir, split_file, split, native_only=True)
    labels = np.array([r.label for r in records])
    images = decode_all(Path(data_dir) / "images", records)
    probabilities: dict[str, dict[str, np.ndarray]] = {"plain": {}, "tta": {}}
    entries, ms = {}, {}
    for name in ENSEMBLE_MEMBERS:
        model = load_model(name, weights_dir)
        inputs = np.stack([preprocess(im, model.input_size, model.channels) for im in images])
        run = run_model(model, inputs)
        for kind, z in (("plain", run["logits"][0]), ("tta", run["logits"].mean(axis=0))):
            probabilities[kind][name] = model.calibration(1.0 / (1.0 + np.exp(-z)))
        border = run.get("border", {})
        entries[name] = {k: _summary(labels, probabilities[k][name], border.get(k)) for k in ("plain", "tta")}
        entries[name]["border_share_by_level"] = [float(np.nanmean(s)) for s in border.get("levels", [])]
        ms[name] = {k: 1000.0 * v / len(records) for k, v in run["seconds"].items()}
    ensemble = Ensemble.load(weights_dir)
    combined = {k: ensemble.combine(probabilities[k]) for k in ("plain", "tta")}
    entries["ensemble"] = {k: _summary(labels, combined[k], None) for k in ("plain", "tta")}
    ms["ensemble"] = {k: sum(ms[m][k] for m in ENSEMBLE_MEMBERS) for k in ("plain", "tta")}
    for name, entry in entries.items():
        plain, tta = (
            (probabilities["plain"][name], probabilities["tta"][name])
            if name != "ensemble"
            else (
                combined["plain"],
                combined["tta"],
            )
        )
        entry["auc_difference"] = entry["tta"]["auc"] - entry["plain"]["auc"]
        entry["auc_difference_ci95"] = paired_auc_difference_ci(labels, plain, tta)
        entry["inference_ms_per_image"] = ms[name]
        entry["cost_ratio"] = ms[name]["tta"] / ms[name]["plain"]
    return {"split": split, "images": "native resolution", "n": len(records), "disease": int(labels.sum()),
            "models": entries}  # fmt: skip


def helps(entry: dict) -> tuple[bool, list[str]]:
    plain, tta, ci = entry["plain"], entry["tta"], entry["auc_difference_ci95"]
    reasons = []
    if not ci or ci[0] <= 0:
        reasons.append(
            f"AUC gain {entry['auc_difference']:+.3f}, CI lower bound {ci[0] if ci else float('nan'):+.3f} not above 0"
        )
    if tta["ece"] > plain["ece"] + MAX_ECE_LOSS:
        reasons.append(f"ECE {plain['ece']:.3f} -> {tta['ece']:.3f}")
    if plain["border_share"] is not None and tta["border_share"] > plain["border_share"] + MAX_BORDER_LOSS:
        reasons.append(f"border share {plain['border_share']:.3f} -> {tta['border_share']:.3f}")
    return not reasons, reasons


def trial(data_dir: Path, split_file: Path = DEFAULT_SPLIT, with_test: bool = False) -> dict:
    validation = compare(data_dir, "validation", split_file)
    verdicts = {name: helps(entry) for name, entry in validation["models"].items()}
    serve = all(ok for ok, _ in verdicts.values())
    result = {
        "views": [v[0] for v in VIEWS],
        "shift_px": SHIFT_PX,
        "zoom": ZOOM,
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, CPU only, shared (load {os.getloadavg()[0]:.1f})",
        "validation": validation,
        "decision": {
            "serve": serve,
            "per_model": {n: {"helps": ok, "reasons": r or ["meets the rule"]} for n, (ok, r) in verdicts.items()},
        },
    }
    if with_test:
        result["test_information_only"] = compare(data_dir, "test", split_file)
    return result


def _cell(m: dict) -> str:
    return f"{m['auc']:.3f} [{m['auc_ci95'][0]:.3f}, {m['auc_ci95'][1]:.3f}]"


def comparison_rows(split: dict) -> str:
    rows = [
        "| model | AUC plain [95% CI] | AUC with TTA | difference [paired 95% CI] | ECE plain → TTA "
        "| border share plain → TTA | inference ms/image plain → TTA |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, e in split["models"].items():
        p, t, ci, ms = e["plain"], e["tta"], e["auc_difference_ci95"], e["inference_ms_per_image"]
        border = f"{p['border_share']:.3f} → {t['border_share']:.3f}" if p["border_share"] is not None else "n/a"
        rows.append(
            f"| {name} | {_cell(p)} | {_cell(t)} | {e['auc_difference']:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}] "
            f"| {p['ece']:.3f} → {t['ece']:.3f} | {border} | {ms['plain']:.2f} → {ms['tta']:.2f} "
            f"(×{e['cost_ratio']:.1f}) |"
        )
    return "\n".join(rows) + "\n"


def tta_text(result: dict) -> str:
    validation, decision = result["validation"], result["decision"]
    levels = "; ".join(
        f"{name}: " + ", ".join(f"{s:.3f}" for s in e["border_share_by_level"])
        for name, e in validation["models"].items()
        if e.get("border_share_by_level")
    )
    per_model = "; ".join(
        f"{name} {'helps' if d['helps'] else 'does not help'} ({', '.join(d['reasons'])})"
        for name, d in decision["per_model"].items()
    )
    text = (
        f"\n**Test-time augmentation** (`python -m training.tta_trial`): the disease logit averaged over "
        f"{len(result['views'])} views of the preprocessed input ({', '.join(result['views'])}: shifts of "
        f"{result['shift_px']:.0f} px, zoom ±{result['zoom']:.0%}; no flips), then the served Platt calibration; "
        "Grad-CAM maps mapped back and averaged. Rule fixed before measuring: TTA helps a model when its AUC gain's "
        f"paired 95% CI is above 0, ECE is at most {MAX_ECE_LOSS} worse and the border share at most "
        f"{MAX_BORDER_LOSS} worse; served only if it helps cnn, unet and the ensemble. Native validation images "
        f"(n={validation['n']}, {validation['disease']} disease; inference time of the forward passes and view "
        f"warps, {result['machine']}):\n\n" + comparison_rows(validation) + f"\nBorder share of each Grad-CAM level "
        f"alone (plain, validation; the served map adds them, the last is the deepest): {levels or 'n/a'}.\n\n"
        f"**Decision: TTA {'served' if decision['serve'] else 'not served'}** — {per_model}.\n"
    )
    if test := result.get("test_information_only"):
        text += (
            f"\nNative test images (n={test['n']}), as information only (not part of the decision):\n\n"
            + comparison_rows(test)
        )
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--split-file", type=Path, default=DEFAULT_SPLIT)
    parser.add_argument("--with-test", action="store_true", help="add the native test numbers, as information")
    parser.add_argument("--output", type=Path, default=WEIGHTS_DIR / TTA_JSON)
    args = parser.parse_args(argv)
    result = trial(args.data, args.split_file, args.with_test)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(tta_text(result))


if __name__ == "__main__":
    main()
