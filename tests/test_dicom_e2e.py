"""DICOM end to end over HTTP: the corpus (every transfer syntax, pixel case and refusal) uploaded to gunicorn,
predicted by the real worker, and read back through the results, the CSV, image.png and the SR endpoint.

Each DICOM file made from the PNG must get the PNG's probability (per model and the ensemble) within 0.01
for lossless encodings and 0.03 for lossy ones, or else its own specific error on its row.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from PIL import Image as PILImage

from dicomio.deidentify import accession_pseudonym, patient_pseudonym
from tests.conftest import SHARED_DATA, Stack, skip_or_fail
from tests.dicom_corpus import Corpus, build_corpus
from tests.test_dicom_pixels import LOSSLESS, LOSSY, SOURCE

pytestmark = pytest.mark.e2e

MODELS = ("cnn", "unet", "ensemble")
PIXEL_CASES = ("monochrome1", "twelve_bit", "voi_lut", "window_only", "multiframe", "lateral", "not_chest")
SHARED = ("shared_dx", "shared_jpeg_baseline", "shared_monochrome1")
REFUSAL_MESSAGES = {
    "sr": "not an image: a structured report",
    "presentation_state": "not an image: a presentation state",
    "pdf": "not an image: an encapsulated document",
    "rt_struct": "not an image: an RT structure set",
    "no_pixel_data": "DICOM file without pixel data",
    "truncated": "truncated DICOM file",
    "truncated_j2k": "truncated DICOM file",
    "too_large": "image too large (30000x30000 pixels",
}
LATERAL = "lateral view: the models were trained on frontal (PA/AP) views"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    png = SHARED_DATA / "originals" / SOURCE
    if not png.is_file():
        skip_or_fail(f"the shared NIH original {png} is missing")
    return build_corpus(tmp_path_factory.mktemp("dicom-e2e-corpus"), png, SHARED_DATA / "dicom")


def upload_path(name: str, path: Path) -> str:
    """Where the corpus file sits in the uploaded folder: its own name, so no-preamble files keep no extension."""
    return f"corpus/{path.name}"


def corpus_files(corpus: Corpus) -> list[tuple[str, bytes]]:
    """Every corpus file, the DICOMDIR folder as uploaded, a DICOM named .png, and the PNG source itself."""
    files = [(upload_path(name, entry.path), entry.path.read_bytes()) for name, entry in corpus.files.items()]
    folder = corpus.file("dicomdir").path.parent
    files = [(path, data) for path, data in files if path != "corpus/DICOMDIR"]
    files += [
        (f"corpus/dicomdir/{p.relative_to(folder)}", p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()
    ]
    files.append(("corpus/disguised.png", corpus.file("explicit_le").path.read_bytes()))
    files.append(("corpus/source.png", (SHARED_DATA / "originals" / SOURCE).read_bytes()))
    return files


@pytest.fixture(scope="module")
def corpus_job(e2e_stack: Stack, corpus: Corpus) -> dict:
    """The corpus uploaded as one job and predicted: {"job": ..., "rows": {path: result row}}."""
    api = e2e_stack.api
    job = api.create_job(corpus_files(corpus), name="dicom corpus")
    job = api.wait_finished(job["id"], timeout=600)
    return {"job": job, "rows": {row["path"]: row for row in api.results(job["id"], per_page=100)}}


def logged_in(stack: Stack) -> requests.Session:
    """A browser-like session logged in through the form (the job page takes no API token)."""
    session = requests.Session()
    form = session.get(f"{stack.base_url}/login", timeout=30).text
    token = re.search(r'name="csrf-token" content="([^"]+)"', form).group(1)
    data = {"username": stack.username, "password": stack.password, "csrf_token": token}
    assert session.post(f"{stack.base_url}/login", data=data, timeout=30).ok
    return session


def probabilities(row: dict) -> dict[str, float]:
    return {model: row["predictions"][model]["probability"] for model in MODELS}


def test_every_dicom_file_gets_the_png_probability_or_its_own_error(corpus: Corpus, corpus_job: dict) -> None:
    rows = corpus_job["rows"]
    png = rows["corpus/source.png"]
    assert png["status"] == "done"
    expected = probabilities(png)
    checked = {"lossless": 0, "lossy": 0}
    for name, entry in corpus.files.items():
        if name == "dicomdir" or name in SHARED or entry.error_kind:
            continue
        row = rows[upload_path(name, entry.path)]
        assert row["status"] == "done", (name, row["error"])
        tolerance = 0.03 if entry.lossy else 0.01
        for model, probability in probabilities(row).items():
            assert abs(probability - expected[model]) <= tolerance, (name, model, probability, expected[model])
        checked["lossy" if entry.lossy else "lossless"] += 1
    assert checked["lossless"] >= len(LOSSLESS) + len(PIXEL_CASES) - len(corpus.missing)
    assert checked["lossy"] >= len(LOSSY) - len(corpus.missing)
    disguised = rows["corpus/disguised.png"]
    assert disguised["status"] == "done" and disguised["dicom"]["transfer_syntax_uid"] == LOSSLESS["explicit_le"]
    for model, probability in probabilities(disguised).items():
        assert abs(probability - expected[model]) <= 0.01
    for name in SHARED:
        row = rows[upload_path(name, corpus.file(name).path)]
        assert row["status"] == "done" and set(row["predictions"]) == set(MODELS), (name, row["error"])


def test_refused_files_get_their_own_error_and_no_stored_file(corpus: Corpus, corpus_job: dict) -> None:
    rows = corpus_job["rows"]
    for name, message in REFUSAL_MESSAGES.items():
        row = rows[upload_path(name, corpus.file(name).path)]
        assert row["status"] == "failed" and row["predictions"] == {}, name
        assert row["error"].startswith(message), (name, row["error"])


def test_the_dicomdir_file_is_skipped_and_the_files_it_lists_are_predicted(corpus_job: dict) -> None:
    rows = corpus_job["rows"]
    assert not [path for path in rows if path.endswith("DICOMDIR")]
    listed = [row for path, row in rows.items() if path.startswith("corpus/dicomdir/IMAGES/")]
    assert len(listed) == 2 and all(row["status"] == "done" for row in listed)
    assert corpus_job["job"]["total"] == len(rows)


def test_rows_keep_the_metadata_notes_and_the_source_size(corpus: Corpus, corpus_job: dict) -> None:
    rows = corpus_job["rows"]
    for name, syntax in LOSSLESS.items():
        entry = corpus.file(name)
        row, ds = rows[upload_path(name, entry.path)], pydicom.dcmread(entry.path, force=True)
        assert row["study_instance_uid"] == ds.StudyInstanceUID and row["view_position"] == "PA"
        assert row["accession_number"] == accession_pseudonym("ACC1", "e2e")  # keyed pseudonym on de-identification
        dicom = row["dicom"]
        assert (dicom["sop_instance_uid"], dicom["transfer_syntax_uid"]) == (ds.SOPInstanceUID, syntax)
        assert dicom["series_instance_uid"] == ds.SeriesInstanceUID and dicom["pixel_spacing_mm"] == [0.143, 0.143]
        assert dicom["photometric_interpretation"] == "MONOCHROME2" and dicom["bits_stored"] in (8, 12)
        assert dicom["patient_pseudonym"] == patient_pseudonym("CORPUS-1", "e2e")
        assert dicom["patient_id"] is None and dicom["patient_name"] is None
        assert (row["width"], row["height"]) == (1024, 1024) and row["notes"] == []
    assert LATERAL in rows[upload_path("lateral", corpus.file("lateral").path)]["notes"]
    multiframe = rows[upload_path("multiframe", corpus.file("multiframe").path)]["notes"]
    assert multiframe == ["multi-frame file (2 frames): the first frame was used"]
    not_chest = rows[upload_path("not_chest", corpus.file("not_chest").path)]["notes"]
    assert not_chest == ["body part ABDOMEN: the models were trained on chest radiographs"]


def test_results_filter_by_study_and_csv_shows_study_accession_view(
    e2e_stack: Stack, corpus: Corpus, corpus_job: dict
) -> None:
    job_id, rows = corpus_job["job"]["id"], corpus_job["rows"]
    lateral = rows[upload_path("lateral", corpus.file("lateral").path)]
    base = e2e_stack.api.base
    response = e2e_stack.api.http.get(f"{base}/jobs/{job_id}/results", params={"study": lateral["study_instance_uid"]})
    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [lateral["id"]]
    bad = e2e_stack.api.http.get(f"{base}/jobs/{job_id}/results", params={"study": "not a uid"})
    assert bad.status_code == 400 and "Study Instance UID" in bad.json()["message"]

    csv_url = f"{e2e_stack.base_url}/jobs/{job_id}/results.csv"
    listed = list(csv.DictReader(io.StringIO(e2e_stack.api.http.get(csv_url, timeout=60).text)))
    by_id = {int(line["image_id"]): line for line in listed}
    assert len(by_id) == len(rows)
    line = by_id[lateral["id"]]
    assert (line["study_instance_uid"], line["view_position"], line["accession_number"]) == (
        lateral["study_instance_uid"],
        "LL",
        accession_pseudonym("ACC1", "e2e"),
    )
    assert LATERAL in line["notes"]

    page = logged_in(e2e_stack).get(
        f"{e2e_stack.base_url}/jobs/{job_id}", params={"study": lateral["study_instance_uid"]}
    )
    assert page.status_code == 200 and lateral["study_instance_uid"] in page.text and ">LL<" in page.text
    assert f"/api/v1/images/{lateral['id']}/sr.dcm" in page.text


def test_image_png_renders_dicom_through_the_same_pixel_pipeline(
    e2e_stack: Stack, corpus: Corpus, corpus_job: dict
) -> None:
    rows = corpus_job["rows"]
    for name in ("explicit_le", "monochrome1", "jpeg_lossless_sv1", "no_preamble"):
        entry = corpus.file(name)
        response = e2e_stack.api.http.get(
            f"{e2e_stack.api.base}/images/{rows[upload_path(name, entry.path)]['id']}/image.png"
        )
        assert response.status_code == 200 and response.headers["Content-Type"] == "image/png", name
        shown = np.asarray(PILImage.open(io.BytesIO(response.content)))
        np.testing.assert_array_equal(shown, entry.expected, err_msg=name)


def test_sr_endpoint_serves_a_valid_report_of_the_predictions(
    e2e_stack: Stack, corpus: Corpus, corpus_job: dict, tmp_path: Path
) -> None:
    rows = corpus_job["rows"]
    row = rows[upload_path("explicit_le", corpus.file("explicit_le").path)]
    response = e2e_stack.api.http.get(f"{e2e_stack.api.base}/images/{row['id']}/sr.dcm", timeout=60)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/dicom"
    assert row["dicom"]["sr_url"] == f"/api/v1/images/{row['id']}/sr.dcm"
    path = tmp_path / "sr.dcm"
    path.write_bytes(response.content)
    sr = pydicom.dcmread(path)
    assert (sr.Modality, sr.VerificationFlag) == ("SR", "UNVERIFIED")
    assert sr.StudyInstanceUID == row["study_instance_uid"]
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert evidence.ReferencedSOPInstanceUID == row["dicom"]["sop_instance_uid"]
    if shutil.which("dsrdump") is None:
        skip_or_fail("dcmtk's dsrdump is not installed (apt-get install dcmtk)")
    dumped = subprocess.run(["dsrdump", "+Pl", str(path)], capture_output=True, text=True, timeout=60)
    assert dumped.returncode == 0 and dumped.stderr == "", dumped.stderr
    for model in MODELS:
        prediction = row["predictions"][model]
        assert f'"Algorithm Name")="{model}"' in dumped.stdout
        assert f'="{prediction["model_version"]}"' in dumped.stdout

    for path_, why in (("corpus/source.png", "not a DICOM"), ("corpus/sr.dcm", "no predictions")):
        refused = e2e_stack.api.http.get(f"{e2e_stack.api.base}/images/{rows[path_]['id']}/sr.dcm")
        assert refused.status_code == 404 and why in refused.json()["message"], refused.text
