"""The peer a hospital actually has: Debian's Orthanc, both directions. Orthanc pushes a study to radbatch's
listener through its REST API (`POST /modalities/radbatch/store`); the worker predicts it; the forwarding worker
sends the SRs back, and the test reads them from Orthanc's REST API (instance count, SR content, references)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from tests.dicom_network_fixtures import NetworkStack
from tests.dicom_network_helpers import write_dicom_folder
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


def test_orthanc_pushes_a_study_and_receives_the_srs(
    pacs_stack: NetworkStack, orthanc: Orthanc, tmp_path: Path
) -> None:
    sent = write_dicom_folder(tmp_path / "pacs", 3, studies=1)
    study_instance_uid = str(pydicom.dcmread(next(iter(sent.values()))).StudyInstanceUID)
    (orthanc_study,) = orthanc.upload(list(sent.values()))
    answer = orthanc.push("radbatch", [orthanc_study])
    assert answer["InstancesCount"] == 3 and answer["FailedInstancesCount"] == 0

    (job,) = wait_for(lambda: jobs_from_orthanc(pacs_stack), 60, "the job from Orthanc closed")
    finished = pacs_stack.api.wait_finished(job["id"], timeout=300)
    assert (finished["total"], finished["done"], finished["failed"]) == (3, 3, 0)
    rows = {row["dicom"]["sop_instance_uid"]: row for row in pacs_stack.api.results(job["id"])}
    assert set(rows) == set(sent)

    def every_report_indexed() -> list[pydicom.Dataset] | None:
        reports = reports_in_orthanc(orthanc, study_instance_uid)
        return reports if len(reports) >= len(sent) else None

    reports = wait_for(every_report_indexed, 180, "the SRs indexed by Orthanc")
    assert len(orthanc.instances_of_study(study_instance_uid)) == len(sent) + len(reports)
    referenced = set()
    for report in reports:
        assert report.StudyInstanceUID == study_instance_uid and report.VerificationFlag == "UNVERIFIED"
        evidence = report.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
        referenced |= {str(item.ReferencedSOPInstanceUID) for item in evidence.ReferencedSOPSequence}
        assert_probabilities_match(report, rows)
    assert referenced == set(sent)


def assert_probabilities_match(report: pydicom.Dataset, rows: dict[str, dict]) -> None:
    """Every measurement group's probability of disease is the API's for that image and model."""
    content = report.ContentSequence
    measurements = next(item for item in content if item.ConceptNameCodeSequence[0].CodeValue == "126010")
    checked = 0
    for group in measurements.ContentSequence:
        by_meaning = {item.ConceptNameCodeSequence[0].CodeMeaning: item for item in group.ContentSequence}
        image = str(by_meaning["Source of Measurement"].ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
        model = by_meaning["Algorithm Name"].TextValue
        probability = float(by_meaning["Probability of disease"].MeasuredValueSequence[0].NumericValue)
        assert probability == pytest.approx(rows[image]["predictions"][model]["probability"], abs=1e-4)
        checked += 1
    assert checked >= 3
