"""Per-finding heads (models/findings.py, training/findings.py): the committed heads and their card, the served
model's pooled-features output, and reproducible training on frozen features."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.findings import ABSENT, PRESENT, FindingHeads
from models.preprocess import load_and_preprocess
from models.registry import ENSEMBLE_MEMBERS, WEIGHTS_DIR, load_model
from tests.conftest import PIPELINE_IMAGES
from training.validate_findings import decide

MINI = Path(__file__).parent / "data" / "nih-mini"
REQUIRED = ("Infiltration", "Effusion", "Atelectasis", "Cardiomegaly", "Pneumothorax", "Nodule", "Mass")
REQUIRED += ("Consolidation", "Edema", "Pneumonia")


@pytest.fixture(scope="module")
def heads() -> FindingHeads:
    found = FindingHeads.load()
    assert found is not None, "models/weights/findings is missing: run python -m training.findings"
    return found


def test_the_committed_heads_cover_the_findings_with_enough_positives(heads: FindingHeads) -> None:
    card = json.loads((WEIGHTS_DIR / "findings" / "card.json").read_text())
    assert set(REQUIRED) <= set(heads.findings) and heads.version == card["version"]
    assert set(heads.feature_models) <= set(ENSEMBLE_MEMBERS)
    for name in heads.findings:
        test = card["metrics"][name]["test"]
        low, high = test["auc_ci95"]
        assert 0 <= low <= test["auc"] <= high <= 1
    evaluation = card["validation_evaluation"]  # training.validate_findings: native validation and test images
    assert heads.served == tuple(decide(evaluation["metrics"]))  # served exactly by the rule, on both splits
    assert "Pneumonia" not in heads.served  # points the wrong way among disease images (issue 16)
    assert sorted(card["hidden"]) == sorted(set(heads.findings) - set(heads.served))
    for name in heads.findings:  # each threshold at the stated operating point on validation
        point = evaluation["operating_points"][name]
        assert point["specificity"] >= 0.90 and heads.threshold[heads.findings.index(name)] == pytest.approx(
            point["threshold"], abs=1e-6
        )
    assert heads.operating_point == card["operating_point"] == "specificity 0.90 on validation"
    pneumonia = card["metrics"]["Pneumonia"]["test_within_source"]
    assert any(m["positives"] > 0 and m["auc"] is not None for m in pneumonia.values())
    assert "## Within source" in (WEIGHTS_DIR / "findings" / "card.md").read_text()


def test_served_findings_come_from_the_pooled_features_of_the_same_forward_pass(heads: FindingHeads) -> None:
    paths = sorted(PIPELINE_IMAGES.glob("*.png"))[:6]
    features, probabilities = {}, {}
    for name in heads.feature_models:
        model = load_model(name)
        batch = np.stack([load_and_preprocess(p, model.input_size, model.channels) for p in paths])
        probabilities[name], features[name] = model.predict_with_features(batch)
        np.testing.assert_allclose(probabilities[name], model.predict(batch), atol=1e-6)
        assert features[name].shape[0] == len(paths) and features[name].ndim == 2
    all_probabilities = heads.probabilities(features)
    assert all_probabilities.shape == (len(paths), len(heads.findings))
    assert np.all((all_probabilities >= 0) & (all_probabilities <= 1))
    served = heads.served_findings(features)
    assert [list(row) for row in served] == [list(heads.served)] * len(paths)
    for row, expected in zip(served, all_probabilities):
        for name, found in row.items():
            assert found["probability"] == pytest.approx(float(expected[heads.findings.index(name)]))
            assert found["label"] == (PRESENT if found["probability"] >= found["threshold"] else ABSENT)


def test_training_the_heads_is_reproducible(tmp_path: Path) -> None:
    from training.findings import train_findings

    weights = tmp_path / "weights"
    for name in ENSEMBLE_MEMBERS:
        shutil.copytree(WEIGHTS_DIR / name, weights / name)
    digests = []
    for _ in range(2):
        card = train_findings(MINI, split_file=tmp_path / "split.csv", weights_dir=weights, min_positives=5)
        digests.append(card["heads_sha256"])
        assert card["findings"] and set(card["served"]) | set(card["hidden"]) == set(card["findings"])
        assert card["min_positives"] == 5 and card["finding_counts"]["Infiltration"] == 8
        loaded = FindingHeads.load(weights)
        assert loaded is not None and loaded.findings == tuple(card["findings"])
        assert loaded.coef.shape[1] == len(card["findings"])
    assert digests[0] == digests[1]
