"""Triage and review over the web app: the worklist lists finished, unreviewed studies most suspicious first with
its filters; a review is stored, audited, labels the study's frontal images for the evaluation, and leaves the
worklist; another user sees neither."""

from __future__ import annotations

import csv
import io

from pydicom import uid
from sqlalchemy import select

from db.audit import AuditEvent
from db.jobs import create_job
from db.labels import JobLabel
from db.models import Image, ImageStatus, Prediction, User
from db.session import session_scope

# accession -> (study date, [(view, ensemble probability)], finished)
STUDIES = {
    "ACC-LOW": ("20260110", [("PA", 0.20)], True),
    "ACC-HIGH": ("20260112", [("PA", 0.91), ("LL", 0.99)], True),
    "ACC-MID": ("20260220", [("AP", 0.55)], True),
    "ACC-WAIT": ("20260111", [("PA", 0.97)], False),
}


def seeded(
    web_db, owner: str = "alice", name: str = "DICOM from MYPACS at 2026-12-08 01:00:00 UTC", studies: dict = STUDIES
) -> tuple[int, dict]:
    """A job of `owner` holding these studies, their images predicted (or still queued); (job id, uids by accession)."""
    uids = {}
    with session_scope(web_db) as session:
        user = session.scalar(select(User).where(User.username == owner))
        job = create_job(session, user, name, is_open=False)
        for accession, (date, views, finished) in studies.items():
            uids[accession] = uid.generate_uid()
            for view, probability in views:
                image = Image(job_id=job.id, filename="x.dcm", path="x.dcm", stored_name=None, view_position=view)
                image.study_instance_uid, image.accession_number, image.study_date = uids[accession], accession, date
                image.status = ImageStatus.done if finished else ImageStatus.queued
                session.add(image)
                session.flush()
                if finished:
                    label = "disease" if probability >= 0.5 else "healthy"
                    session.add(
                        Prediction(
                            image_id=image.id,
                            model_name="ensemble",
                            headline=True,  # the worker marks the headline model's row
                            model_version="e1",
                            probability=probability,
                            label=label,
                            threshold=0.5,
                        )
                    )
        return job.id, uids


def accessions(response) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [study["accession_number"] for study in response.get_json()["studies"]]


def test_the_worklist_is_most_suspicious_first_and_filters(web_client, web_token, web_db) -> None:
    job_id, _ = seeded(web_db)
    headers = web_token("alice")
    assert accessions(web_client.get("/api/v1/worklist", headers=headers)) == ["ACC-HIGH", "ACC-MID", "ACC-LOW"]
    (high,) = [
        s
        for s in web_client.get("/api/v1/worklist", headers=headers).get_json()["studies"]
        if s["accession_number"] == "ACC-HIGH"
    ]
    assert high["probability"] == 0.91 and high["views"] == ["PA", "LL"]  # the lateral's 0.99 is not counted
    january = web_client.get("/api/v1/worklist?date=20260101-20260131", headers=headers)
    assert accessions(january) == ["ACC-HIGH", "ACC-LOW"]
    assert accessions(web_client.get("/api/v1/worklist?source=MYPACS", headers=headers)) == [
        "ACC-HIGH",
        "ACC-MID",
        "ACC-LOW",
    ]
    assert accessions(web_client.get("/api/v1/worklist?source=OTHER", headers=headers)) == []
    assert accessions(web_client.get(f"/api/v1/worklist?job={job_id + 1}", headers=headers)) == []
    assert accessions(web_client.get("/api/v1/worklist", headers=web_token("bob"))) == []
    assert web_client.get("/api/v1/worklist?date=soon", headers=headers).status_code == 400


def test_a_review_is_stored_audited_labels_the_study_and_leaves_the_worklist(web_client, web_token, web_db) -> None:
    job_id, uids = seeded(web_db)
    headers = web_token("alice")
    body = {"job_id": job_id, "verdict": "disagree", "label": "healthy", "findings": [], "comment": "old scar"}
    answer = web_client.post(f"/api/v1/studies/{uids['ACC-HIGH']}/reviews", json=body, headers=headers)
    assert answer.status_code == 201, answer.get_data(as_text=True)
    assert (answer.get_json()["verdict"], answer.get_json()["label"], answer.get_json()["reviewer"]) == (
        "disagree",
        "healthy",
        "alice",
    )
    assert accessions(web_client.get("/api/v1/worklist", headers=headers)) == ["ACC-MID", "ACC-LOW"]
    agree = {"job_id": job_id, "verdict": "agree", "comment": ""}
    assert web_client.post(f"/api/v1/studies/{uids['ACC-MID']}/reviews", json=agree, headers=headers).status_code == 201
    with session_scope(web_db) as session:
        labels = session.execute(select(JobLabel.path, JobLabel.label).where(JobLabel.job_id == job_id)).all()
        actions = session.scalars(select(AuditEvent.action).where(AuditEvent.job_id == job_id)).all()
    assert sorted(labels) == sorted(
        [(f"review:{uids['ACC-HIGH']}", "healthy"), (f"review:{uids['ACC-MID']}", "disease")]
    )
    assert actions.count("study.review") == 2
    listed = web_client.get(f"/api/v1/studies/{uids['ACC-HIGH']}/reviews", headers=headers).get_json()["reviews"]
    assert [(r["verdict"], r["comment"]) for r in listed] == [("disagree", "old scar")]
    bad = web_client.post(f"/api/v1/studies/{uids['ACC-LOW']}/reviews", json={"verdict": "disagree"}, headers=headers)
    assert bad.status_code == 400 and "correct label" in bad.get_json()["message"]
    other = web_client.post(f"/api/v1/studies/{uids['ACC-LOW']}/reviews", json=agree, headers=web_token("bob"))
    assert other.status_code == 404


def test_the_review_shows_on_the_study_and_in_the_csv(web_client, web_token, web_db, web_auth) -> None:
    job_id, uids = seeded(web_db)
    body = {"job_id": job_id, "verdict": "disagree", "label": "healthy", "comment": "old scar"}
    web_client.post(f"/api/v1/studies/{uids['ACC-HIGH']}/reviews", json=body, headers=web_token("alice"))
    study = web_client.get(f"/api/v1/studies/{uids['ACC-HIGH']}", headers=web_token("alice")).get_json()
    assert (study["review"]["verdict"], study["review"]["label"], study["review"]["comment"]) == body_values(body)
    web_auth.login("alice")
    rows = list(csv.DictReader(io.StringIO(web_client.get(f"/jobs/{job_id}/results.csv").get_data(as_text=True))))
    reviewed = [row for row in rows if row["study_instance_uid"] == uids["ACC-HIGH"]]
    assert {(r["review_verdict"], r["review_label"], r["review_comment"]) for r in reviewed} == {body_values(body)}
    assert "disagree (healthy)" in web_client.get(f"/jobs/{job_id}").get_data(as_text=True)


def body_values(body: dict) -> tuple[str, str, str]:
    return body["verdict"], body["label"], body["comment"]
