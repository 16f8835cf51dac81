"""The test-time augmentation trial (training/tta_trial.py): its views and their inverse on planted images, its
pre-set rule, and a smoke run of its CLI with the served models on the 40-image folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.registry import read_card
from tests.test_model_checks import MINI, mini_split
from training.tried_card import tried_section
from training.tta_trial import TTA_JSON, VIEWS, helps, view_batch, warp


def test_each_view_moves_a_point_where_it_says_and_its_inverse_brings_it_back() -> None:
    plane = np.zeros((128, 128))
    plane[40, 70] = 1.0
    right = warp(plane, 0.0, 4.0, 1.0)
    assert np.unravel_index(right.argmax(), right.shape) == (40, 74)
    down = warp(plane, 4.0, 0.0, 1.0)
    assert np.unravel_index(down.argmax(), down.shape) == (44, 70)
    for _, dy, dx, scale in VIEWS:
        back = warp(warp(plane, dy, dx, scale), dy, dx, scale, inverse=True)
        assert np.unravel_index(back.argmax(), back.shape) == (40, 70)
    zoomed = warp(np.ones((128, 128)), 0.0, 0.0, 0.95)
    assert zoomed[64, 64] == pytest.approx(1.0) and zoomed[0, 0] == 0.0  # zoom out: black fill at the edge
    batch = np.random.default_rng(0).random((2, 128, 128, 1)).astype(np.float32)
    assert view_batch(batch, VIEWS[0]) is batch and not np.allclose(view_batch(batch, VIEWS[1]), batch)


def entry(ci: list[float], ece: tuple[float, float], border: tuple[float, float] | None) -> dict:
    def side(i: int) -> dict:
        return {"ece": ece[i], "border_share": border[i] if border else None}

    return {"auc_difference": sum(ci) / 2, "auc_difference_ci95": ci, "plain": side(0), "tta": side(1)}


def test_the_rule_needs_an_auc_gain_above_zero_and_no_worse_calibration_or_border() -> None:
    assert helps(entry([0.005, 0.02], (0.05, 0.055), (0.40, 0.41)))[0]
    assert helps(entry([0.005, 0.02], (0.05, 0.05), None))[0]
    assert not helps(entry([-0.001, 0.02], (0.05, 0.05), (0.40, 0.40)))[0]
    ok, reasons = helps(entry([0.005, 0.02], (0.05, 0.07), (0.40, 0.43)))
    assert not ok and len(reasons) == 2 and "ECE" in reasons[0] and "border" in reasons[1]


def test_tta_trial_cli_on_the_mini_folder(tmp_path: Path, capsys) -> None:
    from training.tta_trial import main

    split = tmp_path / "split.csv"
    mini_split(split)
    output = tmp_path / TTA_JSON
    main(["--data", str(MINI), "--split-file", str(split), "--output", str(output)])
    result = json.loads(output.read_text())
    validation = result["validation"]
    assert validation["n"] == 16 and validation["disease"] == 10 and len(result["views"]) == len(VIEWS)
    for name in ("cnn", "unet", "ensemble"):
        m = validation["models"][name]
        assert m["auc_difference"] == pytest.approx(m["tta"]["auc"] - m["plain"]["auc"])
        assert m["inference_ms_per_image"]["tta"] > m["inference_ms_per_image"]["plain"] > 0
        assert result["decision"]["per_model"][name]["helps"] == helps(m)[0]
    assert 0 <= validation["models"]["unet"]["tta"]["border_share"] <= 1
    assert len(validation["models"]["unet"]["border_share_by_level"]) > 1
    assert result["decision"]["serve"] == all(d["helps"] for d in result["decision"]["per_model"].values())
    assert "Decision: TTA" in capsys.readouterr().out
    assert "Test-time augmentation" in tried_section("cnn", tmp_path)
    assert tried_section("seed-cnn", tmp_path) == ""  # not a served member: no TTA entry


def test_border_trial_cli_on_the_mini_folder(tmp_path: Path, capsys) -> None:
    from training.border_trial import BORDER_TRIAL_JSON, main

    split = tmp_path / "split.csv"
    mini_split(split)
    output = tmp_path / BORDER_TRIAL_JSON
    candidate = tmp_path / "candidate"
    main(["--data", str(MINI), "--candidate", str(candidate), "--split-file", str(split), "--max-minutes", "0.001"]
         + ["--output", str(output)])  # fmt: skip
    result = json.loads(output.read_text())
    served_version = read_card("unet")["version"]
    assert result["training"]["epochs_run"] == 1 and (candidate / "unet" / "weights.npz").exists()
    native = result["validation_native"]
    assert native["n"] == 16 and 0 <= native["candidate"]["border_share"] <= 1
    assert result["candidate_version"].startswith("unet-border-") and result["candidate_version"] != served_version
    gain = result["auc_difference_ci95"][0] > 0
    drop = native["candidate"]["border_share"] <= native["served"]["border_share"] - 0.05
    assert result["decision"]["serve"] == (gain and drop)
    assert "Border augmentation alone" in capsys.readouterr().out
    assert "Border augmentation alone" in tried_section("unet", tmp_path)
