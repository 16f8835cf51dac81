"""DICOM on ingest (no worker): detection by content, de-identification of the stored copy, refusals, DICOMDIR."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.fileset import FileSet
from sqlalchemy import select

from db.models import Image, ImageStatus
from db.session import session_scope
from dicomio.deidentify import accession_pseudonym, patient_pseudonym
from ingest import Incoming, add_files
from settings import Settings
from tests.dicom_corpus import image_dataset
from tests.dicom_corpus_objects import non_image_datasets
from tests.web_fixtures import upload

PATIENT = {"PatientName": "DOE^JANE^Q", "PatientID": "MRN-4471", "PatientBirthDate": "19500101"}


def dicom_bytes(preamble: bool = True, **attributes) -> bytes:
    pixels = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
    ds = image_dataset(pixels, 8, **(PATIENT | attributes))
    ds.InstitutionName = "Example General Hospital"
    ds.add_new(0x00110010, "LO", "VENDOR")
    ds.add_new(0x00111001, "LO", "vendor private value")
    buffer = io.BytesIO()
    if preamble:
        ds.save_as(buffer, enforce_file_format=True)
    else:
        ds.file_meta, ds.preamble = FileMetaDataset(), None
        ds.save_as(buffer, implicit_vr=True, little_endian=True)
    return buffer.getvalue()


def rows_by_path(web_db, job_id: int) -> dict[str, Image]:
    with session_scope(web_db) as session:
        images = session.scalars(select(Image).where(Image.job_id == job_id)).all()
        session.expunge_all()
    return {image.path: image for image in images}


def test_dicom_is_detected_by_content_whatever_its_name(web_client, web_token, web_db, web_settings) -> None:
    files = [
        upload("in/scan.dcm", dicom_bytes()),
        upload("in/IM000001", dicom_bytes(preamble=False)),
        upload("in/renamed.png", dicom_bytes()),
        upload("in/notes.dcm", b"this is a text file with a DICOM name\n" * 4),
    ]
    response = web_client.post("/api/v1/jobs", data={"files": files}, headers=web_token("alice"))
    assert response.status_code == 201, response.get_data(as_text=True)
    rows = rows_by_path(web_db, response.get_json()["id"])
    for path in ("in/scan.dcm", "in/IM000001", "in/renamed.png"):
        assert rows[path].status == ImageStatus.queued and rows[path].error is None, path
        assert rows[path].stored_name.endswith(".dcm") and rows[path].sop_instance_uid
        assert (rows[path].width, rows[path].height) == (64, 64)
    assert rows["in/notes.dcm"].status == ImageStatus.failed
    assert rows["in/notes.dcm"].error.startswith("the content of this .dcm file is not DICOM")


def test_the_stored_copy_is_deidentified_and_the_row_keeps_only_a_pseudonym(
    web_client, web_token, web_db, web_settings
) -> None:
    original = dicom_bytes(AccessionNumber="ACC-991")
    response = web_client.post("/api/v1/jobs", data={"files": [upload("a.dcm", original)]}, headers=web_token("alice"))
    row = rows_by_path(web_db, response.get_json()["id"])["a.dcm"]
    stored_bytes = (web_settings.upload_dir / row.stored_name).read_bytes()
    for value in ("DOE^JANE", "MRN-4471", "19500101", "Example General Hospital", "vendor private value", "ACC-991"):
        assert value.encode() not in stored_bytes, value
    stored = pydicom.dcmread(io.BytesIO(stored_bytes))
    pseudonym = patient_pseudonym("MRN-4471", web_settings.secret_key)
    assert (stored.PatientIdentityRemoved, stored.PatientID, stored.PatientName) == ("YES", pseudonym, "")
    assert (row.patient_pseudonym, row.patient_id, row.patient_name) == (pseudonym, None, None)
    assert row.accession_number == accession_pseudonym("ACC-991", web_settings.secret_key) == stored.AccessionNumber
    assert row.study_instance_uid == stored.StudyInstanceUID
    assert row.sha256 is not None  # of the bytes received, so a resumed upload finds the file it sent


def test_with_deidentification_off_the_file_is_kept_as_sent(web_db, web_settings: Settings) -> None:
    settings = dataclasses.replace(web_settings, deidentify=False)
    original = dicom_bytes(AccessionNumber="ACC-992")
    with session_scope(web_db) as session:
        from db.models import Job

        job = Job(user_id=1, name="identified")
        session.add(job)
        session.flush()
        (image,) = add_files(session, job.id, [Incoming("a.dcm", io.BytesIO(original))], settings)
        assert (settings.upload_dir / image.stored_name).read_bytes() == original
        assert (image.patient_id, image.patient_name, image.accession_number) == ("MRN-4471", "DOE^JANE^Q", "ACC-992")
        assert image.patient_pseudonym == patient_pseudonym("MRN-4471", settings.secret_key)


@pytest.mark.parametrize("name", ["sr", "presentation_state", "pdf", "rt_struct", "no_pixel_data"])
def test_non_images_are_refused_on_their_own_row(web_client, web_token, web_db, name: str) -> None:
    dataset, _kind = non_image_datasets(image_dataset(np.zeros((16, 16), dtype=np.uint8), 8))[name]
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    response = web_client.post(
        "/api/v1/jobs", data={"files": [upload(f"{name}.dcm", buffer.getvalue())]}, headers=web_token("alice")
    )
    row = rows_by_path(web_db, response.get_json()["id"])[f"{name}.dcm"]
    assert row.status == ImageStatus.failed and row.stored_name is None
    assert row.error.startswith(("not an image:", "DICOM file without pixel data")), row.error


def test_truncated_dicom_is_refused_and_a_dicomdir_gets_no_row(web_client, web_token, web_db, tmp_path) -> None:
    whole = dicom_bytes()
    dicomdir = tmp_path / "DICOMDIR"
    fileset = FileSet()
    instance = pydicom.dcmread(io.BytesIO(whole))
    instance.StudyTime, instance.StudyID, instance.SeriesNumber, instance.InstanceNumber = "120000", "1", 1, 1
    fileset.add(instance)
    fileset.write(tmp_path)
    files = [upload("study/IM1.dcm", whole[: len(whole) // 2]), upload("study/DICOMDIR", dicomdir.read_bytes())]
    files.append(upload("study/IM2.dcm", whole))
    response = web_client.post("/api/v1/jobs", data={"files": files}, headers=web_token("alice"))
    rows = rows_by_path(web_db, response.get_json()["id"])
    assert sorted(rows) == ["study/IM1.dcm", "study/IM2.dcm"]
    assert rows["study/IM1.dcm"].error.startswith("truncated DICOM file")
    assert rows["study/IM2.dcm"].status == ImageStatus.queued


def test_the_deidentify_setting_is_read_from_the_environment() -> None:
    assert Settings().deidentify is True
    assert Settings.from_env({"RADBATCH_DEIDENTIFY": "false"}).deidentify is False


def test_the_worker_reports_the_uploads_own_size_not_the_reduced_one() -> None:
    from PIL import Image as PILImage

    from formats import read_upload

    big = io.BytesIO()
    PILImage.new("L", (4096, 3000), 90).save(big, format="PNG")
    picture = read_upload(big.getvalue(), 128)
    assert (picture.width, picture.height) == (4096, 3000) and max(picture.image.size) <= 2048

    pixels = np.zeros((2500, 2048), dtype=np.uint16)
    dicom = io.BytesIO()
    image_dataset(pixels, 16, ViewPosition="LL", NumberOfFrames=1).save_as(dicom, enforce_file_format=True)
    picture = read_upload(dicom.getvalue(), 128)
    assert (picture.width, picture.height) == (2048, 2500) and picture.image.size == (1024, 1250)
    assert picture.notes == ["lateral view: the models were trained on frontal (PA/AP) views"]
