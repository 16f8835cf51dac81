"""Per-finding probabilities in the web app: the results JSON, the CSV's finding columns, the job page's Findings
column, and per-finding evaluation against a site's labels (checked against scikit-learn). Flask test client on a
real database; the worker side is tests/test_findings_e2e.py."""

from __future__ import annotations

import csv
import io
from dataclasses import replace

import numpy as np
import pytest
from sklearn.metrics import recall_score, roc_auc_score

from db.findings import FindingPrediction
from db.session import session_scope
from tests.sitetools_helpers import create_job, image_ids, predict

THRESHOLD = {"Effusion": 0.5, "Mass": 0.3}


def store_findings(
    sessions, job_id: int, probabilities: dict[str, dict[str, float]], unvalidated: tuple[str, ...] = ()
) -> None:
    """{path: {finding: probability}} stored as the worker stores them; `unvalidated` findings failed validation."""
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
                        validated=name not in unvalidated,
                        operating_point="specificity 0.90 on validation",
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
    assert "<th>Findings</th>" in page
    assert '<span class="finding present">Mass 0.90 <span class="threshold small muted">' in page
    assert "≥&nbsp;0.30, specificity 0.90 on validation" in page  # the threshold and its operating point, in place
    assert f"Effusion {p_effusion[0]:.3f} (threshold 0.500, specificity 0.90 on validation)" in page  # tooltip
    assert "not validated" not in page

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


def test_unvalidated_findings_are_stored_but_shown_only_when_the_setting_asks(
    web_app, web_client, web_auth, web_token, web_db
):
    headers = web_token("alice")
    paths = [f"h/{i}.png" for i in range(4)]
    job_id = create_job(web_client, headers, paths)
    predict(web_db, job_id, {path: (0.5, 0.5) for path in paths})
    store_findings(web_db, job_id, {p: {"Effusion": 0.6, "Mass": 0.9} for p in paths}, unvalidated=("Mass",))
    labels_csv = "path,label,Effusion,Mass\n" + "".join(f"{p},disease,{i % 2},{i % 2}\n" for i, p in enumerate(paths))
    data = {"file": (io.BytesIO(labels_csv.encode()), "labels.csv")}
    assert web_client.post(f"/api/v1/jobs/{job_id}/labels", data=data, headers=headers).status_code == 201
    web_auth.login("alice")

    def shown() -> tuple[dict, list[str], str, dict]:
        rows = web_client.get(f"/api/v1/jobs/{job_id}/results", headers=headers).get_json()["results"]
        text = web_client.get(f"/jobs/{job_id}/results.csv", headers=headers).text
        columns = [c for c in next(csv.reader(io.StringIO(text))) if c.startswith("finding_")]
        page = web_client.get(f"/jobs/{job_id}").get_data(as_text=True)
        evaluation = web_client.get(f"/api/v1/jobs/{job_id}/evaluation", headers=headers).get_json()
        return rows[0]["findings"], columns, page, evaluation["findings"]

    findings, columns, page, evaluated = shown()
    assert list(findings) == ["Effusion"] and findings["Effusion"]["validated"] is True
    assert columns == ["finding_Effusion"] and "Mass" not in page and list(evaluated) == ["Effusion"]
    with session_scope(web_db) as session:
        assert session.query(FindingPrediction).filter_by(finding="Mass", validated=False).count() == len(paths)

    web_app.config["SETTINGS"] = replace(web_app.config["SETTINGS"], show_unvalidated_findings=True)
    findings, columns, page, evaluated = shown()
    assert findings["Mass"]["validated"] is False and findings["Mass"]["probability"] == pytest.approx(0.9)
    assert columns == ["finding_Effusion", "finding_Mass_not_validated"]
    assert '<span class="not-validated">not validated</span>' in page and "Mass 0.900 (threshold 0.300" in page
    assert sorted(evaluated) == ["Effusion", "Mass"]
