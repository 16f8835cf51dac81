"""Study-level results over the web app: images grouped by StudyInstanceUID, the study probability (the ensemble's
maximum over frontal images; the lateral is listed, flagged and not counted), validated findings, access like
jobs (another user's study is 404), the audit row, the accession pseudonym matched back, and the CSV columns."""

from __future__ import annotations

import csv
import io

import numpy as np
import pydicom
from pydicom import uid
from sqlalchemy import select

from db.audit import AuditEvent
from db.findings import FindingPrediction
from db.models import Image, ImageStatus, Prediction
from db.session import session_scope
from dicomio.deidentify import accession_pseudonym
from tests.dicom_corpus import image_dataset
from tests.web_fixtures import upload

STUDY = uid.generate_uid()
# view, ensemble probability, Effusion probability: the lateral is the most suspicious, and must not count
VIEWS = {"PA": (0.62, 0.20), "AP": (0.35, 0.71), "LL": (0.97, 0.99)}


def dicom_file(view: str) -> bytes:
    ds = image_dataset(np.full((32, 32), 90, dtype=np.uint8), 8, PatientID="MRN-9", AccessionNumber="ACC-77")
    ds.StudyInstanceUID, ds.ViewPosition = STUDY, view
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def predicted_study(web_client, web_token, web_db) -> int:
    files = [upload(f"{view}.dcm", dicom_file(view)) for view in VIEWS]
    job_id = web_client.post("/api/v1/jobs", data={"files": files}, headers=web_token("alice")).get_json()["id"]
    with session_scope(web_db) as session:
        for image in session.scalars(select(Image).where(Image.job_id == job_id)):
            probability, effusion = VIEWS[image.view_position]
            image.status = ImageStatus.done
            for model in ("cnn", "unet", "ensemble"):
                label = "disease" if probability >= 0.5 else "healthy"
                session.add(
                    Prediction(
                        image=image,
                        model_name=model,
                        headline=model == "ensemble",  # the worker marks the headline model's row
                        model_version=f"{model}-1",
                        probability=probability,
                        label=label,
                        threshold=0.5,
                    )
                )
            present = "present" if effusion >= 0.4 else "absent"
            session.add(
                FindingPrediction(
                    image_id=image.id,
                    finding="Effusion",
                    model_version="h1",
                    probability=effusion,
                    label=present,
                    threshold=0.4,
                )
            )
    return job_id


def test_study_result_is_the_maximum_over_frontal_images(web_client, web_token, web_db) -> None:
    job_id = predicted_study(web_client, web_token, web_db)
    response = web_client.get(f"/api/v1/studies/{STUDY}", headers=web_token("alice"))
    assert response.status_code == 200, response.get_data(as_text=True)
    study = response.get_json()
    result = study["result"]
    assert (result["probability"], result["label"], result["threshold"]) == (0.62, "disease", 0.5)
    assert "maximum" in result["method"] and "frontal" in result["method"]
    by_view = {image["view_position"]: image for image in study["images"]}
    assert [by_view[v]["frontal"] for v in ("PA", "AP", "LL")] == [True, True, False]
    assert any(note.startswith("lateral view") for note in by_view["LL"]["notes"])
    assert result["from_image_id"] == by_view["PA"]["id"] and result["not_counted_image_ids"] == [by_view["LL"]["id"]]
    assert study["findings"]["Effusion"] == {
        "probability": 0.71,
        "threshold": 0.4,
        "label": "present",
        "from_image_id": by_view["AP"]["id"],
    }
    assert study["accession_number"] == accession_pseudonym("ACC-77", "web-test-secret")
    assert study["views"] == ["PA", "AP", "LL"] and study["status"] == "done" and study["job_ids"] == [job_id]
    with session_scope(web_db) as session:
        actions = session.scalars(select(AuditEvent.action).where(AuditEvent.job_id == job_id)).all()
    assert "study.view" in actions


def test_another_users_study_is_404_and_an_admin_sees_it(web_client, web_token, web_db) -> None:
    predicted_study(web_client, web_token, web_db)
    assert web_client.get(f"/api/v1/studies/{STUDY}", headers=web_token("bob")).status_code == 404
    assert web_client.get(f"/api/v1/studies/{STUDY}", headers=web_token("root")).status_code == 200
    assert web_client.get("/api/v1/studies/1.2.3", headers=web_token("alice")).status_code == 404
    assert web_client.get("/api/v1/studies/not-a-uid", headers=web_token("alice")).status_code == 400
    assert web_client.get("/api/v1/studies?accession=ACC-77", headers=web_token("bob")).get_json() == {"studies": []}


def test_the_site_finds_a_study_by_its_own_accession_number(web_client, web_token, web_db) -> None:
    job_id = predicted_study(web_client, web_token, web_db)
    found = web_client.get("/api/v1/studies?accession=ACC-77", headers=web_token("alice")).get_json()["studies"]
    assert [study["study_instance_uid"] for study in found] == [STUDY]
    listed = web_client.get(f"/api/v1/jobs/{job_id}/studies", headers=web_token("alice")).get_json()["studies"]
    assert [(study["study_instance_uid"], len(study["images"])) for study in listed] == [(STUDY, 3)]
    assert web_client.get("/api/v1/studies?accession=", headers=web_token("alice")).status_code == 400


def test_csv_rows_carry_their_studys_result(web_client, web_token, web_db, web_auth) -> None:
    job_id = predicted_study(web_client, web_token, web_db)
    web_auth.login("alice")
    text = web_client.get(f"/jobs/{job_id}/results.csv").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {(row["study_probability"], row["study_label"]) for row in rows} == {("0.62", "disease")}
    assert pydicom.uid.UID(rows[0]["study_instance_uid"]) == STUDY


def test_the_job_page_lists_one_row_per_study_that_opens_its_images(web_client, web_token, web_db, web_auth) -> None:
    job_id = predicted_study(web_client, web_token, web_db)
    web_auth.login("alice")
    page = web_client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert page.count('<tr class="study"') == 1 and accession_pseudonym("ACC-77", "web-test-secret") in page
    assert f"/jobs/{job_id}?study={STUDY}" in page and "0.620" in page and 'class="view not-counted"' in page
    images = web_client.get(f"/jobs/{job_id}?study={STUDY}").get_data(as_text=True)
    assert images.count('class="viewable') == 3 and '<tr class="study"' not in images
    every_image = web_client.get(f"/jobs/{job_id}?view=images").get_data(as_text=True)
    assert every_image.count('class="viewable') == 3


def test_the_fhir_bundle_validates_and_is_coded(web_client, web_token, web_db) -> None:
    from fhir.resources.R4B.bundle import Bundle

    predicted_study(web_client, web_token, web_db)
    response = web_client.get(f"/api/v1/studies/{STUDY}/fhir", headers=web_token("alice"))
    assert response.status_code == 200 and response.mimetype == "application/fhir+json"
    bundle = Bundle.model_validate(response.get_json())
    resources = [entry.resource for entry in bundle.entry]
    report, *observations = resources
    assert (bundle.type, report.get_resource_type(), report.status) == (
        "transaction",
        "DiagnosticReport",
        "preliminary",
    )
    assert report.identifier[0].value == f"urn:oid:{STUDY}"
    assert "Research use only, not for diagnosis" in report.conclusion and "0.620" in report.conclusion
    assert (report.conclusionCode[0].coding[0].system, report.conclusionCode[0].coding[0].code) == (
        "http://snomed.info/sct",
        "263654008",
    )
    assert [r.reference for r in report.result] == [entry.fullUrl for entry in bundle.entry[1:]]
    by_code = {o.code.coding[0].code: o for o in observations}
    assert set(by_code) == {"PSTUDY-cnn", "PSTUDY-unet", "PSTUDY-ensemble", "60046008"}  # + pleural effusion
    assert float(by_code["PSTUDY-ensemble"].valueQuantity.value) == 0.62
    assert by_code["PSTUDY-ensemble"].interpretation[0].coding[0].code == "A"
    assert by_code["60046008"].valueCodeableConcept.coding[0].code == "52101004"  # present
    assert all(o.status == "preliminary" for o in observations)
    assert web_client.get(f"/api/v1/studies/{STUDY}/fhir", headers=web_token("bob")).status_code == 404
