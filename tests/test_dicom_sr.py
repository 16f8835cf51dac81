"""The structured report: dcmtk's dsrdump reads it cleanly and pydicom reads back every value."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom import uid

from dicomio.deidentify import deidentify
from dicomio.sr import ModelResult, build_sr, sr_bytes
from tests.conftest import skip_or_fail
from tests.dicom_corpus import image_dataset

RESULTS = [
    ModelResult("cnn", "cnn-2026.11", 0.8312, "disease", 0.41),
    ModelResult("unet", "unet-2026.11", 0.2975, "healthy", 0.47),
    ("ensemble", "ensemble-2026.11", 0.5644, "disease", 0.44),
]


@pytest.fixture
def source() -> pydicom.Dataset:
    import numpy as np

    ds = image_dataset(np.zeros((16, 16), dtype=np.uint8), 8, PatientName="DOE^JANE", PatientID="P1")
    deidentify(ds, "secret")
    return ds


def groups(sr: pydicom.Dataset) -> list[pydicom.Dataset]:
    measurements = next(item for item in sr.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "126010")
    return list(measurements.ContentSequence)


def items_named(group: pydicom.Dataset, meaning: str) -> list[pydicom.Dataset]:
    return [item for item in group.ContentSequence if item.ConceptNameCodeSequence[0].CodeMeaning == meaning]


def test_sr_values_read_back(source: pydicom.Dataset, tmp_path: Path) -> None:
    path = tmp_path / "sr.dcm"
    path.write_bytes(sr_bytes(build_sr(source, RESULTS)))
    sr = pydicom.dcmread(path)
    assert sr.SOPClassUID == uid.Comprehensive3DSRStorage and sr.Modality == "SR"
    assert (sr.VerificationFlag, sr.CompletionFlag) == ("UNVERIFIED", "COMPLETE")
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert (sr.StudyInstanceUID, sr.PatientID, sr.PatientName) == (source.StudyInstanceUID, source.PatientID, "")
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert evidence.ReferencedSOPInstanceUID == source.SOPInstanceUID
    read_back = []
    for group in groups(sr):
        name = items_named(group, "Algorithm Name")[0].TextValue
        version = items_named(group, "Algorithm Version")[0].TextValue
        probability = float(items_named(group, "Probability of disease")[0].MeasuredValueSequence[0].NumericValue)
        threshold = float(items_named(group, "Decision threshold")[0].MeasuredValueSequence[0].NumericValue)
        finding = items_named(group, "Finding")[-1].ConceptCodeSequence[0].CodeMeaning
        image = items_named(group, "Source of Measurement")[0].ReferencedSOPSequence[0]
        assert image.ReferencedSOPInstanceUID == source.SOPInstanceUID
        read_back.append((name, version, probability, {"Abnormal": "disease", "Normal": "healthy"}[finding], threshold))
    assert read_back == [tuple(result) for result in RESULTS]


def test_sr_uid_is_stable_for_the_same_image_and_models(source: pydicom.Dataset) -> None:
    first, again = build_sr(source, RESULTS), build_sr(source, RESULTS)
    assert first.SOPInstanceUID == again.SOPInstanceUID and first.SeriesInstanceUID == again.SeriesInstanceUID
    newer = build_sr(source, [ModelResult("cnn", "cnn-2027.01", 0.8, "disease", 0.4)])
    assert newer.SOPInstanceUID != first.SOPInstanceUID


def test_dsrdump_reads_the_sr_without_errors_or_warnings(source: pydicom.Dataset, tmp_path: Path) -> None:
    if shutil.which("dsrdump") is None:
        skip_or_fail("dcmtk's dsrdump is not installed (apt-get install dcmtk)")
    path = tmp_path / "sr.dcm"
    path.write_bytes(sr_bytes(build_sr(source, RESULTS)))
    result = subprocess.run(["dsrdump", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "Comprehensive 3D SR Document" in result.stdout
    assert "Verification Flag   : UNVERIFIED" in result.stdout
    for name, version, *_ in RESULTS:
        assert f'"Algorithm Name")="{name}"' in result.stdout and f'="{version}"' in result.stdout
    assert '(263654008,SCT,"Abnormal")' in result.stdout and '(17621005,SCT,"Normal")' in result.stdout


def test_unknown_label_is_refused(source: pydicom.Dataset) -> None:
    with pytest.raises(ValueError, match="label 'maybe'"):
        build_sr(source, [("cnn", "v1", 0.5, "maybe", 0.5)])
