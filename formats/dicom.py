"""DICOM: told by content (`dicomio.read.looks_like_dicom`), decoded through the DICOM display pipeline, and
checked and de-identified on ingest (`dicomio.prepare`)."""

from __future__ import annotations

from dicomio.prepare import SkippedDicomDir, prepare_dicom
from dicomio.read import DicomError, decode_dicom, looks_like_dicom
from formats.registry import Format, NotAnImage, Picture, Prepared, register
from models.preprocess import ImageDecodeError


def read(data: bytes, target_size: int) -> Picture:
    try:
        dicom = decode_dicom(data, target_size=target_size)
    except DicomError as error:
        raise ImageDecodeError(str(error)) from None
    meta = dicom.metadata
    width, height = meta.columns or dicom.image.width, meta.rows or dicom.image.height
    return Picture(dicom.image, width, height, dicom.image.mode, dicom.warnings + dicom.notes)


def prepare(data: bytes, secret: str, deidentify: bool, parsed: object) -> Prepared:
    try:
        return prepare_dicom(data, secret, deidentify, parsed)  # type: ignore[arg-type]
    except SkippedDicomDir:
        raise NotAnImage("a DICOMDIR (an index of DICOM files, not an image)") from None
    except DicomError as error:
        raise ImageDecodeError(str(error)) from None


DICOM = register(
    Format(
        name="DICOM",
        extensions=(".dcm", ".dicom", ".dic"),
        detect=looks_like_dicom,
        read=read,
        stored_extension=".dcm",
        prepare=prepare,
        content_is_not="DICOM (no DICM prefix and no DICOM data set at the start)",
        any_name=True,
    )
)
