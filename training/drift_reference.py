"""Write the drift reference: what the served models see and say on the validation split (models/drift.py).

    python -m training.drift_reference [--data DIR] [--split-file FILE] [--out FILE]

`--data` defaults to $RADBATCH_SHARED_DATA/nih-cxr14-subset (RADBATCH_SHARED_DATA: ../shared/data). Run it
whenever the models are retrained or recalibrated, and commit the file next to their cards; the web app
compares each day's images with it.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from models.drift import REFERENCE_FILE, decile_edges, input_statistics, save_reference
from models.preprocess import preprocess
from models.registry import WEIGHTS_DIR, Ensemble, load_model
from training.evaluate import decode_all, select_records
from training.train import DEFAULT_SPLIT

SHARED_DATA = Path(os.environ.get("RADBATCH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
DEFAULT_DATA = SHARED_DATA / "nih-cxr14-subset"
SPLIT = "validation"
DECIMALS = 4


def _values(values: np.ndarray) -> dict:
    rounded = np.round(np.sort(np.asarray(values, dtype=float)), DECIMALS)
    return {"values": rounded.tolist(), "edges": decile_edges(rounded)}


def build_reference(data_dir: Path, split_file: Path, weights_dir: Path = WEIGHTS_DIR) -> dict:
    """Every figure of models/drift.py on the validation split, with the models' versions."""
    records = select_records(data_dir, split_file, SPLIT)
    images = decode_all(data_dir / "images", records)
    ensemble = Ensemble.load(weights_dir)
    probabilities: dict[str, np.ndarray] = {}
    inputs: dict[tuple[int, int], np.ndarray] = {}
    versions = {"ensemble": ensemble.version}
    prevalences = {"ensemble": ensemble.trained_prevalence}
    for name in ensemble.members:
        model = load_model(name, weights_dir)
        spec = (model.input_size, model.channels)
        if spec not in inputs:
            inputs[spec] = np.stack([preprocess(image, *spec) for image in images])
        probabilities[name] = model.predict(inputs[spec])
        versions[name] = model.version
        prevalences[name] = model.trained_prevalence
    first = next(iter(inputs.values()))
    pixels = np.array([input_statistics(x) for x in first])
    labels = {
        name: probabilities[name] >= ensemble.member_thresholds[name] for name in ensemble.members
    }  # the members' own labels, at their trained prevalence as served by default
    probabilities["ensemble"] = ensemble.combine(probabilities)
    labels["ensemble"] = np.array([label == "disease" for label in ensemble.labels(probabilities)])
    votes = np.array([labels[m] for m in ensemble.members])
    values = {"pixel_mean": _values(pixels[:, 0]), "pixel_std": _values(pixels[:, 1])}
    values |= {f"probability:{name}": _values(p) for name, p in probabilities.items()}
    rates = {f"positive:{name}": float(np.mean(flags)) for name, flags in labels.items()}
    rates["disagreement"] = float(np.mean(votes.any(axis=0) & ~votes.all(axis=0)))
    return {
        "about": "the validation split's drift figures (models/drift.py), from python -m training.drift_reference",
        "created_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "split": SPLIT,
        "split_file": split_file.name,
        "n": len(records),
        "model_versions": versions,
        "members": list(ensemble.members),  # the models whose disagreement is watched
        "prevalences": prevalences,  # each model's trained one: the prevalence its probabilities above are at
        "values": values,
        "rates": {name: round(rate, DECIMALS) for name, rate in rates.items()},
        "inputs": {
            "view": dict(sorted(Counter(r.view or "unknown" for r in records).items())),
            "format": {"png": len(records)},
            "bit_depth": dict(Counter(str(8 if image.mode in ("L", "RGB", "RGBA", "P") else 16) for image in images)),
            "size": dict(Counter(f"{image.width}x{image.height}" for image in images)),
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="NIH-layout folder (images/ + CSV)")
    parser.add_argument("--split-file", type=Path, default=DEFAULT_SPLIT)
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--out", type=Path, default=REFERENCE_FILE)
    args = parser.parse_args(argv)
    reference = build_reference(args.data, args.split_file, args.weights)
    save_reference(reference, args.out)
    print(f"wrote {args.out}: {reference['n']} validation images, models {reference['model_versions']}")


if __name__ == "__main__":
    main()
