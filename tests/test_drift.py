"""Drift statistics and the committed reference, without a stack: the reference belongs to the served models, the
rule needs both PSI and p, and the job sources map to the names the entry points really give their jobs."""

from __future__ import annotations

import csv
from datetime import datetime, timezone

import numpy as np
import pytest
from sqlalchemy import select

from db.drift import source_of
from db.retrievals import NAME_PREFIX as RETRIEVAL_PREFIX
from listener.jobs import job_name
from models.drift import MIN_IMAGES, P_THRESHOLD, PSI_THRESHOLD, compare, compare_rate, compare_values, load_reference
from models.prevalence import card_prevalence
from models.registry import read_card, read_ensemble
from training.train import DEFAULT_SPLIT


def test_the_committed_reference_is_the_served_models_on_the_validation_split() -> None:
    reference = load_reference()
    ensemble = read_ensemble()
    assert reference["model_versions"] == {"ensemble": ensemble["version"]} | {
        name: read_card(name)["version"] for name in ensemble["members"]
    }, "retrained or recalibrated models: run python -m training.drift_reference and commit its file"
    for name in ensemble["members"]:
        assert reference["prevalences"][name] == card_prevalence(read_card(name))
    with DEFAULT_SPLIT.open(newline="") as handle:
        validation = sum(row["split"] == "validation" for row in csv.DictReader(handle))
    assert reference["n"] == validation
    assert all(
        len(figure["values"]) == validation and len(figure["edges"]) == 9 for figure in reference["values"].values()
    )


def test_the_reference_against_itself_does_not_drift() -> None:
    reference = load_reference()
    values = {figure: stored["values"] for figure, stored in reference["values"].items()}
    rates = {figure: (round(rate * reference["n"]), reference["n"]) for figure, rate in reference["rates"].items()}
    found = compare(reference, values, rates)
    assert len(found) == len(values) + len(rates)
    assert all(c.psi < 0.01 and c.p_value > 0.5 and not c.drift for c in found)


def test_drift_needs_both_a_large_psi_and_a_small_p() -> None:
    stored = load_reference()["values"]["pixel_std"]
    nudged = compare_rate("positive:cnn", 5200, 10_000, 0.5, 317)  # 52% instead of 50%: certain, but small
    assert nudged.p_value < P_THRESHOLD and nudged.psi < PSI_THRESHOLD and not nudged.drift
    few_low = compare_values("pixel_std", [min(stored["values"])] * (MIN_IMAGES - 1), stored)  # too few to tell
    assert few_low.psi > PSI_THRESHOLD and few_low.p_value < P_THRESHOLD and not few_low.drift
    assert compare_values("pixel_std", [min(stored["values"])] * MIN_IMAGES, stored).drift
    low = compare_values("pixel_std", np.asarray(stored["values"]) * 0.7, stored)  # contrast cut by 30%
    assert low.drift and low.value < low.reference
    assert compare_rate("positive:cnn", 0, 100, 0.5, 317).drift
    assert not compare_rate("positive:cnn", 50, 100, 0.5, 317).drift


def test_sources_follow_the_names_the_entry_points_give_their_jobs() -> None:
    now = datetime(2026, 12, 8, tzinfo=timezone.utc)
    assert source_of(job_name("MODALITY1", now)) == "c-store"
    assert source_of(f"STOW-RS from alice at {now:%Y-%m-%d %H:%M:%S} UTC") == "stow-rs"
    assert source_of(f"{RETRIEVAL_PREFIX}pacs at {now:%Y-%m-%d %H:%M:%S} UTC") == "retrieval"
    assert source_of("ward 7 follow-ups") == "upload"


def test_an_uploaded_dicom_keeps_its_modality_and_its_facts_say_dicom(web_client, web_token, web_db) -> None:
    from db.drift import facts_of
    from db.models import Image
    from db.session import session_scope
    from tests.conftest import SHARED_DATA
    from tests.test_docs import EXAMPLE_DICOM
    from tests.web_fixtures import upload

    dicom = SHARED_DATA / "dicom" / EXAMPLE_DICOM  # a CR, JPEG baseline; under the test app's 1 MB limit
    if not dicom.exists():
        pytest.skip(f"{dicom} is not here (the shared data)")
    files = [upload("ward/IM0001.dcm", dicom.read_bytes())]
    response = web_client.post("/api/v1/jobs", data={"files": files}, headers=web_token("alice"))
    assert response.status_code == 201, response.get_data(as_text=True)
    with session_scope(web_db) as session:
        image = session.scalars(select(Image)).one()
        image.processed_at = image.created_at  # as the worker would set it
        facts = facts_of(image, "ward 7")
    assert image.modality == "CR", (image.status, image.error, image.sop_instance_uid, image.stored_name)
    assert (facts.source, facts.format, facts.modality, facts.bit_depth) == (
        "upload",
        "dicom",
        "CR",
        str(image.bits_stored),
    )
