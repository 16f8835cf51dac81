"""STOW-RS through the Flask test client: who may send, which bodies are refused and how, the response shape,
and that a cookie session needs its CSRF header. The real thing, over HTTP with dicomweb-client, is in
test_dicom_network.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from sqlalchemy import func, select

from db.models import Image, Job
from db.session import session_scope
from tests.dicom_network_helpers import write_dicom_folder

BOUNDARY = "radbatch-test-boundary"
RELATED = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def body(*contents: bytes, content_type: str = "application/dicom") -> bytes:
    parts = b"".join(
        f"--{BOUNDARY}\r\nContent-Type: {content_type}\r\n\r\n".encode() + content + b"\r\n" for content in contents
    )
    return parts + f"--{BOUNDARY}--\r\n".encode()


@pytest.fixture
def instance(tmp_path: Path) -> bytes:
    (path,) = write_dicom_folder(tmp_path, 1, studies=1).values()
    return path.read_bytes()


def test_stow_needs_a_user(web_client) -> None:
    response = web_client.post("/dicomweb/studies", data=body(b"x"), content_type=RELATED)
    assert response.status_code == 401 and response.get_json()["status"] == 401


def test_stow_refuses_other_bodies_with_a_reason(web_client, web_token) -> None:
    headers = web_token("alice")
    cases = [
        ("application/json", b"{}", 415, "multipart/related"),
        ('multipart/related; type="application/dicom+json"; boundary=b', body(b"x"), 415, "Part 10"),
        ('multipart/related; type="application/dicom"', body(b"x"), 400, "boundary"),
        (RELATED, body(b"x")[:-10], 400, "closing boundary"),
    ]
    for content_type, data, status, reason in cases:
        response = web_client.post("/dicomweb/studies", data=data, content_type=content_type, headers=headers)
        assert response.status_code == status and reason in response.get_json()["message"], response.get_json()


def test_stow_answers_the_store_instances_response(web_client, web_token, instance: bytes) -> None:
    """Every part is stored through ingest; what ingest refuses is in FailedSOPSequence with its reason."""
    sop_instance_uid = pydicom.dcmread(pydicom.filebase.DicomBytesIO(instance)).SOPInstanceUID
    response = web_client.post(
        "/dicomweb/studies", data=body(instance, b"not dicom"), content_type=RELATED, headers=web_token("alice")
    )
    assert response.mimetype == "application/dicom+json" and response.headers["Location"].startswith("/api/v1/jobs/")
    answer = pydicom.Dataset.from_json(response.get_json())
    stored = [str(item.ReferencedSOPInstanceUID) for item in answer.get("ReferencedSOPSequence", [])]
    failures = [item.FailureReason for item in answer.FailedSOPSequence]
    assert (response.status_code, stored, failures) == (202, [sop_instance_uid], [0xC000])
    job = web_client.get(response.headers["Location"], headers=web_token("alice")).get_json()
    assert (job["total"], job["is_open"]) == (1, False)  # the part that is not DICOM got no row
    assert "part 2: the content of this .dcm file is not DICOM" in response.headers["Warning"]


def _counts(web_db) -> tuple[int, int]:
    with session_scope(web_db) as session:
        return session.scalar(select(func.count(Job.id))), session.scalar(select(func.count(Image.id)))


def _post(web_client, headers, data: bytes):
    return web_client.post("/dicomweb/studies", data=data, content_type=RELATED, headers=headers)


def test_stow_has_the_upload_apis_limits_and_refuses_junk_before_any_row(web_app, web_client, web_token, web_db):
    headers = web_token("alice")
    many = _post(web_client, headers, body(*[b"x"] * 50_000))  # the 550 KB body of 50,000 parts
    assert many.status_code == 413 and "at most 5000 instances per request" in many.get_json()["message"]
    junk = _post(web_client, headers, body(b"", b"x", b"not dicom at all"))
    assert junk.status_code == 409 and "Location" not in junk.headers
    assert "part 1: empty file (0 bytes)" in junk.headers["Warning"]
    failures = pydicom.Dataset.from_json(junk.get_json()).FailedSOPSequence
    assert [item.FailureReason for item in failures] == [0xC000] * 3
    web_app.config["MAX_CONTENT_LENGTH"] = 1000
    assert _post(web_client, headers, body(b"x" * 2000)).status_code == 413
    assert _counts(web_db) == (0, 0)


@pytest.mark.parametrize("uid", ["../../../../x/PWNED<x>", "1.2.03", "1.2..3", "1." + "2" * 64])
def test_stow_refuses_an_invalid_uid_with_the_reason(web_client, web_token, web_db, instance: bytes, uid: str):
    dataset = pydicom.dcmread(pydicom.filebase.DicomBytesIO(instance))
    dataset.SOPInstanceUID = uid
    buffer = pydicom.filebase.DicomBytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    response = _post(web_client, web_token("alice"), body(buffer.getvalue()))
    assert response.status_code == 409 and "part 1: SOP Instance UID" in response.headers["Warning"]
    (failure,) = pydicom.Dataset.from_json(response.get_json()).FailedSOPSequence
    assert failure.FailureReason == 0xA900 and not failure.ReferencedSOPInstanceUID  # the bad value is not echoed
    assert _counts(web_db) == (0, 0)


def test_stow_keeps_a_namesake_with_a_note_and_counts_a_repeat(web_client, web_token, web_db, instance: bytes):
    dataset = pydicom.dcmread(pydicom.filebase.DicomBytesIO(instance))
    dataset.PixelData = (255 - np.frombuffer(dataset.PixelData, dtype=np.uint8)).tobytes()
    buffer = pydicom.filebase.DicomBytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    response = _post(web_client, web_token("alice"), body(instance, instance, buffer.getvalue()))
    assert response.status_code == 200
    job = web_client.get(response.headers["Location"], headers=web_token("alice")).get_json()
    assert (job["total"], job["resent"]) == (2, 1)
    with session_scope(web_db) as session:
        first, second = session.execute(select(Image.id, Image.notes).order_by(Image.id)).all()
    assert f"same SOP Instance UID as image {first.id}, different pixels" in second.notes


def test_an_upload_with_an_invalid_uid_is_refused_on_its_row(web_client, web_token, instance: bytes) -> None:
    dataset = pydicom.dcmread(pydicom.filebase.DicomBytesIO(instance))
    dataset.SeriesInstanceUID = "1.2.840.x<script>"
    buffer = pydicom.filebase.DicomBytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    files = [(pydicom.filebase.DicomBytesIO(buffer.getvalue()), "bad.dcm")]
    job = web_client.post("/api/v1/jobs", data={"files": files}, headers=web_token("alice")).get_json()
    rows = web_client.get(f"/api/v1/jobs/{job['id']}/results", headers=web_token("alice")).get_json()["results"]
    assert job["failed"] == 1 and "Series Instance UID is not a UID" in rows[0]["error"]


def test_stow_refuses_a_malformed_file_meta_found_by_fuzzing(web_client, web_token, web_db) -> None:
    """atheris (test_fuzz.py) found that reading the identity of this file raised BytesLengthException: a 500."""
    malformed = b"\0" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x03\x00abc"  # (0002,0000) UL of 3 bytes
    response = _post(web_client, web_token("alice"), body(malformed))
    assert response.status_code == 409 and "part 1: SOP Class UID missing" in response.headers["Warning"]
    assert _counts(web_db) == (0, 0)
