"""The structured report: dcmtk's dsrdump reads it cleanly and pydicom reads back every value."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom import uid

from dicomio.deidentify import deidentify
from dicomio.sr import (
    ImageEvidence,
    ModelResult,
    StudyFinding,
    StudyResult,
    build_sr,
    build_study_sr,
    ordered_results,
    sr_bytes,
)
from tests.conftest import skip_or_fail
from tests.dicom_corpus import image_dataset
from tests.dicom_network_helpers import evidence_uids

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
    """The image-level measurement groups (the study-level group, tracking identifier "study result", comes first)."""
    measurements = next(item for item in sr.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "126010")
    return [
        group
        for group in measurements.ContentSequence
        if items_named(group, "Tracking Identifier")[0].TextValue != "study result"
    ]


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


def study_images() -> list[ImageEvidence]:
    import numpy as np

    study = uid.generate_uid()
    images = []
    for view in ("PA", "LL"):
        ds = image_dataset(np.zeros((16, 16), dtype=np.uint8), 8, PatientID="P1", AccessionNumber="A1")
        ds.StudyInstanceUID, ds.ViewPosition = study, view
        deidentify(ds, "secret")
        lateral = view == "LL"
        notes = ["lateral view: the models were trained on frontal (PA/AP) views"] if lateral else []
        images.append(ImageEvidence(ds, RESULTS, notes, counted=not lateral))
    return images


STUDY = StudyResult(ModelResult(*RESULTS[2]), "the maximum over frontal images", [StudyFinding("Effusion", 0.7, 0.4)])


def test_the_study_report_has_a_study_root_image_evidence_disclaimer_and_notes(tmp_path: Path) -> None:
    images = study_images()
    sr = pydicom.dcmread(io.BytesIO(sr_bytes(build_study_sr(images, STUDY))))
    measurements = next(item for item in sr.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "126010")
    study_group, *image_groups = measurements.ContentSequence
    assert items_named(study_group, "Tracking Identifier")[0].TextValue == "study result"
    counted = items_named(study_group, "Source of Measurement")
    assert [item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for item in counted] == [
        images[0].header.SOPInstanceUID
    ]
    probability = items_named(study_group, "Study probability of disease")[0].MeasuredValueSequence[0]
    assert float(probability.NumericValue) == pytest.approx(0.5644)
    effusion = items_named(study_group, "Pleural effusion")[0].ConceptCodeSequence[0]
    assert (effusion.CodeValue, effusion.CodeMeaning) == ("52101004", "Present")
    assert len(image_groups) == 2 * len(RESULTS)
    texts = next(item for item in sr.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "C0034375")
    comments = [item.TextValue for item in texts.ContentSequence]
    assert comments[0] == "Research use only, not for diagnosis"
    assert any("(LL): lateral view" in text for text in comments)
    assert any("(LL): not counted in the study result" in text for text in comments)
    assert evidence_uids(sr) == {image.header.SOPInstanceUID for image in images}


def test_dciodvfy_and_dsrdump_find_no_error_in_the_study_report(tmp_path: Path) -> None:
    for tool, package in (("dciodvfy", "dicom3tools"), ("dsrdump", "dcmtk")):
        if shutil.which(tool) is None:
            skip_or_fail(f"{tool} is not installed (apt-get install {package})")
    path = tmp_path / "study-sr.dcm"
    path.write_bytes(sr_bytes(build_study_sr(study_images(), STUDY)))
    validated = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    output = validated.stdout + validated.stderr
    assert "Comprehensive3DSR" in output
    assert [line for line in output.splitlines() if line.startswith("Error")] == []
    dump = subprocess.run(["dsrdump", str(path)], capture_output=True, text=True, timeout=60)
    assert dump.returncode == 0 and dump.stderr == "", dump.stderr
    assert '="Research use only, not for ...">' in dump.stdout  # dsrdump shortens long text


def test_every_report_path_orders_the_models_alike_with_the_headline_last() -> None:
    """The download and the forwarded SR take their rows in different orders; the SR (and its UID) must not differ.
    A model the catalogue added sorts by name; the row the worker marked headline comes last."""
    from types import SimpleNamespace

    def row(name: str, headline: bool = False) -> SimpleNamespace:
        return SimpleNamespace(
            model_name=name,
            model_version=f"{name}-1",
            probability=0.6,
            label="disease",
            threshold=0.5,
            headline=headline,
        )

    rows = [row("unet"), row("ensemble", headline=True), row("third"), row("cnn")]
    first, second = ordered_results(rows), ordered_results(list(reversed(rows)))
    assert [r.name for r in first] == [r.name for r in second] == ["cnn", "third", "unet", "ensemble"]
