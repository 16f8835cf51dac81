"""The per-image DICOM metadata radbatch keeps: identifiers, view, pixel format, transfer syntax, spacing."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pydicom.dataset import Dataset
from pydicom.uid import UID


@dataclass(frozen=True)
class DicomMetadata:
    """What is kept per image. Read it after de-identification: the de-identified values are what is stored."""

    sop_class_uid: str | None
    study_instance_uid: str | None
    series_instance_uid: str | None
    sop_instance_uid: str | None
    accession_number: str | None
    study_date: str | None
    modality: str | None
    view_position: str | None
    body_part_examined: str | None
    photometric_interpretation: str | None
    bits_stored: int | None
    rows: int | None
    columns: int | None
    number_of_frames: int
    transfer_syntax_uid: str | None
    transfer_syntax_name: str | None
    pixel_spacing_mm: tuple[float, float] | None
    pixel_spacing_source: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    return str(value).strip() or None if value is not None else None


def _int(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _spacing(ds: Dataset) -> tuple[tuple[float, float] | None, str | None]:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        try:
            if value is not None and len(value) == 2:
                return (float(value[0]), float(value[1])), keyword
        except (TypeError, ValueError):
            continue
    return None, None


def dicom_metadata(ds: Dataset) -> DicomMetadata:
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    spacing, spacing_source = _spacing(ds)
    return DicomMetadata(
        sop_class_uid=_text(ds, "SOPClassUID"),
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        series_instance_uid=_text(ds, "SeriesInstanceUID"),
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        accession_number=_text(ds, "AccessionNumber"),
        study_date=_text(ds, "StudyDate"),
        modality=_text(ds, "Modality"),
        view_position=_text(ds, "ViewPosition"),
        body_part_examined=_text(ds, "BodyPartExamined"),
        photometric_interpretation=_text(ds, "PhotometricInterpretation"),
        bits_stored=_int(ds, "BitsStored"),
        rows=_int(ds, "Rows"),
        columns=_int(ds, "Columns"),
        number_of_frames=max(1, _int(ds, "NumberOfFrames") or 1),
        transfer_syntax_uid=str(syntax) if syntax else None,
        transfer_syntax_name=UID(syntax).name if syntax else None,
        pixel_spacing_mm=spacing,
        pixel_spacing_source=spacing_source,
    )
