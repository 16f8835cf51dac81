"""The two model checks: the source probe (training/source_probe.py) and the upsampled-images check
(training/upsampled_check.py), as units on planted data and as smoke runs of their CLIs on the 40-image folder."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from models.registry import WEIGHTS_DIR
from training.data import load_records, write_split
from training.source_probe import DISEASE_ONLY, PIXELS, SCOPES, fit_probe
from training.tried_card import SOURCE_PROBE_JSON, UPSAMPLED_CHECK_JSON, tried_section
from training.upsampled_check import decide, paired_auc_difference_ci

MINI = Path(__file__).parent / "data" / "nih-mini"


def planted_sources(rng: np.random.Generator, n: int, informative: bool) -> tuple[np.ndarray, np.ndarray]:
    sources = rng.choice(np.array(["github:a/one", "github:b/two", "github:c/three"]), n)
    features = rng.normal(size=(n, 8))
    if informative:
        features[:, 0] += 6.0 * (sources == "github:b/two")
        features[:, 1] += 6.0 * (sources == "github:c/three")
    return features, sources


@pytest.mark.parametrize("informative", [True, False])
def test_the_probe_finds_a_planted_source_and_not_one_that_is_absent(informative: bool) -> None:
    rng = np.random.default_rng(7)
    splits = {s: planted_sources(rng, n, informative) for s, n in (("train", 300), ("validation", 100), ("test", 200))}
    result = fit_probe({s: x for s, (x, _) in splits.items()}, {s: y for s, (_, y) in splits.items()})
    assert result is not None and result["n_test"] == 200 and sum(result["sources_test"].values()) == 200
    majority = Counter(splits["train"][1]).most_common(1)[0][0]
    assert result["majority_source"] == majority
    assert result["majority_baseline"] == pytest.approx(np.mean(splits["test"][1] == majority))
    if informative:
        assert result["test_accuracy_ci95"][0] > 0.9 > result["majority_baseline"]
        assert min(result["test_recall_per_source"].values()) > 0.8
    else:
        assert result["test_accuracy"] < result["majority_baseline"] + 0.1


def test_the_probe_needs_two_sources_in_train() -> None:
    x = np.zeros((4, 2))
    one = np.array(["github:a/one"] * 4)
    assert fit_probe({"train": x, "validation": x, "test": x}, {"train": one, "validation": one, "test": one}) is None


def test_source_probe_cli_on_the_mini_folder(tmp_path: Path, capsys) -> None:
    from training.source_probe import main

    assert tried_section("cnn", tmp_path) == ""  # nothing measured, nothing said
    output = tmp_path / SOURCE_PROBE_JSON
    split = tmp_path / "split.csv"
    main(
        ["--data", str(MINI), "--models", "cnn", "--split-file", str(split), "--min-source-images", "10"]
        + ["--output", str(output)]
    )
    result = json.loads(output.read_text())
    assert result["left_out"] == ["github:samadon1/radSIM"]  # 9 images, under 10
    assert set(result["probes"]) == {"cnn", "cnn" + DISEASE_ONLY, PIXELS} and set(result["probes"]["cnn"]) == set(
        SCOPES
    )
    all_images = result["probes"]["cnn"]["all images"]
    assert all_images is not None and set(all_images["sources_test"]) <= {
        "github:dinbe0527/kcr2019d1",
        "github:muhammedtalo/COVID-19",
    }
    low, high = all_images["test_accuracy_ci95"]
    assert 0.0 <= low <= all_images["test_accuracy"] <= high <= 1.0
    assert set(all_images["test_recall_per_source"]) == set(all_images["sources_test"])
    assert result["probes"]["cnn"]["native resolution"] is None  # one source left among native images
    printed = capsys.readouterr().out
    assert printed.count("| `cnn` |") == printed.count("| `cnn` disease logit only |") == 1 and "majority" in printed
    section = tried_section("cnn", tmp_path)
    assert section.startswith("\n## What we tried\n") and "**Source probe**" in section and "| `cnn` |" in section
    assert "Without the 721" not in section


def test_the_paired_difference_is_zero_for_one_model_and_positive_for_a_better_one() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    noisy = labels + rng.normal(0, 1.0, 200)
    assert paired_auc_difference_ci(labels, noisy, noisy) == [0.0, 0.0]
    low, high = paired_auc_difference_ci(labels, noisy, labels + rng.normal(0, 0.2, 200))
    assert 0 < low < high
    assert paired_auc_difference_ci(np.ones(10, int), noisy[:10], noisy[:10]) is None


def validation_with(difference: float, ci: list[float] | None) -> dict:
    return {"native resolution": {"n": 215, "difference": difference, "difference_ci95": ci}}


def test_the_decision_needs_a_difference_whose_interval_excludes_zero() -> None:
    assert decide(validation_with(0.04, [0.01, 0.07]))["verdict"] == "exclude"
    assert decide(validation_with(-0.04, [-0.07, -0.01]))["verdict"] == "keep"
    undecided = decide(validation_with(0.02, [-0.01, 0.05]))
    assert undecided["verdict"] == "keep" and "no measurable difference" in undecided["reason"]
    assert decide(validation_with(None, None))["verdict"] == "keep"


def mini_split(path: Path) -> None:
    """Most native images in validation (so both classes have 5+ there), the upsampled ones spread over all."""
    records = load_records(MINI)
    seen: Counter = Counter()
    assignment = {}
    for r in records:
        k = seen[(r.upsampled, r.label)]
        seen[(r.upsampled, r.label)] += 1
        assignment[r.image] = (
            ("validation", "train", "test")[k % 3] if r.upsampled else ("validation", "train")[k % 3 == 2]
        )
    write_split(path, records, assignment)


def test_upsampled_check_cli_on_the_mini_folder(tmp_path: Path, capsys) -> None:
    from training.train import train
    from training.upsampled_check import main

    split = tmp_path / "split.csv"
    mini_split(split)
    candidate = tmp_path / "without"
    card = train("cnn", MINI, split_file=split, output_dir=candidate, epochs=1, exclude_upsampled=True)
    assert card["data"]["exclude_upsampled"] and card["data"]["splits"]["train"]["upsampled_from_64px"] == 0
    output = tmp_path / UPSAMPLED_CHECK_JSON
    main(
        ["--data", str(MINI), "--candidate", str(candidate), "--split-file", str(split), "--with-test"]
        + ["--output", str(output)]
    )
    result = json.loads(output.read_text())
    assert result["baseline"]["weights"] == str(WEIGHTS_DIR) and result["candidate"]["exclude_upsampled"] is True
    native = result["validation"]["native resolution"]
    assert native["n"] == 16 and native["disease"] == 10
    assert native["difference"] == pytest.approx(native["candidate"]["auc"] - native["baseline"]["auc"])
    assert native["difference_ci95"][0] <= native["difference_ci95"][1]
    assert result["decision"]["verdict"] in ("keep", "exclude")
    assert result["test_information_only"]["native resolution"]["n"] == 0
    printed = capsys.readouterr().out
    assert printed.index("Decision:") < printed.index("Test (information only")
    section = tried_section("unet", tmp_path)
    assert f"Decision (validation only): {result['decision']['verdict']} the upsampled images" in section
    assert section.index("Decision (validation only)") < section.index("Test split, as information only")
