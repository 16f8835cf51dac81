"""NIH loader, patient-wise split, one-epoch smoke training and the evaluate CLI's JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, f1_score, roc_auc_score

from tests.conftest import SHARED_DATA, skip_or_fail
from training.data import load_or_create_split, load_records, patient_split, read_split, split_report

MINI = Path(__file__).parent / "data" / "nih-mini"
SUBSET = SHARED_DATA / "nih-cxr14-subset"
COMMITTED_SPLIT = Path(__file__).resolve().parents[1] / "training" / "splits" / "nih-cxr14-subset-seed42.csv"


def assert_no_patient_in_two_splits(records, assignment):
    splits_of_patient: dict[str, set[str]] = {}
    for r in records:
        splits_of_patient.setdefault(r.patient, set()).add(assignment[r.image])
    shared = {p: s for p, s in splits_of_patient.items() if len(s) > 1}
    assert not shared, f"patients in two splits: {list(shared.items())[:5]}"


def test_loader_reads_nih_layout_and_labels():
    records = load_records(MINI)
    assert len(records) == 40
    assert sum(r.label for r in records) == 20
    assert all((r.label == 0) == (r.findings == "No Finding") for r in records)
    assert len(load_records(MINI, exclude_upsampled=True)) == 40 - sum(r.upsampled for r in records)


def test_committed_split_is_patient_wise_and_reproducible():
    if not SUBSET.exists():
        skip_or_fail(f"{SUBSET} not found (the shared NIH data: RADBATCH_SHARED_DATA, default ../shared/data)")
    records = load_records(SUBSET)
    committed = read_split(COMMITTED_SPLIT)
    assert_no_patient_in_two_splits(records, committed)
    assert patient_split(records, seed=42) == committed
    report = split_report(records, committed)
    assert sum(s["images"] for s in report.values()) == len(records) == 2230
    for split in ("validation", "test"):
        assert 0.12 < report[split]["images"] / len(records) < 0.18
        assert 0.5 < report[split]["disease"] / report[split]["images"] < 0.75


def test_split_detects_a_patient_in_two_splits():
    records = load_records(MINI)
    assignment = patient_split(records, seed=3)
    assert_no_patient_in_two_splits(records, assignment)
    patient = records[0].patient
    leaked = dict(assignment)
    leaked[records[0].image] = "test" if assignment[records[0].image] != "test" else "train"
    twins = [r for r in records if r.patient == patient]
    if len(twins) == 1:  # give the patient a second image in another split
        other = next(r for r in records if r.patient != patient)
        records = records + [type(other)(**{**other.__dict__, "patient": patient})]
        leaked[other.image] = assignment[records[0].image]
    with pytest.raises(AssertionError, match="patients in two splits"):
        assert_no_patient_in_two_splits(records, leaked)


def test_split_file_is_written_then_reused(tmp_path):
    records = load_records(MINI)
    path = tmp_path / "split.csv"
    first = load_or_create_split(path, records, seed=5)
    assert path.exists()
    assert load_or_create_split(path, records, seed=999) == first


@pytest.fixture(scope="module")
def trained_weights(tmp_path_factory) -> Path:
    """All four model families trained for one epoch on the 40-image folder."""
    from training.train import train

    out = tmp_path_factory.mktemp("weights")
    split = out / "split.csv"
    for name in ("cnn", "unet", "seed-cnn", "seed-unet"):
        card = train(name, MINI, split_file=split, output_dir=out, epochs=1)
        assert card["training"]["epochs_run"] == 1
        assert card["training"]["stopped_by"] == "maximum epochs" and card["training"]["best_epoch"] == 1
        assert (out / name / "weights.npz").stat().st_size < 25 * 2**20
    from training.ensemble import fit_ensemble

    fit_ensemble(MINI, split, out)
    return out


def _mean_logit(*members: np.ndarray) -> np.ndarray:
    """The ensemble's rule (models.registry.Ensemble), by hand."""
    z = np.mean([np.log(p.astype(np.float64) / (1 - p.astype(np.float64))) for p in members], axis=0)
    return 1 / (1 + np.exp(-z))


def test_smoke_training_writes_loadable_models(trained_weights):
    from models.registry import load_model

    for name in ("cnn", "unet", "seed-cnn", "seed-unet"):
        card = json.loads((trained_weights / name / "card.json").read_text())
        assert card["data"]["splits"]["train"]["images"] > 0
        model = load_model(name, trained_weights)
        assert model.version == card["version"]
        batch = np.random.default_rng(0).random((2, model.input_size, model.input_size, model.channels), np.float32)
        probabilities = model.predict(batch)
        assert probabilities.shape == (2,) and ((probabilities >= 0) & (probabilities <= 1)).all()
    seed_card = json.loads((trained_weights / "seed-cnn" / "card.json").read_text())
    assert seed_card["threshold"] == 0.5 and seed_card["recipe"]["batch_size"] == 16


def test_evaluate_json_matches_scikit_learn(trained_weights, tmp_path, capsys):
    from training.evaluate import evaluate_records, main

    folder = tmp_path / "nih"
    shutil.copytree(MINI, folder)
    main(
        [
            "--data",
            str(folder),
            "--models",
            "cnn,unet,seed-cnn,seed-unet",
            "--json",
            "--weights",
            str(trained_weights),
            "--report",
            str(tmp_path / "report"),
        ]
    )
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"cnn", "unet", "seed-cnn", "seed-unet", "ensemble"}
    keys = {
        "n",
        "auc",
        "auc_ci95",
        "sensitivity",
        "specificity",
        "ppv",
        "npv",
        "f1",
        "accuracy",
        "threshold",
        "brier",
        "images_per_s",
    }
    for result in printed.values():
        assert keys <= set(result)
        assert result["n"] == 40
        low, high = result["auc_ci95"]
        assert 0 <= low <= result["auc"] <= high <= 1
    for png in ("roc.png", "calibration.png", "confusion.png"):
        assert (tmp_path / "report" / png).stat().st_size > 1000

    _, probabilities, labels, _ = evaluate_records(folder, ["cnn", "unet"], weights_dir=trained_weights)
    for name in ("cnn", "unet", "ensemble"):
        p = probabilities[name]
        predicted = (p >= printed[name]["threshold"]).astype(int)
        assert printed[name]["auc"] == pytest.approx(roc_auc_score(labels, p), abs=1e-6)
        assert printed[name]["brier"] == pytest.approx(brier_score_loss(labels, p), abs=1e-6)
        assert printed[name]["f1"] == pytest.approx(f1_score(labels, predicted), abs=1e-6)
        true_pos = int(((predicted == 1) & (labels == 1)).sum())
        assert printed[name]["sensitivity"] == pytest.approx(true_pos / labels.sum())
    expected = _mean_logit(probabilities["cnn"], probabilities["unet"])
    np.testing.assert_allclose(probabilities["ensemble"], expected, 1e-6)


def test_evaluate_reports_subsets_and_predictions_agree_with_the_json(trained_weights, tmp_path, capsys):
    import csv

    from training.evaluate import main
    from training.subsets import NATIVE, SOURCE_PREFIX, UPSAMPLED

    predictions = tmp_path / "predictions.csv"
    arguments = ["--data", str(MINI), "--models", "cnn,unet,seed-cnn,seed-unet", "--weights", str(trained_weights)]
    main([*arguments, "--json", "--predictions", str(predictions)])
    printed = json.loads(capsys.readouterr().out)
    with predictions.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 40
    assert list(rows[0]) == ["image", "patient", "source", "upsampled", "label", *printed]
    labels = np.array([int(row["label"]) for row in rows])
    native = np.array([row["upsampled"] == "0" for row in rows])
    covid = np.array([row["source"] == "github:muhammedtalo/COVID-19" for row in rows])
    assert native.sum() == 22 and covid.sum() == 13
    for name, result in printed.items():
        p = np.array([float(row[name]) for row in rows])
        subsets = result["subsets"]
        assert result["auc"] == pytest.approx(roc_auc_score(labels, p), abs=1e-6)
        assert subsets["all"]["auc"] == pytest.approx(result["auc"], abs=1e-9)
        assert subsets[NATIVE]["n"] == 22 and subsets[UPSAMPLED]["n"] == 18
        assert subsets[NATIVE]["auc"] == pytest.approx(roc_auc_score(labels[native], p[native]), abs=1e-6)
        within = subsets[SOURCE_PREFIX + "github:muhammedtalo/COVID-19"]
        assert (within["n"], within["disease"]) == (13, 5)
        assert within["auc"] == pytest.approx(roc_auc_score(labels[covid], p[covid]), abs=1e-6)
        assert subsets[SOURCE_PREFIX + "github:samadon1/radSIM"]["auc"] is None  # disease only: no AUC
    ensemble = np.array([float(row["ensemble"]) for row in rows])
    members = [np.array([float(r[m]) for r in rows]) for m in ("cnn", "unet")]
    np.testing.assert_allclose(ensemble, _mean_logit(*members), atol=1e-6)

    main(arguments)  # the text form ends with the subset table
    table = capsys.readouterr().out
    assert "| native resolution | 22 | 14 |" in table and "| source github:samadon1/radSIM | 9 | 9 |" in table
