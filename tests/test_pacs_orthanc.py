"""The peer a hospital actually has: Debian's Orthanc, both directions. Orthanc pushes a study to radbatch's
listener through its REST API (`POST /modalities/radbatch/store`); the worker predicts it; the forwarding worker
sends the study's AIR report back, and the test reads it from Orthanc's REST API (instance count, SR content,
references to the source instances); the same study's FHIR Bundle and HL7 ORU^R01 reach their receivers."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from tests.dicom_network_fixtures import NetworkStack
from tests.dicom_network_helpers import evidence_uids, write_dicom_folder
from tests.orthanc import Orthanc
from tests.services import wait_for

pytestmark = pytest.mark.e2e

SR_MODALITY = "SR"


def jobs_from_orthanc(stack: NetworkStack) -> list[dict]:
    jobs = stack.api.http.get(f"{stack.api.base}/jobs", params={"per_page": 200}, timeout=30).json()["jobs"]
    return [job for job in jobs if job["name"].startswith("DICOM from ORTHANC at ") and not job["is_open"]]


def reports_in_orthanc(orthanc: Orthanc, study_instance_uid: str) -> list[pydicom.Dataset]:
    """The SR instances Orthanc indexed for this study."""
    found = orthanc.instances_of_study(study_instance_uid)
    return [
        orthanc.dataset(item["ID"])
        for item in found
        if orthanc.rest("GET", f"/instances/{item['ID']}/simplified-tags").get("Modality") == SR_MODALITY
    ]


def test_orthanc_pushes_a_study_and_indexes_its_air_report(
    pacs_stack: NetworkStack, orthanc: Orthanc, tmp_path: Path
) -> None:
    sent = write_dicom_folder(tmp_path / "pacs", 3, studies=1)
    lateral_path = list(sent.values())[2]
    lateral = pydicom.dcmread(lateral_path)
    lateral.ViewPosition = "LL"
    lateral.save_as(lateral_path, enforce_file_format=True)
    study_instance_uid = str(lateral.StudyInstanceUID)
    (orthanc_study,) = orthanc.upload(list(sent.values()))
    answer = orthanc.push("radbatch", [orthanc_study])
    assert answer["InstancesCount"] == 3 and answer["FailedInstancesCount"] == 0

    (job,) = wait_for(lambda: jobs_from_orthanc(pacs_stack), 60, "the job from Orthanc closed")
    finished = pacs_stack.api.wait_finished(job["id"], timeout=300)
    assert (finished["total"], finished["done"], finished["failed"]) == (3, 3, 0)
    rows = {row["dicom"]["sop_instance_uid"]: row for row in pacs_stack.api.results(job["id"])}
    assert set(rows) == set(sent)
    study = pacs_stack.api.http.get(f"{pacs_stack.api.base}/studies/{study_instance_uid}", timeout=30).json()

    (report,) = wait_for(lambda: reports_in_orthanc(orthanc, study_instance_uid), 180, "the SR indexed by Orthanc")
    assert len(orthanc.instances_of_study(study_instance_uid)) == len(sent) + 1
    assert report.StudyInstanceUID == study_instance_uid and report.VerificationFlag == "UNVERIFIED"
    assert evidence_uids(report) == set(sent)
    study_group, *image_groups = measurement_groups(report)
    counted = {
        str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
        for item in named(study_group, "Source of Measurement")
    }
    assert counted == set(sent) - {str(lateral.SOPInstanceUID)}
    probability = float(named(study_group, "Study probability of disease")[0].MeasuredValueSequence[0].NumericValue)
    assert probability == pytest.approx(study["result"]["probability"], abs=1e-4)
    assert_probabilities_match(image_groups, rows)
    comments = [item.TextValue for item in report.ContentSequence[-1].ContentSequence]
    assert comments[0] == "Research use only, not for diagnosis"
    assert any(f"{lateral.SOPInstanceUID} (LL): lateral view" in text for text in comments)
    assert_fhir_and_hl7_received(pacs_stack, study)


def assert_fhir_and_hl7_received(stack: NetworkStack, study: dict) -> None:
    """The study's FHIR Bundle reached the FHIR endpoint and validates; its ORU^R01 was parsed and ACKed."""
    from fhir.resources.R4B.bundle import Bundle

    wait_for(lambda: stack.fhir.bundles and stack.hl7.messages, 120, "the FHIR bundle and the HL7 message")
    (bundle,) = [Bundle.model_validate(b) for b in stack.fhir.bundles]
    report = bundle.entry[0].resource
    assert (report.status, report.identifier[0].value) == ("preliminary", f"urn:oid:{study['study_instance_uid']}")
    (message,) = stack.hl7.messages
    order = message.oru_r01_patient_result.oru_r01_order_observation
    assert order.obr.obr_20.value == study["study_instance_uid"]
    values = {o.obx.obx_3.value.split("^")[0]: o.obx.obx_5.value for o in order.oru_r01_observation}
    assert float(values["PSTUDY-ensemble"]) == pytest.approx(study["result"]["probability"], abs=1e-4)


def measurement_groups(report: pydicom.Dataset) -> list[pydicom.Dataset]:
    content = report.ContentSequence
    measurements = next(item for item in content if item.ConceptNameCodeSequence[0].CodeValue == "126010")
    return list(measurements.ContentSequence)


def named(group: pydicom.Dataset, meaning: str) -> list[pydicom.Dataset]:
    return [item for item in group.ContentSequence if item.ConceptNameCodeSequence[0].CodeMeaning == meaning]


def assert_probabilities_match(groups: list[pydicom.Dataset], rows: dict[str, dict]) -> None:
    """Every image-level group's probability of disease is the API's for that image and model."""
    for group in groups:
        image = str(named(group, "Source of Measurement")[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
        model = named(group, "Algorithm Name")[0].TextValue
        probability = float(named(group, "Probability of disease")[0].MeasuredValueSequence[0].NumericValue)
        assert probability == pytest.approx(rows[image]["predictions"][model]["probability"], abs=1e-4)
    assert len(groups) == 3 * len(rows)


# A is retrieved by accession; D and E (never retrieved before, so the PACS holds no pseudonymised SR beside them,
# see docs/pacs.md) by date range; A and B make the January range match two studies.
ARCHIVE = {
    "HOSP-A1": ("20260105", 2),
    "HOSP-B2": ("20260120", 1),
    "HOSP-C3": ("20251201", 1),
    "HOSP-D4": ("20260203", 1),
    "HOSP-E5": ("20260215", 2),
}


@pytest.fixture(scope="module")
def archive(orthanc: Orthanc, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, set[str]]]:
    """Three studies in Orthanc, by accession: (StudyInstanceUID, SOP Instance UIDs)."""
    folder = tmp_path_factory.mktemp("archive")
    studies = {}
    for accession, (date, count) in ARCHIVE.items():
        sent = write_dicom_folder(folder / accession, count, studies=1)
        for path in sent.values():
            dataset = pydicom.dcmread(path)
            dataset.AccessionNumber, dataset.StudyDate = accession, date
            dataset.save_as(path, enforce_file_format=True)
        orthanc.upload(list(sent.values()))
        studies[accession] = (str(dataset.StudyInstanceUID), set(sent))
    return studies


def retrieved_studies(stack: NetworkStack, job_id: int) -> dict[str, set[str]]:
    rows = stack.api.results(job_id)
    found: dict[str, set[str]] = {}
    for row in rows:
        assert row["status"] == "done", row
        found.setdefault(row["study_instance_uid"], set()).add(row["dicom"]["sop_instance_uid"])
    return found


def test_retrieval_by_accession_moves_the_study_into_a_job(pacs_stack: NetworkStack, archive: dict) -> None:
    api = pacs_stack.api
    answer = api.http.post(
        f"{api.base}/retrievals", json={"source": "PACS", "query": {"AccessionNumber": "HOSP-A1"}}, timeout=60
    )
    assert answer.status_code == 202, answer.text
    job_id, retrieval_id = answer.json()["job"]["id"], answer.json()["retrieval"]["id"]
    assert answer.headers["Location"].endswith(f"/api/v1/retrievals/{retrieval_id}")
    finished = api.wait_finished(job_id, timeout=300)
    assert (finished["total"], finished["done"]) == (2, 2)
    assert retrieved_studies(pacs_stack, job_id) == {archive["HOSP-A1"][0]: archive["HOSP-A1"][1]}
    retrieval = api.http.get(f"{api.base}/retrievals/{retrieval_id}", timeout=30).json()["retrieval"]
    assert (retrieval["status"], retrieval["studies"], retrieval["instances"], retrieval["error"]) == (
        "done",
        1,
        2,
        None,
    )


def test_retrieval_by_date_range_from_the_cli_over_dicomweb(
    pacs_stack: NetworkStack, archive: dict, capsys: pytest.CaptureFixture
) -> None:
    from cli.main import main

    argv = ["pull", "--url", pacs_stack.base_url, "--token", pacs_stack.token, "--source", "WEB"]
    assert main(argv + ["--date", "20260201-20260228", "--modality", "DX", "--wait"]) == 0
    job_id = int(capsys.readouterr().out.strip())
    expected = {archive[accession][0]: archive[accession][1] for accession in ("HOSP-D4", "HOSP-E5")}
    assert retrieved_studies(pacs_stack, job_id) == expected


def test_retrieval_errors_say_which_step_failed(pacs_stack: NetworkStack, archive: dict) -> None:
    def post(body: dict):
        return pacs_stack.api.http.post(f"{pacs_stack.api.base}/retrievals", json=body, timeout=120)

    unknown = post({"source": "NOWHERE", "query": {"AccessionNumber": "HOSP-A1"}})
    assert unknown.status_code == 400 and "PACS" in unknown.json()["message"]
    nothing = post({"source": "PACS", "query": {"AccessionNumber": "NO-SUCH-STUDY"}})
    assert (nothing.status_code, nothing.json()["failed_step"]) == (404, "c-find")
    assert "no study" in nothing.json()["message"]
    too_many = post({"source": "PACS", "query": {"StudyDate": "20260101-20260131"}, "max_studies": 1})
    assert (too_many.status_code, too_many.json()["failed_step"]) == (413, "c-find")
    assert "2 studies matched" in too_many.json()["message"]
    down = post({"source": "DOWN", "query": {"AccessionNumber": "HOSP-A1"}})
    assert (down.status_code, down.json()["failed_step"]) == (502, "c-find")
    assert "could not be reached" in down.json()["message"]


def test_a_disagreeing_review_sends_the_amended_sr_fhir_and_hl7(
    pacs_stack: NetworkStack, orthanc: Orthanc, archive: dict
) -> None:
    """Runs after the retrieval by accession: its study is reviewed, and the corrections go out."""
    api, (study_uid, _) = pacs_stack.api, archive["HOSP-A1"]
    jobs = api.http.get(f"{api.base}/jobs", params={"per_page": 200}, timeout=30).json()["jobs"]
    job = next(job for job in jobs if job["name"].startswith("Retrieval from PACS"))
    wait_for(lambda: reports_in_orthanc(orthanc, study_uid), 180, "the first SR of the retrieved study")
    body = {"job_id": job["id"], "verdict": "disagree", "label": "healthy", "comment": "old scar"}
    assert api.http.post(f"{api.base}/studies/{study_uid}/reviews", json=body, timeout=30).status_code == 201

    def amended() -> list[pydicom.Dataset] | None:
        reports = reports_in_orthanc(orthanc, study_uid)
        return [r for r in reports if "disagree" in str(r.ContentSequence[-1].ContentSequence[1].TextValue)] or None

    (report,) = wait_for(amended, 180, "the amended SR in Orthanc")
    assert "Reviewed by pacs-owner" in report.ContentSequence[-1].ContentSequence[1].TextValue
    assert "correct label healthy; comment: old scar" in report.ContentSequence[-1].ContentSequence[1].TextValue

    def corrections() -> tuple | None:
        bundles = [b for b in pacs_stack.fhir.bundles if b["entry"][0]["resource"]["status"] == "amended"]
        orders = [m.oru_r01_patient_result.oru_r01_order_observation.obr for m in pacs_stack.hl7.messages]
        corrected = [o for o in orders if o.obr_25.value == "C" and o.obr_20.value == study_uid]
        return (bundles, corrected) if bundles and corrected else None

    bundles, _ = wait_for(corrections, 120, "the amended FHIR bundle and the corrected ORU")
    assert bundles[0]["entry"][0]["resource"]["identifier"][0]["value"] == f"urn:oid:{study_uid}"
