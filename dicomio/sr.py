"""The DICOM Structured Report of a study's results, built with highdicom, following IHE AI Results (AIR).

A Comprehensive 3D SR holding a TID 1500 Measurement Report, one per study (per image for `sr.dcm` of one image):

* a study-level measurement group first: the study result (the ensemble's probability of disease over the study,
  how it is formed in the algorithm parameters), its qualitative evaluation *Finding* = Abnormal (SCT 263654008)
  or Normal (SCT 17621005), each validated finding as Present (SCT 52101004) / Absent (SCT 2667000) with its
  probability, and as source images the images the result counts (frontal views);
* image-level evidence: one TID 1501 group per image and model (the CNN, the U-Net, the ensemble) with the
  algorithm identification (name, version, threshold), the source image, the Finding and the probability of
  disease and decision threshold (dimensionless, UCUM "1");
* a *Qualitative Evaluations* container with text: the disclaimer "Research use only, not for diagnosis", how the
  study result is formed, and every note and warning (a lateral view, which the study result does not count).

The report is UNVERIFIED: no person has checked it. UIDs are derived from the study, its images and the model
versions, so building the report again for the same images and models gives the same SOP Instance UID (a PACS
keeps one copy), a report with more images or other models gets a new one, and all of a study's reports share
one series.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from highdicom.sr import (
    AlgorithmIdentification,
    Comprehensive3DSR,
    ContainerContentItem,
    DeviceObserverIdentifyingAttributes,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    QualitativeEvaluation,
    SourceImageForMeasurementGroup,
    TextContentItem,
    TrackingIdentifier,
)
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from dicomio import codes as c
from dicomio.read import DicomError, part10, read_header

MANUFACTURER = "radbatch"
UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "radbatch:dicom-sr")
SR_SERIES_NUMBER = 9901
SINGLE_IMAGE_METHOD = "the ensemble's probability of disease for this one image"
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
    """One model's prediction for one image (or the study); plain tuples in this order work too."""

    name: str
    version: str
    probability: float
    label: str
    threshold: float


@dataclass
class ImageEvidence:
    """One image of the study: its stored header (no pixels needed), its model results and notes, and whether
    the study result counts it (frontal views only)."""

    header: Dataset
    results: list[ModelResult]
    notes: list[str] = field(default_factory=list)
    counted: bool = True


@dataclass(frozen=True)
class StudyFinding:
    name: str  # NIH's, e.g. "Effusion"
    probability: float
    threshold: float


@dataclass
class StudyResult:
    result: ModelResult  # the ensemble at study level
    method: str  # how the study probability is formed, in words
    findings: list[StudyFinding] = field(default_factory=list)


def _uid(*parts: str) -> str:
    """A UID under the UUID arc 2.25 from a name-based (version 5) UUID: the same parts give the same UID."""
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, '|'.join(parts)).int}"


def _label(result: ModelResult) -> Any:
    if result.label not in c.LABEL_CODES:
        raise ValueError(f"label {result.label!r} of model {result.name!r} is not one of {', '.join(c.LABEL_CODES)}")
    return c.LABEL_CODES[result.label]


def _number(name: Any, value: float) -> Measurement:
    return Measurement(name=name, value=float(value), unit=c.NO_UNITS)


def _image_group(source: Dataset, result: ModelResult) -> MeasurementsAndQualitativeEvaluations:
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(
            uid=_uid(str(source.SOPInstanceUID), result.name, result.version),
            identifier=f"{result.name} classification",
        ),
        finding_type=c.CLINICAL_FINDING,
        algorithm_id=AlgorithmIdentification(
            name=result.name, version=result.version, parameters=[f"threshold={result.threshold:.4f}"]
        ),
        source_images=[SourceImageForMeasurementGroup.from_source_image(source)],
        qualitative_evaluations=[QualitativeEvaluation(name=c.FINDING, value=_label(result))],
        measurements=[_number(c.PROBABILITY, result.probability), _number(c.THRESHOLD, result.threshold)],
    )


def _study_group(study_uid: str, study: StudyResult, counted: list[Dataset]) -> MeasurementsAndQualitativeEvaluations:
    result = study.result
    evaluations = [QualitativeEvaluation(name=c.FINDING, value=_label(result))]
    measurements = [_number(c.STUDY_PROBABILITY, result.probability), _number(c.THRESHOLD, result.threshold)]
    for finding in study.findings:
        present = finding.probability >= finding.threshold
        evaluations.append(
            QualitativeEvaluation(name=c.finding_code(finding.name), value=c.PRESENT if present else c.ABSENT)
        )
        measurements.append(_number(c.finding_probability_code(finding.name), finding.probability))
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=_uid("study", study_uid, result.version), identifier="study result"),
        finding_type=c.CLINICAL_FINDING,
        algorithm_id=AlgorithmIdentification(
            name=f"{result.name} (study)",
            version=result.version,
            parameters=[f"threshold={result.threshold:.4f}", f"study probability: {study.method}"[:1024]],
        ),
        source_images=[SourceImageForMeasurementGroup.from_source_image(image) for image in counted],
        qualitative_evaluations=evaluations,
        measurements=measurements,
    )


def _text_evaluations(
    images: list[ImageEvidence], study: StudyResult | None, reviews: Sequence[str]
) -> ContainerContentItem:
    """The disclaimer, how the study result is formed, every image's notes and any review, as TEXT items."""
    texts = [c.DISCLAIMER, *reviews]
    if study is not None:
        texts.append(f"Study result: {study.method}.")
    else:
        texts.append("No study result: no frontal image was predicted.")
    for image in images:
        view = str(image.header.get("ViewPosition") or "unknown view")
        where = f"Image {image.header.SOPInstanceUID} ({view})"
        texts += [f"{where}: {note}" for note in image.notes]
        if not image.counted:
            texts.append(f"{where}: not counted in the study result (not a frontal view)")
    container = ContainerContentItem(name=c.QUALITATIVE_EVALUATIONS, relationship_type="CONTAINS")
    container.ContentSequence = [TextContentItem(c.COMMENT, text[:1024], "CONTAINS") for text in texts]
    return container


def _with_patient_study_modules(source: Dataset) -> Dataset:
    """A header-only copy of `source` with the type 2 patient/study attributes the SR repeats (empty if absent)."""
    header = Dataset()
    header.update({element.tag: element for element in source if element.tag != 0x7FE00010})
    for keyword in PATIENT_STUDY_TYPE2:
        if keyword not in header:
            setattr(header, keyword, None)
    return header


def build_study_sr(
    images: Sequence[ImageEvidence],
    study: StudyResult | None,
    device_name: str = MANUFACTURER,
    reviews: Sequence[str] = (),
) -> Dataset:
    """The AIR report of one study's images (all of the same StudyInstanceUID) and its study-level result.
    `reviews`: a radiologist's verdict in words; a report with a review is a new instance (an amended report)."""
    images = [
        ImageEvidence(_with_patient_study_modules(i.header), [ModelResult(*r) for r in i.results], i.notes, i.counted)
        for i in images
    ]
    if not images or not any(image.results for image in images):
        raise ValueError("a structured report needs at least one model result")
    study_uid = str(images[0].header.StudyInstanceUID)
    if any(str(image.header.StudyInstanceUID) != study_uid for image in images):
        raise ValueError("every image of a study report must belong to the same study")
    groups = []
    if study is not None:
        groups.append(_study_group(study_uid, study, [i.header for i in images if i.counted]))
    groups += [_image_group(image.header, result) for image in images for result in image.results]
    observer = ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=_uid("device", device_name), name=device_name, manufacturer_name=MANUFACTURER
        ),
    )
    report = MeasurementReport(
        observation_context=ObservationContext(observer_device_context=observer),
        procedure_reported=c.CHEST_RADIOGRAPH,
        imaging_measurements=groups,
    )
    report[0].ContentSequence.append(_text_evaluations(images, study, reviews))
    versions = sorted({f"{r.name}={r.version}" for image in images for r in image.results})
    instances = sorted(str(image.header.SOPInstanceUID) for image in images)
    return Comprehensive3DSR(
        evidence=[image.header for image in images],
        content=report,
        series_instance_uid=_uid("series", study_uid),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=_uid("instance", study_uid, *instances, *versions, *reviews),
        instance_number=1,
        manufacturer=MANUFACTURER,
        series_description="radbatch AI results (research use only)",
        is_complete=True,
        is_final=False,
        is_verified=False,
    )


def build_sr(source: Dataset, results: Iterable[ModelResult | tuple], device_name: str = MANUFACTURER) -> Dataset:
    """The report of one image: its results, with the ensemble's (else the last model's) as the study result."""
    results = [ModelResult(*result) for result in results]
    if not results:
        raise ValueError("a structured report needs at least one model result")
    headline = results[-1]  # ordered_results puts the headline model last
    return build_study_sr([ImageEvidence(source, results)], StudyResult(headline, SINGLE_IMAGE_METHOD), device_name)


def ordered_results(predictions: Iterable[Any]) -> list[ModelResult]:
    """Prediction rows (`model_name`, `model_version`, `probability`, `label`, `threshold`, `headline`) in the one
    order every report lists them, whichever path builds it (download or forwarding: the SR's UID depends on it): by
    model name, with the headline model's row (the ensemble as shipped; models/catalogue.py) last."""
    ordered = sorted(predictions, key=lambda p: (bool(getattr(p, "headline", False)), p.model_name))
    return [ModelResult(p.model_name, p.model_version, p.probability, p.label, p.threshold) for p in ordered]


def checked(build: Any, *args: Any) -> Dataset:
    """Run a builder; a stored file that lacks what a report needs is a DicomError saying so."""
    try:
        return build(*args)
    except (ValueError, AttributeError, TypeError, KeyError) as error:
        message = f"the stored DICOM file lacks what a report needs ({type(error).__name__}: {error})"
        raise DicomError("incomplete", message[:300]) from None


def image_report(stored: Path | BinaryIO, predictions: Iterable[Any], notes: Sequence[str] = ()) -> Dataset | None:
    """The SR of a stored DICOM image (the de-identified copy unless RADBATCH_DEIDENTIFY=false) and its prediction
    rows, ready to send or save; None without predictions. FileNotFoundError when the file is gone, DicomError when
    it cannot be read or lacks what a report needs."""
    results = ordered_results(predictions)
    if not results:
        return None
    header = read_header(stored)
    headline = results[-1]
    evidence = [ImageEvidence(header, results, list(notes))]
    return checked(build_study_sr, evidence, StudyResult(headline, SINGLE_IMAGE_METHOD))


def sr_bytes(sr: Dataset) -> bytes:
    """The SR as a DICOM Part 10 file (preamble, file meta, explicit VR little endian)."""
    return part10(sr)


__all__ = ["ImageEvidence", "ModelResult", "StudyFinding", "StudyResult", "build_sr", "build_study_sr", "sr_bytes"]
