"""What makes a number trustworthy (issue 16): calibration error, Grad-CAM border share, per-finding AUC among
disease images, the validation rule that decides which findings are served, thresholds at a stated specificity,
the recalibration choice, the multi-task loss weights and border augmentation. Unit tests on constructed data;
the served path is tests/test_web_findings.py and tests/test_findings_e2e.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from models.calibration import PlattScaling
from models.findings import FindingHeads
from models.operating_point import threshold_for_specificity
from training.data import Record
from training.multitask import label_matrix, loss_weights
from training.recalibrate import carried_threshold, cross_validated
from training.subsets import patient_masks
from training.trust import band_mask, border_shares, calibration_summary, finding_metrics
from training.validate_findings import decide, passes


def record(i: int, findings: str, source: str = "a", sex: str = "F", age: int | None = 50, view: str = "PA"):
    return Record(
        image=f"{i}.png", patient=str(i), label=int(findings != "No Finding"), findings=findings, view=view,
        upsampled=False, source=source, sex=sex, age=age,
    )  # fmt: skip


def test_calibration_error_is_zero_when_rates_match_and_the_gap_when_they_do_not() -> None:
    labels = np.array([0] * 8 + [1] * 2 + [0] * 2 + [1] * 8)
    matched = np.array([0.2] * 10 + [0.8] * 10)
    assert calibration_summary(labels, matched)["ece"] == pytest.approx(0.0)
    overconfident = np.array([0.0] * 10 + [1.0] * 10)
    summary = calibration_summary(labels, overconfident)
    assert summary["ece"] == pytest.approx(0.2)  # each half is 20% off
    assert sum(b["n"] for b in summary["bins"]) == 20 and summary["brier"] == pytest.approx(0.2)


def test_border_share_of_uniform_heat_is_the_band_area_and_of_central_heat_zero() -> None:
    side = 128
    band = band_mask(side)
    assert band.mean() == pytest.approx(0.5056, abs=1e-3)  # 51% of the area, as the issue says
    central = np.zeros((side, side))
    central[40:88, 40:88] = 1.0
    edge = np.zeros((side, side))
    edge[:, :5] = 1.0
    shares = border_shares(np.stack([np.ones((side, side)), central, edge, np.zeros((side, side))]))
    assert shares[:3] == pytest.approx([band.mean(), 0.0, 1.0])
    assert np.isnan(shares[3])  # no heat at all: not measured


def test_finding_auc_among_disease_ignores_the_healthy_images() -> None:
    records = [record(0, "No Finding"), record(1, "No Finding"), record(2, "Effusion"), record(3, "Mass")]
    records += [record(4, "Effusion|Mass"), record(5, "Mass")]
    scores = np.array([[0.9], [0.9], [0.8], [0.1], [0.7], [0.2]])  # healthy images score high: no skill there
    found = finding_metrics(records, ["Effusion"], scores)["Effusion"]
    assert found["among_disease"]["n"] == 4 and found["among_disease"]["auc"] == pytest.approx(1.0)
    assert found["all"]["auc"] == pytest.approx(0.5)  # over all images the healthy ones hide the skill


def test_patient_masks_split_by_sex_age_band_and_view() -> None:
    records = [
        record(0, "No Finding", sex="M", age=30, view="AP"),
        record(1, "Mass", age=40),
        record(2, "Mass", age=61),
    ]
    masks = patient_masks(records)
    assert masks["men"].tolist() == [True, False, False] and masks["women"].tolist() == [False, True, True]
    assert masks["age < 40"].tolist() == [True, False, False] and masks["age 40-60"].tolist() == [False, True, False]
    assert masks["age > 60"].tolist() == [False, False, True] and masks["view AP"].tolist() == [True, False, False]


def test_threshold_for_specificity_is_the_lowest_reaching_it() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    scores = labels * 0.3 + rng.uniform(0, 1, 400)
    point = threshold_for_specificity(labels, scores, 0.90)
    predicted = scores >= point["threshold"]
    assert (~predicted[labels == 0]).mean() == pytest.approx(point["specificity"])
    assert point["specificity"] >= 0.90
    below = scores[scores < point["threshold"]].max()
    assert (~(scores >= below)[labels == 0]).mean() < 0.90  # one step lower misses the target
    fpr, tpr, _ = roc_curve(labels, scores)
    assert point["sensitivity"] == pytest.approx(tpr[fpr <= 0.10].max())
    assert threshold_for_specificity(np.zeros(5), scores[:5], 0.9) is None


def _split_metrics(among_low: float, overall: float) -> dict:
    return {"among_disease": {"auc_ci95": [among_low, 0.9]}, "all": {"auc": overall}}


def test_the_validation_rule_needs_both_splits_and_both_bounds() -> None:
    assert passes(_split_metrics(0.60, 0.70)) and not passes(_split_metrics(0.59, 0.9))
    assert not passes(_split_metrics(0.7, 0.69))
    per_split = {
        "validation": {"Edema": _split_metrics(0.65, 0.8), "Pneumonia": _split_metrics(0.7, 0.8)},
        "test": {"Edema": _split_metrics(0.62, 0.75), "Pneumonia": _split_metrics(0.3, 0.6)},
    }
    assert decide(per_split) == ["Edema"]


def test_recalibration_fixes_an_overconfident_model_and_keeps_every_label() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    true_logit = (labels - 0.5) * 2 + rng.normal(0, 1.2, 300)
    raw = 1 / (1 + np.exp(-3 * true_logit))  # three times too confident
    compared = cross_validated(raw, labels)
    assert set(compared) == {"temperature", "platt", "isotonic"}
    assert compared["temperature"]["ece"] < calibration_summary(labels, raw)["ece"]
    old, new = PlattScaling(), PlattScaling(slope=0.33, intercept=0.1)
    threshold = carried_threshold(old, new, 0.7)
    assert ((old(raw) >= 0.7) == (new(raw) >= threshold)).mean() > 0.99  # float32 rounding at the boundary only


def test_loss_weights_balance_classes_and_sources_per_column() -> None:
    records = [record(i, "Pneumonia", source="covid") for i in range(30)]
    records += [record(30 + i, "No Finding", source="covid") for i in range(30)]
    records += [record(60 + i, "Mass", source="sim") for i in range(10)]
    labels = label_matrix(records, ["Pneumonia", "Mass"])
    weights = loss_weights(records, labels, strength=1.0, upsampled_weight=1.0)
    assert weights.mean(axis=0) == pytest.approx([1.0, 1.0, 1.0])  # disease, Pneumonia, Mass
    disease = labels[:, 0] == 1
    covid = np.array([r.source == "covid" for r in records])
    # with full source balancing, each source's disease images weigh the same in total
    assert weights[disease & covid, 0].sum() == pytest.approx(weights[disease & ~covid, 0].sum())
    assert weights[disease, 0].sum() == pytest.approx(weights[~disease, 0].sum())  # and the classes weigh the same


def test_all_findings_are_computed_and_only_served_ones_are_validated(tmp_path: Path) -> None:
    folder = tmp_path / "findings"
    folder.mkdir()
    k = 2
    np.savez(
        folder / "heads.npz", mean=np.zeros(3), scale=np.ones(3), coef=np.eye(3)[:, :k], intercept=np.zeros(k),
        platt_slope=np.ones(k), platt_intercept=np.zeros(k), threshold=np.array([0.5, 0.6]),
    )  # fmt: skip
    card = {"version": "findings-t", "feature_models": ["cnn"], "findings": ["Edema", "Pneumonia"],
            "served": ["Edema"], "operating_point": "specificity 0.90 on validation"}  # fmt: skip
    (folder / "card.json").write_text(json.dumps(card))
    heads = FindingHeads.load(tmp_path)
    features = {"cnn": np.array([[2.0, 2.0, 0.0], [-2.0, -2.0, 0.0]])}
    every = heads.all_findings(features)
    assert [list(row) for row in every] == [["Edema", "Pneumonia"]] * 2
    assert every[0]["Pneumonia"]["validated"] is False and every[0]["Edema"]["validated"] is True
    assert every[0]["Edema"]["operating_point"] == "specificity 0.90 on validation"
    assert every[0]["Edema"]["label"] == "present" and every[1]["Edema"]["label"] == "absent"
    assert [list(row) for row in heads.served_findings(features)] == [["Edema"]] * 2


def test_border_augmentation_only_touches_the_outer_band() -> None:
    import tensorflow as tf

    from training.multitask import BORDER_FRACTION, border_augment

    tf.random.set_seed(0)
    batch = tf.fill((16, 64, 64, 1), 0.5)
    out = border_augment(batch, seed=0).numpy()
    inner = ~band_mask(64, BORDER_FRACTION)
    assert np.all(out[:, inner, 0] == 0.5)
    assert (out[:, band_mask(64, BORDER_FRACTION), 0] != 0.5).any(axis=1).mean() > 0.3  # most images changed


def test_the_bootstraps_rank_auc_is_scikit_learns_auc() -> None:
    from sklearn.metrics import roc_auc_score

    from models.metrics import rank_auc

    rng = np.random.default_rng(7)
    for size in (4, 17, 250):
        labels = np.r_[0, 1, rng.integers(0, 2, size - 2)]
        scores = np.round(rng.random(size), 2)  # with ties
        assert rank_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
