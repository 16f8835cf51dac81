"""Evaluate trained models on EVERY image of an NIH-layout folder (or one split of it).

    python -m training.evaluate --data DIR --models cnn,unet,seed-cnn,seed-unet --json [--report OUT]
        [--subset test] [--predictions FILE.csv]

Prints one JSON object keyed by model name, plus "ensemble" (the CNN's and U-Net's
logits averaged, each relative to its own threshold) when both are evaluated. All metrics come
from scikit-learn; the AUC's 95% interval is a seeded percentile bootstrap. When the
folder has a sources.csv, each model's "subsets" gives n, disease count and AUC with
its CI on all images, the native-resolution ones, the upsampled ones and each source
(training/subsets.py). `--predictions` writes every model's probability per image.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from models.findings import FindingHeads
from models.metrics import binary_metrics
from models.preprocess import decode_image, preprocess
from models.registry import ENSEMBLE_MEMBERS, MODEL_NAMES, WEIGHTS_DIR, Ensemble, load_model
from training.data import Record, load_records, read_split
from training.subsets import subset_metrics, subset_table, write_predictions
from training.trust import border_shares, border_summary, calibration_summary, finding_metrics, findings_table

log = logging.getLogger("training.evaluate")


def decode_all(images_dir: Path, records: list[Record]) -> list:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda r: decode_image(images_dir / r.image), records))


def select_records(
    data_dir: Path, split_file: Path | None = None, subset: str | None = None, native_only: bool = False
) -> list[Record]:
    records = load_records(data_dir, exclude_upsampled=native_only)
    if subset:
        assignment = read_split(split_file)
        records = [r for r in records if assignment.get(r.image) == subset]
    return records


def evaluate_records(
    data_dir: Path,
    model_names: list[str],
    split_file: Path | None = None,
    subset: str | None = None,
    weights_dir: Path = WEIGHTS_DIR,
    batch_size: int = 64,
    native_only: bool = False,
) -> tuple[dict, dict[str, np.ndarray], np.ndarray, list[Record]]:
    """Metrics per model, the calibrated probabilities per model, the labels and the records in the order of the
    probabilities; each model's metrics carry "subsets", "calibration" and (with heat maps) "gradcam_border";
    "findings" holds the per-finding AUCs when the weights folder has finding heads."""
    records = select_records(data_dir, split_file, subset, native_only)
    labels = np.array([r.label for r in records])
    started = time.perf_counter()
    images = decode_all(Path(data_dir) / "images", records)
    decode_seconds = time.perf_counter() - started

    results, probabilities, seconds = {}, {}, {}
    features: dict[str, np.ndarray] = {}
    for name in model_names:
        model = load_model(name, weights_dir)
        model.predict(np.zeros((1, model.input_size, model.input_size, model.channels), np.float32))  # warm-up
        elapsed, chunks, feature_chunks, share_chunks = 0.0, [], [], []
        for start in range(0, len(images), batch_size):
            batch = np.stack(
                [preprocess(im, model.input_size, model.channels) for im in images[start : start + batch_size]]
            )
            started = time.perf_counter()
            outputs = model.predict_all(batch)
            elapsed += time.perf_counter() - started
            calibrated, pooled = model.disease_and_features(outputs)
            chunks.append(calibrated)
            if pooled is not None:
                feature_chunks.append(pooled)
            if model.has_heatmaps:
                share_chunks.append(border_shares(model.heatmaps(outputs)))
        probabilities[name] = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        seconds[name] = elapsed + decode_seconds
        results[name] = binary_metrics(labels, probabilities[name], model.threshold)
        results[name]["images_per_s"] = len(records) / seconds[name]
        results[name]["model_version"] = model.version
        results[name]["calibration"] = calibration_summary(labels, probabilities[name])
        if feature_chunks:
            features[name] = np.concatenate(feature_chunks)
        if share_chunks:
            results[name]["gradcam_border"] = border_summary(np.concatenate(share_chunks), model.input_size)

    if all(m in probabilities for m in ENSEMBLE_MEMBERS):
        ensemble = Ensemble.load(weights_dir)
        probabilities["ensemble"] = ensemble.combine(probabilities)
        results["ensemble"] = binary_metrics(labels, probabilities["ensemble"], ensemble.threshold)
        member_seconds = sum(seconds[m] for m in ENSEMBLE_MEMBERS) - decode_seconds
        results["ensemble"]["images_per_s"] = len(records) / member_seconds
        results["ensemble"]["model_version"] = ensemble.version
        results["ensemble"]["calibration"] = calibration_summary(labels, probabilities["ensemble"])
    heads = FindingHeads.load(weights_dir)
    if heads is not None and all(m in features for m in heads.feature_models):
        results["findings"] = {
            "version": heads.version,
            "served": list(heads.served),
            "metrics": finding_metrics(records, list(heads.findings), heads.probabilities(features)),
        }
    for name, per_subset in subset_metrics(records, labels, probabilities).items():
        results[name]["subsets"] = per_subset
    return results, probabilities, labels, records


def parse_model_names(parser: argparse.ArgumentParser, value: str) -> list[str]:
    """The comma-separated `--models` value as a list; a parser error for any name not in MODEL_NAMES."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODEL_NAMES)}")
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="NIH-layout folder (images/ + Data_Entry_2017.csv)")
    parser.add_argument("--models", default="cnn,unet", help=f"comma-separated, from {', '.join(MODEL_NAMES)}")
    parser.add_argument("--json", action="store_true", help="print one JSON object keyed by model name")
    parser.add_argument("--report", type=Path, help="also write ROC, calibration and confusion-matrix PNGs here")
    parser.add_argument("--split-file", type=Path, help="with --subset: evaluate one split only")
    parser.add_argument("--subset", choices=("train", "validation", "test"))
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--predictions", type=Path, help="write every model's probability per image to this CSV")
    parser.add_argument("--native-only", action="store_true", help="leave out the images upsampled from 64 px")
    args = parser.parse_args(argv)
    if args.subset and not args.split_file:
        from training.train import DEFAULT_SPLIT

        args.split_file = DEFAULT_SPLIT
    logging.basicConfig(level=logging.WARNING)
    names = parse_model_names(parser, args.models)
    results, probabilities, labels, records = evaluate_records(
        args.data, names, args.split_file, args.subset, args.weights, native_only=args.native_only
    )
    findings = results.pop("findings", None)
    if args.predictions:
        write_predictions(args.predictions, records, probabilities)
    if args.report:
        from training.report import write_report

        write_report(args.report, results, probabilities, labels)
    if args.json:
        print(json.dumps(results | ({"findings": findings} if findings else {}), indent=2))
    else:
        for name, m in results.items():
            low, high = m["auc_ci95"] or (float("nan"), float("nan"))
            print(
                f"{name:10s} n={m['n']} AUC {m['auc']:.3f} [{low:.3f}, {high:.3f}] sens {m['sensitivity']:.3f} "
                f"spec {m['specificity']:.3f} brier {m['brier']:.3f} thr {m['threshold']:.3f} "
                f"{m['images_per_s']:.0f} img/s ECE {m['calibration']['ece']:.3f} "
                + (f"Grad-CAM border share {m['gradcam_border']['mean']:.3f}" if "gradcam_border" in m else "")
            )
        print("\n" + subset_table({name: m["subsets"] for name, m in results.items()}), end="")
        if findings:
            print("\n" + findings_table(findings), end="")


if __name__ == "__main__":
    main()
