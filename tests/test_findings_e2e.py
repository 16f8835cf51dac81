"""End to end: a job's per-finding probabilities over HTTP (results JSON and CSV) from the real worker, and the
same numbers from the registry in this process. Runs on SQLite and on a fresh PostgreSQL database."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from sqlalchemy import func, select

from db.findings import FindingPrediction
from db.models import Image
from db.session import session_scope
from models.findings import ABSENT, PRESENT, FindingHeads
from models.preprocess import load_and_preprocess
from models.registry import load_model
from tests.conftest import PIPELINE_IMAGES, Stack

pytestmark = pytest.mark.e2e

AGREEMENT = 1e-3  # the worker and this process run the same ONNX files; only batch composition differs


def test_results_carry_per_finding_probabilities_in_json_and_csv(e2e_stack: Stack) -> None:
    heads = FindingHeads.load()
    assert heads is not None and heads.served
    paths = sorted(PIPELINE_IMAGES.glob("*.png"))[:10]
    job = e2e_stack.api.create_job([(f"scan/{p.name}", p.read_bytes()) for p in paths], name="findings")
    assert e2e_stack.api.wait_finished(job["id"])["status"] == "done"

    rows = {row["filename"]: row for row in e2e_stack.api.results(job["id"])}
    assert sorted(rows) == sorted(p.name for p in paths)
    for row in rows.values():
        assert list(row["findings"]) == sorted(heads.served)
        for found in row["findings"].values():
            assert 0.0 <= found["probability"] <= 1.0
            assert found["label"] == (PRESENT if found["probability"] >= found["threshold"] else ABSENT)
            assert found["model_version"] == heads.version
            assert found["validated"] is True and found["operating_point"] == heads.operating_point
    with session_scope(e2e_stack.sessions) as session:
        stored = session.scalar(
            select(func.count()).select_from(FindingPrediction).join(Image).where(Image.job_id == job["id"])
        )
    assert stored == len(paths) * len(heads.findings)  # every head stored; results show the served ones only

    response = e2e_stack.api.http.get(f"{e2e_stack.base_url}/jobs/{job['id']}/results.csv", timeout=30)
    assert response.status_code == 200, response.text[:300]
    table = list(csv.DictReader(io.StringIO(response.text)))
    assert [c for c in table[0] if c.startswith("finding_")] == [f"finding_{n}" for n in sorted(heads.served)]
    for line in table:
        for name in heads.served:
            assert float(line[f"finding_{name}"]) == pytest.approx(
                rows[line["filename"]]["findings"][name]["probability"]
            )

    cache = e2e_stack.settings.onnx_cache_dir  # the files the worker loaded
    features = {}
    for name in heads.feature_models:
        model = load_model(name, runtime="onnx", cache_dir=cache)
        batch = np.stack([load_and_preprocess(p, model.input_size, model.channels) for p in paths])
        features[name] = model.predict_with_features(batch)[1]
    for path, expected in zip(paths, heads.served_findings(features)):
        got = rows[path.name]["findings"]
        for name, found in expected.items():
            assert got[name]["probability"] == pytest.approx(found["probability"], abs=AGREEMENT), (path.name, name)
