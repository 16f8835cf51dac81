"""The model catalogue as data (models/catalogue.py), installing a site's own ONNX model (models/install.py) with every
refusal, roles and their history (models/roles.py), and the shadow comparison's statistics (models/comparison.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from models.catalogue import CatalogueError, load_catalogue
from models.comparison import agreement, paired_auc
from models.install import SAMPLES, InstallError, check_model, install
from models.preprocess import load_and_preprocess
from models.registry import load_entry
from models.roles import change_role, history
from tests.catalogue_fixtures import card, classifier_onnx, expected_probability, model_folder
from tests.services import REPO_ROOT, service_env


def test_the_shipped_catalogue_serves_cnn_unet_and_their_ensemble(tmp_path: Path) -> None:
    catalogue = load_catalogue(tmp_path / "models")
    assert catalogue.served_names == ("cnn", "unet", "ensemble")
    assert catalogue.headline == "ensemble" and catalogue.ensemble.members == ("cnn", "unet")
    assert catalogue.heatmap_models == ("cnn", "unet")
    assert [e.name for e in catalogue.to_run] == ["cnn", "unet"]
    assert {e.name: e.role for e in catalogue.entries}["seed-cnn"] == "off"
    for entry in catalogue.entries:
        assert entry.version and entry.licence and entry.intended_use, entry.name


def test_an_installed_model_is_a_shadow_with_its_card_and_history(tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    source = model_folder(tmp_path / "third")
    target = install(source / "model.onnx", card(), models_dir)
    change_role(models_dir, "third", "shadow", "tester", "third-1")
    catalogue = load_catalogue(models_dir)
    entry = catalogue.entry("third")
    assert (entry.role, entry.version, entry.input_size, entry.runtime) == ("shadow", "third-1", 64, "onnx")
    assert target == models_dir / "third" / "third-1" and (target / "model.onnx").is_file()
    assert catalogue.served_names == ("cnn", "unet", "ensemble") and [e.name for e in catalogue.shadow] == ["third"]
    assert history(models_dir, "third")[-1] | {"at": ""} == {
        "at": "",
        "who": "tester",
        "model": "third",
        "from_role": "shadow",
        "to_role": "shadow",
        "from_version": "third-1",
        "to_version": "third-1",
    }


def test_the_loaded_model_runs_on_onnx_runtime_and_says_what_its_graph_says(tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    for kind in ("probability", "logit"):
        source = model_folder(tmp_path / kind, name=kind, version=f"{kind}-1", kind=kind)
        install(source / "model.onnx", card(name=kind, version=f"{kind}-1", kind=kind), models_dir)
    batch = np.stack([load_and_preprocess(p, size=64, channels=1) for p in sorted(SAMPLES.glob("*.png"))])
    for kind in ("probability", "logit"):
        loaded = load_entry(load_catalogue(models_dir).entry(kind), threads=1)
        np.testing.assert_allclose(loaded.predict(batch), expected_probability(batch), rtol=1e-5)
        assert loaded.version == f"{kind}-1" and not loaded.has_heatmaps


@pytest.mark.parametrize(
    ("model_kind", "card_fields", "message"),
    [
        ("probability", {"size": 96}, "does not match the card's (batch, 96, 96, 1)"),
        ("logit", {"kind": "probability"}, "if they are logits, say output.kind: logit"),
        ("probability", {"kind": "logit"}, "if they are probabilities, say output.kind: probability"),
        ("probability", {"name": "cnn"}, "built-in model's name"),
        ("probability", {"name": "Bad Name"}, "name 'Bad Name' must be"),
        ("probability", {"licence": ""}, "licence must say what it is"),
        ("probability", {"threshold": 1.5}, "threshold must be a probability"),
        ("probability", {"prevalence": None}, "prevalence (the disease rate"),
        ("probability", {"output": {"name": "scores", "kind": "probability"}}, "not among the model's outputs"),
    ],
)
def test_install_refuses_a_model_that_fails_a_check(
    tmp_path: Path, model_kind: str, card_fields: dict, message: str
) -> None:
    path = classifier_onnx(tmp_path / "model.onnx", kind=model_kind)
    with pytest.raises(InstallError) as refused:
        install(path, card(**card_fields), tmp_path / "models")
    assert message in str(refused.value)
    assert not (tmp_path / "models" / "third").exists()


def test_a_model_that_says_the_same_for_every_image_is_refused(tmp_path: Path) -> None:
    path = classifier_onnx(tmp_path / "model.onnx", scale=0.0)
    with pytest.raises(InstallError, match="the same output"):
        check_model(path, card())


def run_cli(module: str, *args: str, home: Path) -> subprocess.CompletedProcess:
    env = service_env({"RADBATCH_HOME": str(home)})
    command = [sys.executable, "-m", module, *args]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_the_commands_install_promote_only_with_confirmation_and_roll_back(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = model_folder(tmp_path / "v1")
    refused = run_cli("models.install", str(first), "--role", "served", home=home)
    assert refused.returncode == 2 and "--confirm third" in refused.stderr
    assert not (home / "models" / "third").exists()
    done = run_cli("models.install", str(first), "--role", "served", "--confirm", "third", home=home)
    assert done.returncode == 0 and "as served" in done.stdout, done.stderr
    second = model_folder(tmp_path / "v2", version="third-2")
    newer = run_cli("models.install", str(second), home=home)  # a new version does not replace the served one
    assert newer.returncode == 0 and "third third-1 stays served" in newer.stdout, newer.stderr
    assert (load_catalogue(home / "models").entry("third").version, "served") == ("third-1", "served")
    for version in ("third-2", "third-1"):  # promote the new version, then roll back to the previous one
        moved = run_cli("models.roles", "promote", "third", "--version", version, "--confirm", "third", home=home)
        assert moved.returncode == 0, moved.stderr
        entry = load_catalogue(home / "models").entry("third")
        assert (entry.version, entry.role) == (version, "served")
    assert load_catalogue(home / "models").served_names == ("cnn", "unet", "third", "ensemble")
    changes = [(r["from_version"], r["to_version"]) for r in history(home / "models", "third")]
    assert changes == [("third-1", "third-1"), ("third-1", "third-2"), ("third-2", "third-1")]
    listed = run_cli("models.roles", "list", home=home)
    assert "third        served  third-1" in listed.stdout


def test_a_role_change_that_would_break_the_ensemble_is_refused_and_undone(tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    with pytest.raises(CatalogueError, match="needs 'unet' served too"):
        change_role(models_dir, "unet", "shadow", "tester")
    assert load_catalogue(models_dir).entry("unet").role == "served"
    assert json.loads((models_dir / "roles.json").read_text()) == {} and history(models_dir) == []


def test_paired_auc_and_agreement_match_their_definitions() -> None:
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 200)
    reference = truth * 0.1 + rng.random(200) * 0.9
    shadow = truth * 0.35 + rng.random(200) * 0.65
    found = paired_auc(truth, shadow, reference, rounds=300)
    assert found["auc"] == pytest.approx(roc_auc_score(truth, shadow))
    assert found["reference_auc"] == pytest.approx(roc_auc_score(truth, reference))
    assert found["difference"] == pytest.approx(found["auc"] - found["reference_auc"])
    low, high = found["difference_ci95"]
    assert low < found["difference"] < high and low > 0  # the shadow model is clearly better here
    assert found["auc_ci95"][0] < found["auc"] < found["auc_ci95"][1]
    labels = ["disease" if p >= 0.5 else "healthy" for p in shadow]
    reference_labels = ["disease" if p >= 0.5 else "healthy" for p in reference]
    shared = agreement(labels, reference_labels, shadow, reference)
    assert shared["same_label"] == pytest.approx(np.mean(np.array(labels) == np.array(reference_labels)))
    assert shared["mean_abs_difference"] == pytest.approx(np.abs(shadow - reference).mean())
    assert paired_auc(np.ones(5, dtype=int), shadow[:5], reference[:5])["auc"] is None


def test_a_broken_installed_card_is_left_out_and_the_rest_still_serves(tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    install(model_folder(tmp_path / "ok") / "model.onnx", card(), models_dir)
    broken = models_dir / "broken" / "v1"
    broken.mkdir(parents=True)
    (broken / "card.json").write_text(json.dumps({"name": "broken"}))  # no version
    catalogue = load_catalogue(models_dir)
    assert "broken" not in catalogue.names and "third" in catalogue.names
    assert catalogue.served_names == ("cnn", "unet", "ensemble")
