"""Source probe: can an image's source (the public copy it came from) be read from a model's frozen features?

    python -m training.source_probe --data ../shared/data/nih-cxr14-subset [--models cnn,unet,seed-cnn,seed-unet]
        [--output models/weights/source_probe.json]

For each model, a scikit-learn logistic regression on the standardised `pooled_features` (the input of the
model's final Dense layer, as the findings heads read them) predicts each image's `source` from sources.csv.
It is fitted on the train split of the committed patient-wise split, its C is chosen on validation accuracy,
and it is measured once on the test split: accuracy (with a 95% bootstrap CI, and the share of each source's
images recognised) against the majority-class baseline (always answering the train split's most common source).
Three scopes: all images; native-resolution images only (the 64-px upsampled source drops out);
native-resolution disease images only (the label no longer tells the sources apart). Sources with fewer than
`min_source_images` images are left out. A reference row does the same on the image itself (the 128-px input
averaged down to 16x16 pixels), to show how visible the source is without any model, and a control row per
model reads only its disease logit: what the features tell beyond that row is more than the disease. High probe
accuracy means the features encode where an image came from, a shortcut the disease head can use; it does not by
itself show that the head does.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score

from models.registry import FEATURES_OUTPUT, WEIGHTS_DIR, load_model
from training.data import Record, load_arrays, load_or_create_split, load_records
from training.evaluate import parse_model_names
from training.train import CACHE_DIR, DEFAULT_SPLIT

log = logging.getLogger("training.source_probe")

C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
BOOTSTRAP_ROUNDS = 1000
MIN_SOURCE_IMAGES = 50
PIXELS = "pixels (16x16)"
DISEASE_ONLY = " disease logit only"
SPLITS = ("train", "validation", "test")
SCOPES = {
    "all images": lambda r: True,
    "native resolution": lambda r: not r.upsampled,
    "native resolution, disease only": lambda r: not r.upsampled and r.label == 1,
}


def model_features(data_dir: Path, records: list[Record], name: str, weights_dir: Path) -> dict[str, np.ndarray]:
    """One trained model's frozen pooled features for `records`, and (as a control) its disease logit alone,
    from the same forward pass on the reference (Keras) runtime."""
    model = load_model(name, weights_dir)
    x, _ = load_arrays(data_dir, records, model.input_size, model.channels, CACHE_DIR)
    pooled, logits = [], []
    for start in range(0, len(x), 64):
        outputs = model.predict_all(x[start : start + 64])
        pooled.append(outputs[FEATURES_OUTPUT].reshape(len(outputs[FEATURES_OUTPUT]), -1))
        raw = np.clip(model.raw_probabilities(outputs).astype(np.float64), 1e-7, 1 - 1e-7)
        logits.append(np.log(raw / (1 - raw)))
    return {name: np.concatenate(pooled).astype(np.float64), name + DISEASE_ONLY: np.concatenate(logits)[:, None]}


def pixel_features(data_dir: Path, records: list[Record], size: int = 128, block: int = 8) -> np.ndarray:
    """The preprocessed gray image averaged over block x block squares: a model-free reference."""
    x, _ = load_arrays(data_dir, records, size, 1, CACHE_DIR)
    side = size // block
    return x.reshape(len(records), side, block, side, block).mean(axis=(2, 4)).reshape(len(records), -1)


def fit_probe(features: dict[str, np.ndarray], sources: dict[str, np.ndarray], c_grid=C_GRID) -> dict | None:
    """Logistic regression from features to source: fitted on train, C by validation accuracy (ties: the
    stronger regularisation), measured on test. None when a split lacks images or train has one source."""
    if any(len(sources[s]) == 0 for s in SPLITS) or len(set(sources["train"])) < 2:
        return None
    mean, scale = features["train"].mean(axis=0), features["train"].std(axis=0) + 1e-6
    x = {s: (features[s] - mean) / scale for s in SPLITS}

    def fit(c: float) -> LogisticRegression:
        return LogisticRegression(C=c, max_iter=5000).fit(x["train"], sources["train"])

    scored = [(accuracy_score(sources["validation"], fit(c).predict(x["validation"])), c) for c in c_grid]
    validation_accuracy, best_c = max(scored, key=lambda pair: (pair[0], -pair[1]))
    predicted = fit(best_c).predict(x["test"])
    majority = Counter(sources["train"]).most_common(1)[0][0]
    truth = sources["test"]
    correct = (predicted == truth).astype(float)
    resampled = np.random.default_rng(0).integers(0, len(truth), (BOOTSTRAP_ROUNDS, len(truth)))
    low, high = np.percentile(correct[resampled].mean(axis=1), [2.5, 97.5])
    return {
        "n_test": int(len(truth)),
        "sources_test": dict(Counter(truth.tolist())),
        "c": best_c,
        "validation_accuracy": float(validation_accuracy),
        "test_accuracy": float(accuracy_score(truth, predicted)),
        "test_accuracy_ci95": [float(low), float(high)],
        "test_recall_per_source": {str(src): float(correct[truth == src].mean()) for src in sorted(set(truth))},
        "majority_source": str(majority),
        "majority_baseline": float(np.mean(truth == majority)),
    }


def run_source_probe(
    data_dir: Path,
    model_names: list[str],
    split_file: Path = DEFAULT_SPLIT,
    weights_dir: Path = WEIGHTS_DIR,
    min_source_images: int = MIN_SOURCE_IMAGES,
) -> dict:
    """{"probes": {features: {scope: fit_probe result}}, ...} for each model and the pixel reference."""
    all_records = load_records(data_dir)
    assignment = load_or_create_split(split_file, all_records)
    counts = Counter(r.source for r in all_records if r.source)
    kept = {s for s, n in counts.items() if n >= min_source_images}
    records = [r for r in all_records if r.source in kept]
    split_of = np.array([assignment[r.image] for r in records])
    source_of = np.array([r.source for r in records])
    feature_sets = {}
    for name in model_names:
        feature_sets |= model_features(data_dir, records, name, weights_dir)
    feature_sets[PIXELS] = pixel_features(data_dir, records)
    probes: dict[str, dict] = {}
    for features_name, features in feature_sets.items():
        probes[features_name] = {}
        for scope, member in SCOPES.items():
            in_scope = np.array([member(r) for r in records])
            masks = {s: in_scope & (split_of == s) for s in SPLITS}
            result = fit_probe({s: features[m] for s, m in masks.items()}, {s: source_of[m] for s, m in masks.items()})
            probes[features_name][scope] = result
            if result:
                log.info(
                    "%s, %s: test accuracy %.3f (majority %.3f)",
                    features_name,
                    scope,
                    result["test_accuracy"],
                    result["majority_baseline"],
                )
    return {
        "data": {"folder": Path(data_dir).name, "split_file": Path(split_file).name},
        "sources": dict(counts),
        "left_out": sorted(set(counts) - kept),
        "min_source_images": min_source_images,
        "c_grid": list(C_GRID),
        "feature": FEATURES_OUTPUT,
        "probes": probes,
    }


def probe_table(result: dict) -> str:
    """Markdown: one row per feature set, test accuracy (majority baseline) per scope."""
    scopes = list(SCOPES)
    lines = ["| features | " + " | ".join(scopes) + " |", "|---" * (len(scopes) + 1) + "|"]
    for features_name, per_scope in result["probes"].items():
        cells = [
            "n/a"
            if m is None
            else f"{m['test_accuracy']:.3f} [{m['test_accuracy_ci95'][0]:.3f}, "
            f"{m['test_accuracy_ci95'][1]:.3f}] (majority {m['majority_baseline']:.3f})"
            for m in (per_scope[s] for s in scopes)
        ]
        label = features_name
        if features_name != PIXELS:
            base = features_name.removesuffix(DISEASE_ONLY)
            label = f"`{base}`" + features_name[len(base) :]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    first = next(iter(result["probes"].values()))
    described = [f"{s}: {first[s]['n_test']} ({_sources_cell(first[s])})" for s in scopes if first[s]]
    return "\n".join(lines) + "\n\nTest images per scope: " + "; ".join(described) + ".\n"


def _sources_cell(m: dict) -> str:
    return ", ".join(f"{source.removeprefix('github:')} {n}" for source, n in sorted(m["sources_test"].items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="NIH-layout folder with sources.csv")
    parser.add_argument("--models", default="cnn,unet,seed-cnn,seed-unet", help="comma-separated model names")
    parser.add_argument("--split-file", type=Path, default=DEFAULT_SPLIT)
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--min-source-images", type=int, default=MIN_SOURCE_IMAGES)
    parser.add_argument("--output", type=Path, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    names = parse_model_names(parser, args.models)
    if not (args.data / "sources.csv").exists():
        parser.error(f"{args.data / 'sources.csv'} not found: the probe needs each image's source")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    result = run_source_probe(args.data, names, args.split_file, args.weights, args.min_source_images)
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(probe_table(result), end="")


if __name__ == "__main__":
    main()
