"""No PHI anywhere: DICOM files full of identifying values go through the real stack over HTTP, then every
file under RADBATCH_HOME (uploads, thumbnails, logs...), a dump of every database table and every API and
page response (JSON, CSV, image.png, thumbnails, sr.dcm, the job page) is searched for each value.

With RADBATCH_DEIDENTIFY=false (a second web server on the same database and worker) the file is stored as
sent and the database keeps PatientID and PatientName for the site's own use.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from sqlalchemy import select

from db.models import Base, Image
from db.session import session_scope
from dicomio.deidentify import accession_pseudonym, patient_pseudonym
from tests import services
from tests.conftest import Stack, skip_or_fail
from tests.dicom_corpus import image_dataset
from tests.test_dicom_e2e import logged_in

pytestmark = pytest.mark.e2e

PHI = {
    "PatientName": "PHI^SHOULD^NOT^APPEAR",
    "PatientID": "PHIPID77311",
    "PatientBirthDate": "19230405",
    "OtherPatientIDs": "PHIOTHER5521",
    "PatientAddress": "12 Phistreet Springfield",
    "InstitutionName": "Phiname General Hospital",
    "InstitutionAddress": "1 Phiroad Shelbyville",
    "ReferringPhysicianName": "PHIREFERRER^ALICE",
    "PerformingPhysicianName": "PHIPERFORMER^BOB",
    "OperatorsName": "PHIOPERATOR^CAROL",
    "AccessionNumber": "PHIACC8812",
    "StudyDescription": "Phidesc chest follow-up",
    "StudyID": "PHISTUDY77",
    "PatientComments": "Phicomment allergic to contrast",
}
PRIVATE_VALUE = "PHIPRIVATE9931"
SEARCHED = [*PHI.values(), PRIVATE_VALUE, "SHOULD^NOT", "PHI^SHOULD"]


def phi_file(identity: dict[str, str], preamble: bool = True) -> bytes:
    pixels = np.tile(np.linspace(0, 255, 256, dtype=np.uint8), (256, 1))
    ds = image_dataset(pixels, 8, **identity)
    ds.add_new(0x00110010, "LO", "PHIVENDOR")
    ds.add_new(0x00111001, "LO", PRIVATE_VALUE)
    buffer = io.BytesIO()
    if preamble:
        ds.save_as(buffer, enforce_file_format=True)
    else:
        ds.file_meta, ds.preamble = FileMetaDataset(), None
        ds.save_as(buffer, implicit_vr=True, little_endian=True)
    return buffer.getvalue()


def found_in(blob: bytes, where: str) -> list[str]:
    lowered = blob.lower()
    return [f"{value!r} in {where}" for value in SEARCHED if value.lower().encode() in lowered]


def database_dump(stack: Stack) -> bytes:
    lines = []
    with session_scope(stack.sessions) as session:
        for table in Base.metadata.sorted_tables:
            lines += [repr(tuple(row)) for row in session.execute(table.select())]
    return "\n".join(lines).encode()


def test_no_phi_in_home_database_logs_or_any_response(e2e_stack: Stack) -> None:
    files = [
        ("phi/scan.dcm", phi_file(PHI)),
        ("phi/IM000001", phi_file(PHI, preamble=False)),
        ("phi/renamed.png", phi_file(PHI)),
    ]
    assert len(found_in(files[0][1], "the upload")) == len(SEARCHED)  # the search finds every value where it is
    api, http = e2e_stack.api, e2e_stack.api.http
    responses: dict[str, bytes] = {}
    created = http.post(f"{api.base}/jobs", data={"name": "privacy"}, files=api._parts(files), timeout=120)
    responses["POST /jobs"] = created.content
    job = api.wait_finished(created.json()["id"])
    assert (job["done"], job["failed"]) == (3, 0), api.results(job["id"])
    rows = api.results(job["id"])
    browser = logged_in(e2e_stack)
    urls = [
        f"{api.base}/jobs/{job['id']}",
        f"{api.base}/jobs/{job['id']}/results",
        f"{api.base}/jobs/{job['id']}/files",
        f"{api.base}/jobs",
        f"{e2e_stack.base_url}/jobs/{job['id']}/results.csv",
    ]
    for row in rows:
        assert row["dicom"]["patient_pseudonym"] == patient_pseudonym(PHI["PatientID"], "e2e")
        assert row["dicom"]["patient_id"] is None
        assert row["accession_number"] == accession_pseudonym(PHI["AccessionNumber"], "e2e")
        urls += [f"{api.base}/images/{row['id']}/image.png", f"{api.base}/images/{row['id']}/sr.dcm"]
    for url in urls:
        response = http.get(url, timeout=60)
        assert response.status_code == 200, (url, response.text[:300])
        responses[url] = response.content
    for url in [f"{e2e_stack.base_url}/jobs/{job['id']}", f"{e2e_stack.base_url}/jobs"] + [
        f"{e2e_stack.base_url}/thumbnails/{row['id']}.png" for row in rows
    ]:
        response = browser.get(url, timeout=60)
        assert response.status_code == 200, url
        responses[url] = response.content
    sr = pydicom.dcmread(io.BytesIO(responses[f"{api.base}/images/{rows[0]['id']}/sr.dcm"]))
    assert (sr.PatientID, sr.PatientName) == (patient_pseudonym(PHI["PatientID"], "e2e"), "")

    leaks = [leak for where, blob in responses.items() for leak in found_in(blob, where)]
    leaks += found_in(database_dump(e2e_stack), "the database dump")
    searched_files = [path for path in e2e_stack.settings.home.rglob("*") if path.is_file()]
    assert any(path.suffix == ".dcm" for path in searched_files) and (e2e_stack.settings.log_dir / "web.log").exists()
    for path in searched_files:
        leaks += found_in(path.read_bytes(), str(path))
    database_file = e2e_stack.settings.database_url.removeprefix("sqlite:///")
    if e2e_stack.dialect == "sqlite":
        for path in Path(database_file).parent.glob(Path(database_file).name + "*"):
            leaks += found_in(path.read_bytes(), str(path))
    assert leaks == []


@pytest.fixture(scope="module")
def identified_api(e2e_stack: Stack):
    """A second web server on the same database, Redis and worker, with RADBATCH_DEIDENTIFY=false."""
    env = e2e_stack.env | {"RADBATCH_DEIDENTIFY": "false"}
    process, base_url = services.start_gunicorn(env, e2e_stack.settings.log_dir / "web-identified.log")
    yield services.Api(base_url, e2e_stack.token)
    services.stop_process(process)


def test_with_deidentification_off_the_site_keeps_the_identity(
    e2e_stack: Stack, identified_api: services.Api, tmp_path: Path
) -> None:
    identity = {"PatientName": "SITEOWN^PATIENT", "PatientID": "SITE-MRN-1", "AccessionNumber": "SITEACC5"}
    files = [("site/scan.dcm", phi_file(identity)), ("site/IM000002", phi_file(identity, preamble=False))]
    job = identified_api.create_job(files, name="identified")
    job = identified_api.wait_finished(job["id"])
    assert (job["done"], job["failed"]) == (2, 0)
    rows = {row["path"]: row for row in identified_api.results(job["id"])}
    for path, sent in files:
        row = rows[path]
        assert (row["dicom"]["patient_id"], row["dicom"]["patient_name"]) == ("SITE-MRN-1", "SITEOWN^PATIENT")
        assert row["accession_number"] == "SITEACC5"
        with session_scope(e2e_stack.sessions) as session:
            stored_name = session.scalar(select(Image.stored_name).where(Image.id == row["id"]))
        assert (e2e_stack.settings.upload_dir / stored_name).read_bytes() == sent
        assert (
            hashlib.sha256(sent).hexdigest()
            in identified_api.http.get(f"{identified_api.base}/jobs/{job['id']}/files").text
        )
        report = identified_api.http.get(f"{identified_api.base}/images/{row['id']}/sr.dcm", timeout=60)
        assert report.status_code == 200, report.text[:300]
        if shutil.which("dsrdump") is None:
            skip_or_fail("dcmtk's dsrdump is not installed (apt-get install dcmtk)")
        (tmp_path / "sr.dcm").write_bytes(report.content)
        dumped = subprocess.run(["dsrdump", str(tmp_path / "sr.dcm")], capture_output=True, text=True, timeout=60)
        assert dumped.returncode == 0 and dumped.stderr == "", dumped.stderr
        assert "SITEOWN^PATIENT" in dumped.stdout
