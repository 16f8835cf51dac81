"""Per-finding probabilities in the web app: the results JSON, the CSV's finding columns, the job page's Findings
column, and per-finding evaluation against a site's labels (checked against scikit-learn). Flask test client on a
real database; the worker side is tests/test_findings_e2e.py."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from sklearn.metrics import recall_score, roc_auc_score

from db.findings import FindingPrediction
from db.session import session_scope
from tests.sitetools_helpers import create_job, image_ids, predict

THRESHOLD = {"Effusion": 0.5, "Mass": 0.3}


def store_findings(sessions, job_id: int, probabilities: dict[str, dict[str, float]]) -> None:
    """{path: {finding: probability}} stored as the worker stores them."""
    ids = image_ids(sessions, job_id)
    with session_scope(sessions) as session:
        for path, found in probabilities.items():
            for name, p in found.items():
                label = "present" if p >= THRESHOLD[name] else "absent"
                session.add(
                    FindingPrediction(
                        image_id=ids[path],
                        finding=name,
                        model_version="findings-test",
                        probability=p,
                        label=label,
                        threshold=THRESHOLD[name],
                    )
                )


def test_findings_in_results_csv_job_page_and_evaluation(web_client, web_auth, web_token, web_db):
    headers = web_token("alice")
    rng = np.random.default_rng(3)
    paths = [f"f/{i:02d}.png" for i in range(30)]
    effusion = rng.integers(0, 2, len(paths))
    effusion[:2] = [0, 1]
    p_effusion = np.clip(0.4 * effusion + rng.uniform(0, 0.6, len(paths)), 0, 1).round(4)
    job_id = create_job(web_client, headers, paths + ["f/unscored.png"])
    predict(web_db, job_id, {path: (0.5, 0.5) for path in paths})
    store_findings(web_db, job_id, {p: {"Effusion": float(e), "Mass": 0.9} for p, e in zip(paths, p_effusion)})

    rows = web_client.get(f"/api/v1/jobs/{job_id}/results?per_page=100", headers=headers).get_json()["results"]
    by_path = {row["path"]: row for row in rows}
    first = by_path["f/00.png"]["findings"]
    assert list(first) == ["Effusion", "Mass"] and first["Mass"]["label"] == "present"
    assert first["Effusion"]["probability"] == pytest.approx(p_effusion[0])
    assert by_path["f/unscored.png"]["findings"] == {}

    table = list(csv.DictReader(io.StringIO(web_client.get(f"/jobs/{job_id}/results.csv", headers=headers).text)))
    assert [c for c in table[0] if c.startswith("finding_")] == ["finding_Effusion", "finding_Mass"]
    csv_rows = {row["path"]: row for row in table}
    assert float(csv_rows["f/01.png"]["finding_Effusion"]) == pytest.approx(p_effusion[1])
    assert csv_rows["f/unscored.png"]["finding_Mass"] == ""

    web_auth.login("alice")
    page = web_client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "<th>Findings</th>" in page and '<span class="finding present">Mass 0.90 <span class="threshold' in page
    assert '<span class="threshold small muted">≥&nbsp;0.50</span></span>' in page  # the threshold in place
    assert f"Effusion {p_effusion[0]:.3f} (threshold 0.500)" in page  # every finding in the tooltip

    labels_csv = "path,label,Effusion\n" + "".join(f"{p},disease,{e}\n" for p, e in zip(paths, effusion))
    data = {"file": (io.BytesIO(labels_csv.encode()), "labels.csv")}
    assert web_client.post(f"/api/v1/jobs/{job_id}/labels", data=data, headers=headers).status_code == 201
    evaluation = web_client.get(f"/api/v1/jobs/{job_id}/evaluation", headers=headers).get_json()
    assert list(evaluation["findings"]) == ["Effusion"]  # Mass is predicted but not labelled
    got = evaluation["findings"]["Effusion"]
    assert (got["n"], got["positives"], got["threshold"]) == (30, int(effusion.sum()), 0.5)
    assert got["auc"] == pytest.approx(roc_auc_score(effusion, p_effusion))
    assert got["sensitivity"] == pytest.approx(recall_score(effusion, p_effusion >= 0.5))
    fragment = web_client.get(f"/jobs/{job_id}/evaluation").get_data(as_text=True)
    assert 'id="finding-metrics"' in fragment
    assert f"<td>Effusion</td><td>30</td><td>{int(effusion.sum())}</td>" in fragment
