"""Train the per-finding heads (models/findings.py) on frozen features of the served models.

    python -m training.findings --data ../shared/data/nih-cxr14-subset

For every NIH finding with at least MIN_POSITIVES images, a class-weighted scikit-learn logistic regression
on the standardised `pooled_features` of the served models. Fitted on the train split of the committed
patient-wise split; the regularisation C per finding, and which models' features to use (cnn, unet or both,
by mean validation AUC), are chosen on validation, where the Platt calibration and the Youden threshold are
fitted too. The test split is only measured: per-finding AUC with a 95% bootstrap CI, positive counts, and
AUC within each source that has both classes. A finding whose test CI lower bound is under HIDE_BELOW is
hidden from results and named in the card. Deterministic: the same weights and data give the same heads.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from models.calibration import PlattScaling, youden_threshold
from models.findings import FINDINGS_FOLDER
from models.metrics import bootstrap_auc_ci
from models.registry import ENSEMBLE_MEMBERS, FEATURES_OUTPUT, WEIGHTS_DIR, read_card
from training.data import Record, load_or_create_split, load_records
from training.findings_card import render_findings_card, write_findings_card
from training.source_probe import model_features
from training.train import DEFAULT_SPLIT

log = logging.getLogger("training.findings")

MIN_POSITIVES = 100
HIDE_BELOW = 0.60  # test-AUC 95% CI lower bound under which a finding is not served
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
FEATURE_SETS = (("cnn",), ("unet",), ("cnn", "unet"))
MIN_PER_CLASS_IN_SOURCE = 5


def finding_counts(records: list[Record]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in records:
        for finding in r.findings.split("|"):
            if finding != "No Finding":
                counts[finding] = counts.get(finding, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def extract_features(data_dir: Path, records: list[Record], weights_dir: Path) -> dict[str, np.ndarray]:
    """Each ensemble member's pooled features for `records`, on the reference (Keras) runtime."""
    return {name: model_features(data_dir, records, name, weights_dir)[name] for name in ENSEMBLE_MEMBERS}


def _fit(x: np.ndarray, y: np.ndarray, c: float) -> LogisticRegression:
    return LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(x, y)


def _auc(y: np.ndarray, scores: np.ndarray) -> float | None:
    return float(roc_auc_score(y, scores)) if y.min() != y.max() else None


def fit_head(train: tuple, validation: tuple) -> dict:
    """The best C on validation AUC, its regression (fitted on train), Platt scaling and threshold."""
    (x_train, y_train), (x_val, y_val) = train, validation
    scored = [(_auc(y_val, _fit(x_train, y_train, c).decision_function(x_val)) or 0.0, c) for c in C_GRID]
    best_auc, best_c = max(scored, key=lambda pair: (pair[0], -pair[1]))  # ties: the stronger regularisation
    regression = _fit(x_train, y_train, best_c)
    raw = 1.0 / (1.0 + np.exp(-regression.decision_function(x_val)))
    platt = PlattScaling.fit(raw, y_val)
    return {
        "c": best_c,
        "validation_auc": best_auc,
        "coef": regression.coef_[0],
        "intercept": float(regression.intercept_[0]),
        "platt": platt,
        "threshold": youden_threshold(platt(raw), y_val),
    }


def head_probabilities(head: dict, x: np.ndarray) -> np.ndarray:
    z = x @ head["coef"] + head["intercept"]
    return head["platt"](1.0 / (1.0 + np.exp(-z)))


def within_sources(records: list[Record], y: np.ndarray, p: np.ndarray) -> dict[str, dict]:
    """Test AUC inside each source that holds at least MIN_PER_CLASS_IN_SOURCE images of both classes, with the
    source's disease images counted: where every one of them has the finding, the AUC is disease vs healthy."""
    found = {}
    for source in sorted({r.source for r in records if r.source}):
        mask = np.array([r.source == source for r in records])
        positives = int(y[mask].sum())
        if min(positives, int(mask.sum()) - positives) < MIN_PER_CLASS_IN_SOURCE:
            continue
        disease = sum(r.label for r, kept in zip(records, mask) if kept)
        found[source] = _summary(y[mask], p[mask]) | {"positives": positives, "disease": disease}
    return found


def among_disease(records: list[Record], y: np.ndarray, p: np.ndarray) -> dict:
    """Test AUC among the disease images only: the finding against the other findings, not against healthy."""
    mask = np.array([r.label == 1 for r in records])
    return _summary(y[mask], p[mask]) | {"positives": int(y[mask].sum())}


def _summary(y: np.ndarray, p: np.ndarray) -> dict:
    both = y.min() != y.max()
    return {"n": int(len(y)), "auc": _auc(y, p), "auc_ci95": bootstrap_auc_ci(y, p) if both else None}


def train_findings(
    data_dir: Path,
    split_file: Path = DEFAULT_SPLIT,
    weights_dir: Path = WEIGHTS_DIR,
    min_positives: int = MIN_POSITIVES,
) -> dict:
    """Fit, measure and write the heads and their card; returns the card. A finding needs `min_positives`
    images in all, and both classes in the train and validation splits."""
    records = load_records(data_dir)
    assignment = load_or_create_split(split_file, records)
    splits = {s: [r for r in records if assignment[r.image] == s] for s in ("train", "validation", "test")}
    counts = finding_counts(records)
    frequent = [f for f, n in counts.items() if n >= min_positives]
    labels = {
        s: {f: np.array([r.has_finding(f) for r in chosen], int) for f in frequent} for s, chosen in splits.items()
    }
    findings = [f for f in frequent if all(0 < labels[s][f].sum() < len(splits[s]) for s in ("train", "validation"))]
    features = {s: extract_features(data_dir, chosen, weights_dir) for s, chosen in splits.items()}

    def design(split: str, models: tuple[str, ...]) -> np.ndarray:
        return np.concatenate([features[split][m] for m in models], axis=1)

    candidates = {}
    for models in FEATURE_SETS:
        raw_train = design("train", models)
        mean, scale = raw_train.mean(axis=0), raw_train.std(axis=0) + 1e-6
        xs = {s: (design(s, models) - mean) / scale for s in splits}
        heads = {
            f: fit_head((xs["train"], labels["train"][f]), (xs["validation"], labels["validation"][f]))
            for f in findings
        }
        score = float(np.mean([h["validation_auc"] for h in heads.values()]))
        candidates[models] = (score, mean, scale, xs, heads)
        log.info("features %s: mean validation AUC %.3f", "+".join(models), score)
    chosen_models = max(candidates, key=lambda m: candidates[m][0])
    _, mean, scale, xs, heads = candidates[chosen_models]

    metrics = {}
    for f in findings:
        y, p = labels["test"][f], head_probabilities(heads[f], xs["test"])
        metrics[f] = {
            "positives": {s: int(labels[s][f].sum()) for s in splits},
            "c": heads[f]["c"],
            "validation_auc": heads[f]["validation_auc"],
            "threshold": heads[f]["threshold"],
            "test": _summary(y, p),
            "test_among_disease": among_disease(splits["test"], y, p),
            "test_within_source": within_sources(splits["test"], y, p),
        }
    served = [f for f in findings if (metrics[f]["test"]["auc_ci95"] or [0.0])[0] >= HIDE_BELOW]
    folder = Path(weights_dir) / FINDINGS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "mean": mean,
        "scale": scale,
        "coef": np.stack([heads[f]["coef"] for f in findings], axis=1),
        "intercept": np.array([heads[f]["intercept"] for f in findings]),
        "platt_slope": np.array([heads[f]["platt"].slope for f in findings]),
        "platt_intercept": np.array([heads[f]["platt"].intercept for f in findings]),
        "threshold": np.array([heads[f]["threshold"] for f in findings]),
    }
    np.savez(folder / "heads.npz", **{k: v.astype(np.float32) for k, v in arrays.items()})
    digest = hashlib.sha256((folder / "heads.npz").read_bytes()).hexdigest()
    card = {
        "name": "findings",
        "version": f"findings-{datetime.now(timezone.utc):%Y%m%d}-{digest[:8]}",
        "feature_models": list(chosen_models),
        "feature_model_versions": {m: read_card(m, weights_dir)["version"] for m in chosen_models},
        "feature_output": FEATURES_OUTPUT,
        "findings": findings,
        "served": served,
        "hidden": [f for f in findings if f not in served],
        "hide_rule": f"test AUC 95% CI lower bound < {HIDE_BELOW}",
        "min_positives": min_positives,
        "finding_counts": counts,
        "feature_set_validation_auc": {"+".join(m): candidates[m][0] for m in FEATURE_SETS},
        "c_grid": list(C_GRID),
        "metrics": metrics,
        "data": {"folder": Path(data_dir).name, "split_file": Path(split_file).name},
        "heads_sha256": digest,
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_findings_card(folder, card)
    return card


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="NIH-layout folder (images/ + Data_Entry_2017.csv)")
    parser.add_argument("--split-file", type=Path, default=DEFAULT_SPLIT)
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--min-positives", type=int, default=MIN_POSITIVES, help="images a finding needs in all")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    card = train_findings(args.data, args.split_file, args.weights, args.min_positives)
    print(render_findings_card(card))


if __name__ == "__main__":
    main()
