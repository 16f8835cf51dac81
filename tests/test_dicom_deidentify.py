"""De-identification: no PHI value survives anywhere in the written file; the pseudonym groups a patient."""

from __future__ import annotations

import copy
import hashlib
import hmac
import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from dicomio.deidentify import accession_pseudonym, deidentify, patient_pseudonym
from dicomio.read import decode_dicom, dicom_metadata
from tests.dicom_corpus import image_dataset

PHI = {
    "PatientName": "PHI^SHOULD^NOT^APPEAR",
    "PatientID": "MRN-4471-PHI",
    "PatientBirthDate": "19450312",
    "PatientAddress": "12 Hidden Lane, Springfield",
    "PatientTelephoneNumbers": "555-0100",
    "OtherPatientNames": "MAIDEN^NAME^PHI",
    "InstitutionName": "Saint Phi General Hospital",
    "InstitutionAddress": "1 Hospital Road, Shelbyville",
    "ReferringPhysicianName": "REFERRER^ROBERTA",
    "PerformingPhysicianName": "PERFORMER^PAT",
    "OperatorsName": "OPERATOR^OTTO",
    "AccessionNumber": "ACC-99812",
    "StudyDescription": "Routine film for ACC-99812 (Mrs Appear)",
    "ImageComments": "called Mrs Appear on 555-0100 about ACC-99812",
    "StationName": "XRAY-ROOM-7",
    "StudyID": "STUDY-31337",
}
PRIVATE_VALUE = "PRIVATE-VENDOR-PHI-7731"
NESTED_VALUE = "REQUESTER^RITA"
SECRET = "app-secret-key"


def phi_dataset() -> Dataset:
    pixels = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 4096
    ds = image_dataset(pixels, 12, **PHI)
    request = Dataset()
    request.RequestingPhysician = NESTED_VALUE
    request.RequestedProcedureID = "REQ-ACC-99812"
    ds.RequestAttributesSequence = [request]
    other_id = Dataset()
    other_id.PatientID = "OTHER-ID-PHI-55"
    ds.OtherPatientIDsSequence = [other_id]
    ds.private_block(0x0029, "ACME PHI TOOLS", create=True).add_new(0x01, "LO", PRIVATE_VALUE)
    ds.file_meta.SourceApplicationEntityTitle = "SAINTPHI_AE"
    return ds


def written(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def needles() -> list[str]:
    values = [*PHI.values(), PRIVATE_VALUE, NESTED_VALUE, "OTHER-ID-PHI-55", "SAINTPHI_AE", "ACME PHI TOOLS"]
    parts = {part for value in values for part in value.replace("^", " ").replace(",", " ").split() if len(part) >= 5}
    return sorted(set(values) | parts | {"APPEAR", "SHOULD", "Springfield", "4471"})


def test_no_phi_value_survives_in_the_written_file() -> None:
    ds = phi_dataset()
    before = written(ds).upper()
    assert all(needle.upper().encode() in before for needle in ("PHI^SHOULD^NOT^APPEAR", PRIVATE_VALUE, NESTED_VALUE))
    identity = deidentify(ds, SECRET)
    data = written(ds).upper()
    leaked = [needle for needle in needles() if needle.upper().encode() in data]
    assert leaked == [], f"PHI left in the de-identified file: {leaked}"
    assert identity.patient_id is None and identity.patient_name is None and identity.deidentified


def test_profile_is_declared_and_the_pseudonym_replaces_the_id() -> None:
    ds = phi_dataset()
    uids = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    identity = deidentify(ds, SECRET)
    reread = pydicom.dcmread(io.BytesIO(written(ds)))
    assert reread.PatientIdentityRemoved == "YES"
    codes = [(item.CodeValue, item.CodingSchemeDesignator) for item in reread.DeidentificationMethodCodeSequence]
    assert codes == [("113100", "DCM"), ("113110", "DCM")]
    assert "Retain UIDs Option" in reread.DeidentificationMethod
    assert (reread.StudyInstanceUID, reread.SeriesInstanceUID, reread.SOPInstanceUID) == uids
    expected = hmac.new(SECRET.encode(), PHI["PatientID"].encode(), hashlib.sha256).hexdigest()[:32]
    assert reread.PatientID == identity.pseudonym == expected
    assert reread.PatientName == "" and reread.get("PatientBirthDate") in (None, "")
    metadata = dicom_metadata(reread)
    assert (
        metadata.accession_number == accession_pseudonym(PHI["AccessionNumber"], SECRET) and metadata.study_date is None
    )
    assert len(metadata.accession_number) == 16 and PHI["AccessionNumber"] not in metadata.accession_number
    assert metadata.view_position == "PA" and metadata.study_instance_uid == uids[0]


def test_pseudonym_groups_a_patient_and_depends_on_the_key() -> None:
    assert patient_pseudonym("MRN-1", SECRET) == patient_pseudonym(" MRN-1 ", SECRET.encode())
    assert patient_pseudonym("MRN-1", SECRET) != patient_pseudonym("MRN-2", SECRET)
    assert patient_pseudonym("MRN-1", SECRET) != patient_pseudonym("MRN-1", "another key")
    assert patient_pseudonym("", SECRET) is None and patient_pseudonym(None, SECRET) is None


def test_pixels_survive_de_identification() -> None:
    ds = phi_dataset()
    before = np.asarray(decode_dicom(copy.deepcopy(ds)).image)
    deidentify(ds, SECRET)
    after = decode_dicom(written(ds))
    np.testing.assert_array_equal(np.asarray(after.image), before)


def test_disabled_keeps_the_data_set_and_returns_the_identity() -> None:
    ds = phi_dataset()
    original = written(ds)
    identity = deidentify(ds, SECRET, enabled=False)
    assert written(ds) == original
    assert (identity.patient_id, identity.patient_name) == (PHI["PatientID"], PHI["PatientName"])
    assert identity.pseudonym == patient_pseudonym(PHI["PatientID"], SECRET) and not identity.deidentified


@pytest.mark.parametrize("burned_in, warned", [("YES", True), ("NO", False)])
def test_burned_in_annotation_is_warned(burned_in: str, warned: bool) -> None:
    ds = phi_dataset()
    ds.BurnedInAnnotation = burned_in
    assert bool(deidentify(ds, SECRET).warnings) == warned
