"""A DICOM Structured Report of one image's predictions, built with highdicom.

A Comprehensive 3D SR holding a TID 1500 Measurement Report. Each model and the ensemble get one
TID 1501 measurement group with: the algorithm identification (model name and version, the threshold
as its parameter), a reference to the source image, the qualitative evaluation "Finding" = Abnormal
(SCT 263654008) for the label "disease" or Normal (SCT 17621005) for "healthy", and two numeric
measurements, the probability of disease and the decision threshold (dimensionless, UCUM "1").
The report is UNVERIFIED: no person has checked it.

UIDs are derived from the source SOP Instance UID and the model versions, so building the SR again
for the same image and models gives the same SOP Instance UID (a PACS replaces rather than
duplicates it), and all of a study's reports share one series.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import highdicom as hd
from highdicom.sr import (
    AlgorithmIdentification,
    Comprehensive3DSR,
    DeviceObserverIdentifyingAttributes,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    QualitativeEvaluation,
    SourceImageForMeasurementGroup,
    TrackingIdentifier,
)
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from dicomio.read import DicomError, read_header

MANUFACTURER = "radbatch"
UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "radbatch:dicom-sr")
SR_SERIES_NUMBER = 9901
CHEST_RADIOGRAPH = Code("399208008", "SCT", "Plain chest X-ray")
CLINICAL_FINDING = Code("404684003", "SCT", "Clinical finding")
FINDING = Code("121071", "DCM", "Finding")
LABEL_CODES = {
    "disease": Code("263654008", "SCT", "Abnormal"),
    "healthy": Code("17621005", "SCT", "Normal"),
}
PROBABILITY = Code("PDISEASE", "99RADBATCH", "Probability of disease")
THRESHOLD = Code("THRESHOLD", "99RADBATCH", "Decision threshold")
NO_UNITS = Code("1", "UCUM", "no units")
PATIENT_STUDY_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


class ModelResult(NamedTuple):
    """One model's prediction for one image; plain tuples in this order work too."""

    name: str
    version: str
    probability: float
    label: str
    threshold: float


def _uid(*parts: str) -> str:
    """A UID under the UUID arc 2.25 from a name-based (version 5) UUID: the same parts give the same UID."""
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, '|'.join(parts)).int}"


def _group(source: Dataset, result: ModelResult) -> MeasurementsAndQualitativeEvaluations:
    if result.label not in LABEL_CODES:
        raise ValueError(f"label {result.label!r} of model {result.name!r} is not one of {', '.join(LABEL_CODES)}")
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(
            uid=_uid(str(source.SOPInstanceUID), result.name, result.version),
            identifier=f"{result.name} classification",
        ),
        finding_type=CLINICAL_FINDING,
        algorithm_id=AlgorithmIdentification(
            name=result.name, version=result.version, parameters=[f"threshold={result.threshold:.4f}"]
        ),
        source_images=[SourceImageForMeasurementGroup.from_source_image(source)],
        qualitative_evaluations=[QualitativeEvaluation(name=FINDING, value=LABEL_CODES[result.label])],
        measurements=[
            Measurement(name=PROBABILITY, value=float(result.probability), unit=NO_UNITS),
            Measurement(name=THRESHOLD, value=float(result.threshold), unit=NO_UNITS),
        ],
    )


def _with_patient_study_modules(source: Dataset) -> Dataset:
    """A header-only copy of `source` with the type 2 patient/study attributes the SR repeats (empty if absent)."""
    header = Dataset()
    header.update({element.tag: element for element in source if element.tag != 0x7FE00010})
    for keyword in PATIENT_STUDY_TYPE2:
        if keyword not in header:
            setattr(header, keyword, None)
    return header


def build_sr(source: Dataset, results: Iterable[ModelResult | tuple], device_name: str = MANUFACTURER) -> Dataset:
    """The SR for `source` (the stored, de-identified image; its pixels are not needed) and its predictions.

    `source` must carry the SOP Class/Instance, Study and Series UIDs and the patient and study module
    values the report repeats (read the stored file with `stop_before_pixels=True`).
    """
    source = _with_patient_study_modules(source)
    results = [ModelResult(*result) for result in results]
    if not results:
        raise ValueError("a structured report needs at least one model result")
    versions = [f"{result.name}={result.version}" for result in results]
    observer = ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=_uid("device", device_name), name=device_name, manufacturer_name=MANUFACTURER
        ),
    )
    report = MeasurementReport(
        observation_context=ObservationContext(observer_device_context=observer),
        procedure_reported=CHEST_RADIOGRAPH,
        imaging_measurements=[_group(source, result) for result in results],
    )
    return Comprehensive3DSR(
        evidence=[source],
        content=report,
        series_instance_uid=_uid("series", str(source.StudyInstanceUID)),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=_uid("instance", str(source.SOPInstanceUID), *versions),
        instance_number=1,
        manufacturer=MANUFACTURER,
        series_description="radbatch AI screening results",
        is_complete=True,
        is_final=False,
        is_verified=False,
    )


def ordered_results(predictions: Iterable[Any]) -> list[ModelResult]:
    """Prediction rows (`model_name`, `model_version`, `probability`, `label`, `threshold`) in the one order every
    report lists them: the CNN, the U-Net, any other model by name, and the ensemble last."""
    first = {"cnn": 0, "unet": 1, "ensemble": 3}
    ordered = sorted(predictions, key=lambda p: (first.get(p.model_name, 2), p.model_name))
    return [ModelResult(p.model_name, p.model_version, p.probability, p.label, p.threshold) for p in ordered]


def image_report(stored: Path | BinaryIO, predictions: Iterable[Any]) -> Dataset | None:
    """The SR of a stored DICOM image (the de-identified copy unless RADBATCH_DEIDENTIFY=false) and its prediction
    rows, ready to send or save; None without predictions. FileNotFoundError when the file is gone, DicomError when
    it cannot be read or lacks what a report needs."""
    results = ordered_results(predictions)
    if not results:
        return None
    source = read_header(stored)
    try:
        return build_sr(source, results)
    except (ValueError, AttributeError, TypeError, KeyError) as error:
        message = f"the stored DICOM file lacks what a report needs ({type(error).__name__})"
        raise DicomError("incomplete", message) from None


def sr_bytes(sr: Dataset) -> bytes:
    """The SR as a DICOM Part 10 file (preamble, file meta, explicit VR little endian)."""
    buffer = io.BytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


__all__ = ["ModelResult", "build_sr", "hd", "image_report", "ordered_results", "sr_bytes"]
