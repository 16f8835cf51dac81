"""Evaluation against a site's own labels: matching the CSV to images, reporting what did not match, and the
numbers, checked against scikit-learn on the same arrays. Through the Flask test client on a real database."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_score, recall_score, roc_auc_score
from sqlalchemy import select

from db.labels import JobLabel
from db.session import session_scope
from models.metrics import bootstrap_auc_ci
from tests.sitetools_helpers import THRESHOLDS, create_job, predict

PATHS = ["site/a/1.png", "site/b/1.png", "site/a/2.png", "site/c/3.png", "site/c/4.png", "site/c/5.png"]
LABELS_CSV = """path,label,Effusion,PatientAge
site/a/1.png,disease,1,44
b/1.png,healthy,0,50
1.png,disease,,61
2.png,healthy,,30
/mnt/export/site/c/3.png,1,,
site/c/4.png,maybe,,
site/c/4.png,0,,
missing/9.png,disease,,
site/a/2.png,disease,,
site/c/3.png,healthy,x,
"""


def _post_labels(client, headers, job_id, text: str, as_file: bool = True):
    if as_file:
        data = {"file": (io.BytesIO(text.encode()), "labels.csv")}
        return client.post(f"/api/v1/jobs/{job_id}/labels", data=data, headers=headers)
    return client.post(f"/api/v1/jobs/{job_id}/labels", data=text, headers=headers | {"Content-Type": "text/csv"})


def test_rows_match_by_path_its_end_or_the_file_name_and_every_unused_row_is_reported(web_client, web_token, web_db):
    headers = web_token("alice")
    job_id = create_job(web_client, headers, PATHS)
    response = _post_labels(web_client, headers, job_id, LABELS_CSV)
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert (body["rows"], body["used"]) == (10, 5)
    problems = {row["line"]: row["problem"] for row in body["unused"]["rows"]}
    assert body["unused"]["count"] == 5 and sorted(problems) == [4, 7, 9, 10, 11]
    assert "matches 2 images" in problems[4]  # 1.png is in two folders
    assert "healthy or disease" in problems[7]
    assert "no image of this job" in problems[9]
    assert "line 5 already labels this image" in problems[10]
    assert "Effusion must be 0 or 1" in problems[11]
    assert body["images_without_label"] == {"count": 1, "paths": ["site/c/5.png"], "listed": 1}
    assert body["findings"] == {"Effusion": {"labelled": 2, "positive": 1}}
    assert body["ignored_columns"] == ["PatientAge"]
    with session_scope(web_db) as session:
        used = session.execute(
            select(JobLabel.path, JobLabel.label).where(JobLabel.job_id == job_id, JobLabel.problem.is_(None))
        ).all()
        stored = " ".join(str(row) for row in session.execute(select(JobLabel.__table__)).all())
    assert sorted(used) == sorted(
        [
            ("site/a/1.png", "disease"),
            ("b/1.png", "healthy"),
            ("2.png", "healthy"),
            ("/mnt/export/site/c/3.png", "disease"),
            ("site/c/4.png", "healthy"),
        ]
    )
    assert "44" not in stored and "61" not in stored  # the ignored column is never stored

    replaced = _post_labels(web_client, headers, job_id, "path,label\nsite/c/5.png,healthy\n", as_file=False)
    assert replaced.status_code == 201 and replaced.get_json()["used"] == 1  # a new upload replaces the old one
    assert replaced.get_json()["images_without_label"]["count"] == 5


def _scores(n: int, seed: int = 7) -> tuple[list[str], np.ndarray, dict[str, tuple[float, float]]]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    paths = [f"eval/{i:03d}.png" for i in range(n)]
    cnn = np.clip(0.35 * labels + rng.uniform(0, 0.65, n), 0, 1).round(4)
    unet = np.clip(0.2 * labels + rng.uniform(0, 0.8, n), 0, 1).round(4)
    return paths, labels, {path: (float(c), float(u)) for path, c, u in zip(paths, cnn, unet)}


def test_evaluation_numbers_are_scikit_learns_on_the_same_arrays(web_client, web_auth, web_token, web_db):
    headers = web_token("alice")
    paths, labels, scores = _scores(40)
    job_id = create_job(web_client, headers, paths + ["eval/unscored.png"])
    predict(web_db, job_id, scores)
    rows = "".join(f"{path},{'disease' if y else 'healthy'}\n" for path, y in zip(paths, labels))
    labels_csv = "path,label\n" + rows + "eval/unscored.png,healthy\nnowhere.png,1\n"
    web_auth.login("alice")  # through the job page's form this time
    page = web_client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "Evaluate against your labels" in page and f'data-url="/jobs/{job_id}/evaluation"' in page
    form = {"file": (io.BytesIO(labels_csv.encode()), "labels.csv")}
    assert web_client.post(f"/jobs/{job_id}/labels", data=form).status_code == 400  # no CSRF token
    form = {
        "file": (io.BytesIO(labels_csv.encode()), "labels.csv"),
        "csrf_token": web_auth.csrf_token(f"/jobs/{job_id}"),
    }
    stored = web_client.post(f"/jobs/{job_id}/labels", data=form, follow_redirects=True).get_data(as_text=True)
    assert "Labels stored: 41 of 42 rows matched an image; 1 rows not used" in stored

    evaluation = web_client.get(f"/api/v1/jobs/{job_id}/evaluation", headers=headers).get_json()
    probabilities = {
        "cnn": np.array([scores[p][0] for p in paths]),
        "unet": np.array([scores[p][1] for p in paths]),
    }
    probabilities["ensemble"] = (probabilities["cnn"] + probabilities["unet"]) / 2
    assert set(evaluation["models"]) == {"cnn", "unet", "ensemble"}
    for name, p in probabilities.items():
        got, threshold = evaluation["models"][name], THRESHOLDS[name]
        predicted = (p >= threshold).astype(int)
        assert got["n"] == 40 and got["labelled_not_scored"] == 1 and got["threshold"] == threshold
        assert got["auc"] == pytest.approx(roc_auc_score(labels, p))
        assert got["auc_ci95"][0] <= got["auc"] <= got["auc_ci95"][1]
        assert got["sensitivity"] == pytest.approx(recall_score(labels, predicted))
        assert got["specificity"] == pytest.approx(recall_score(labels, predicted, pos_label=0))
        assert got["ppv"] == pytest.approx(precision_score(labels, predicted))
        assert got["npv"] == pytest.approx(precision_score(labels, predicted, pos_label=0))
        tn, fp, fn, tp = confusion_matrix(labels, predicted).ravel()
        assert got["confusion_matrix"] == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
        reaching = [t for t in np.unique(p) if recall_score(labels, (p >= t).astype(int)) >= 0.9]
        operating = got["threshold_for_90_sensitivity"]
        assert operating["threshold"] == pytest.approx(max(reaching))
        assert operating["sensitivity"] >= 0.9
        assert operating["specificity"] == pytest.approx(recall_score(labels, (p >= max(reaching)), pos_label=0))
    ensemble = evaluation["models"]["ensemble"]
    assert ensemble["auc_ci95"] == pytest.approx(bootstrap_auc_ci(labels, probabilities["ensemble"]))  # seeded

    svg = web_client.get(f"/api/v1/jobs/{job_id}/evaluation/roc.svg", headers=headers)
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
    root = ElementTree.fromstring(svg.get_data())
    assert root.tag.endswith("svg") and len(svg.get_data()) > 5000
    again = web_client.get(f"/api/v1/jobs/{job_id}/evaluation", headers=headers).get_json()
    assert again == evaluation  # from the cache
    fragment = web_client.get(f"/jobs/{job_id}/evaluation").get_data(as_text=True)  # the job page's section
    assert f'src="/api/v1/jobs/{job_id}/evaluation/roc.svg"' in fragment and "1 label rows not used" in fragment
    assert "nowhere.png" in fragment and "no image of this job" in fragment
    assert "<td>ensemble</td><td>40</td>" in fragment and f"<td>{ensemble['auc']:.3f} [" in fragment
    with web_client.get(f"/api/v1/jobs/{job_id}/evaluation/roc.svg") as cookie_svg:  # the portal's cookie is enough
        assert cookie_svg.status_code == 200


def test_one_class_or_no_predictions_gives_empty_numbers_not_errors(web_client, web_token, web_db):
    headers = web_token("alice")
    job_id = create_job(web_client, headers, ["x/1.png", "x/2.png", "x/3.png"])
    assert (
        _post_labels(web_client, headers, job_id, "path,label\nx/1.png,healthy\nx/2.png,healthy\n").status_code == 201
    )
    before = web_client.get(f"/api/v1/jobs/{job_id}/evaluation", headers=headers).get_json()
    assert before["models"]["ensemble"] == {"n": 0, "labelled_not_scored": 2}
    predict(web_db, job_id, {"x/1.png": (0.2, 0.3), "x/2.png": (0.6, 0.7)})
    after = web_client.get(f"/api/v1/jobs/{job_id}/evaluation", headers=headers).get_json()
    cnn = after["models"]["cnn"]
    assert cnn["n"] == 2 and cnn["auc"] is None and cnn["auc_ci95"] is None
    assert cnn["confusion_matrix"] == {"tn": 1, "fp": 1, "fn": 0, "tp": 0}
    assert cnn["threshold_for_90_sensitivity"] is None
    assert web_client.get(f"/api/v1/jobs/{job_id}/evaluation/roc.svg", headers=headers).status_code == 200


def test_bad_label_files_are_refused_with_a_reason(web_client, web_token):
    headers = web_token("alice")
    job_id = create_job(web_client, headers, ["x/1.png"])
    missing = web_client.get(f"/api/v1/jobs/{job_id}/evaluation", headers=headers)
    assert missing.status_code == 404 and "has no labels yet" in missing.get_json()["message"]
    cases = {
        "filename,diagnosis\nx/1.png,disease\n": "needs the columns 'path' and 'label'",
        "": "the labels file is empty",
    }
    for text, message in cases.items():
        response = _post_labels(web_client, headers, job_id, text)
        assert response.status_code == 400 and message in response.get_json()["message"], text
    latin1 = web_client.post(
        f"/api/v1/jobs/{job_id}/labels",
        data="path,label\nx/é.png,1\n".encode("latin-1"),
        headers=headers | {"Content-Type": "text/csv"},
    )
    assert latin1.status_code == 400 and "not UTF-8" in latin1.get_json()["message"]
    json_body = web_client.post(f"/api/v1/jobs/{job_id}/labels", json={"path": "x"}, headers=headers)
    assert json_body.status_code == 400 and "text/csv" in json_body.get_json()["message"]
    semicolons = _post_labels(web_client, headers, job_id, "path;label\nx/1.png;disease\n")
    assert semicolons.status_code == 201 and semicolons.get_json()["used"] == 1
    bob = web_token("bob")
    assert _post_labels(web_client, bob, job_id, "path,label\nx/1.png,1\n").status_code == 404
    assert web_client.get(f"/api/v1/jobs/{job_id}/evaluation", headers=bob).status_code == 404
