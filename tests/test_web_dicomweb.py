"""STOW-RS through the Flask test client: who may send, which bodies are refused and how, the response shape,
and that a cookie session needs its CSRF header. The real thing, over HTTP with dicomweb-client, is in
test_dicom_network.py."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

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
    assert (job["total"], job["is_open"]) == (2, False)
