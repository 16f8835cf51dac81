"""The ensemble's combination rule (models.registry.Ensemble) and the prior shift (models.prevalence), on random
probabilities and thresholds, and on the committed ensemble and cards."""

from __future__ import annotations

import numpy as np
import pytest

from models.prevalence import PriorShift, card_prevalence, mean_logit_rate
from models.registry import ENSEMBLE_MEMBERS, WEIGHTS_DIR, Ensemble, read_card, read_ensemble
from settings import Settings, SettingsError

RNG_SEED = 20261126


def _random_members(rng: np.random.Generator, n: int) -> tuple[dict, dict]:
    """Probabilities of two members, float32 like the served ones, with a share exactly at or next to the
    thresholds, and thresholds anywhere in (0, 1)."""
    thresholds = {m: float(rng.uniform(0.01, 0.99)) for m in ENSEMBLE_MEMBERS}
    probabilities = {}
    for m in ENSEMBLE_MEMBERS:
        p = rng.uniform(0, 1, n)
        near = rng.random(n) < 0.2
        p[near] = thresholds[m] + rng.choice([-1e-7, 0.0, 1e-7], near.sum())
        probabilities[m] = np.clip(p, 0, 1).astype(np.float32)
    return probabilities, thresholds


def test_the_ensemble_never_contradicts_two_agreeing_members() -> None:
    rng = np.random.default_rng(RNG_SEED)
    agreeing = 0
    for _ in range(200):
        probabilities, thresholds = _random_members(rng, 500)
        ensemble = Ensemble(version="test", member_thresholds=thresholds, members=ENSEMBLE_MEMBERS)
        labels = np.array(ensemble.labels(probabilities))
        votes = {m: np.where(probabilities[m] >= thresholds[m], "disease", "healthy") for m in ENSEMBLE_MEMBERS}
        agree = votes["cnn"] == votes["unet"]
        assert (labels[agree] == votes["cnn"][agree]).all()
        agreeing += int(agree.sum())
        # where they disagree, the label is the sign of the mean logit margin, i.e. probability vs threshold
        combined = ensemble.combine(probabilities)
        clear = ~agree & (np.abs(ensemble.margin(probabilities)) > 1e-9)
        assert (labels[clear] == np.where(combined[clear] >= ensemble.threshold, "disease", "healthy")).all()
    assert agreeing > 40_000  # the test did look at many agreeing pairs


def test_two_members_that_agree_on_disease_outweigh_a_high_combined_threshold() -> None:
    """The old rule's failure: both members say disease, but the mean probability sat below a tuned 0.813."""
    ensemble = Ensemble(version="test", member_thresholds={"cnn": 0.693, "unet": 0.663}, members=("cnn", "unet"))
    members = {"cnn": np.array([0.70]), "unet": np.array([0.70])}
    assert ensemble.labels(members) == ["disease"] and ensemble.combine(members)[0] >= ensemble.threshold
    assert ensemble.threshold == pytest.approx(mean_logit_rate([0.693, 0.663]))
    assert 0.663 < ensemble.threshold < 0.693


def test_the_committed_ensemble_derives_its_threshold_from_the_member_cards() -> None:
    ensemble, written = Ensemble.load(WEIGHTS_DIR), read_ensemble()
    cards = {m: read_card(m) for m in ensemble.members}
    assert ensemble.member_thresholds == {m: cards[m]["threshold"] for m in ensemble.members}
    assert written["member_thresholds"] == ensemble.member_thresholds  # the file's record matches the cards
    assert written["threshold"] == pytest.approx(ensemble.threshold)
    assert written["member_versions"] == {m: cards[m]["version"] for m in ensemble.members}
    assert ensemble.trained_prevalence == pytest.approx(card_prevalence(cards["cnn"]), abs=0.01)


def test_the_prior_shift_is_monotone_and_moves_with_the_prevalence() -> None:
    p = np.sort(np.random.default_rng(RNG_SEED).uniform(0, 1, 10_000))
    p = np.concatenate([[0.0], p, [1.0]])
    for target in (0.01, 0.1, 0.3, 0.64, 0.9, 0.99):
        shifted = PriorShift(trained=0.64, target=target)(p)
        assert (np.diff(shifted) >= 0).all() and shifted[0] == 0 and shifted[-1] == 1
        assert ((shifted >= 0) & (shifted <= 1)).all()
    lower, higher = PriorShift(0.64, 0.2)(p[1:-1]), PriorShift(0.64, 0.8)(p[1:-1])
    assert (lower < p[1:-1]).all() and (higher > p[1:-1]).all()
    # odds × [π'/(1−π')] / [π/(1−π)], by hand: p = 0.64 at π = 0.64 is even odds of the prior, so it becomes π'
    assert PriorShift(0.64, 0.1)(0.64) == pytest.approx(0.1)


def test_the_prior_shift_at_the_training_prevalence_changes_nothing() -> None:
    p = np.random.default_rng(RNG_SEED).uniform(0, 1, 1000)
    assert (PriorShift.to(None, 0.64)(p) == p).all()
    assert (PriorShift(0.64, 0.64)(p) == p).all()
    assert PriorShift.to(None, 0.64).target == 0.64


def test_shifting_thresholds_with_probabilities_keeps_every_label() -> None:
    rng = np.random.default_rng(RNG_SEED)
    p, threshold = rng.uniform(0, 1, 10_000), 0.69
    for target in (0.05, 0.3, 0.9):
        shift = PriorShift(0.64, target)
        clear = np.abs(p - threshold) > 1e-9
        assert ((shift(p) >= shift(threshold)) == (p >= threshold))[clear].all()


def test_the_prevalence_setting_is_read_and_checked() -> None:
    assert Settings.from_env({}).prevalence is None
    assert Settings.from_env({"RADBATCH_PREVALENCE": "0.2"}).prevalence == 0.2
    for bad in ("0", "1", "1.5", "-0.1", "nan", "twenty percent"):
        with pytest.raises(SettingsError, match="RADBATCH_PREVALENCE"):
            Settings.from_env({"RADBATCH_PREVALENCE": bad})
