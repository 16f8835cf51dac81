"""A DICOM file on ingest: check it is an X-ray image, de-identify it, and read the metadata its row keeps.

The file is parsed once (`dicomio.read.read_dicom`, or by the caller that already parsed it: the listener and
STOW-RS name the instance by its UIDs): what is not an image (SR, presentation state, RT, PDF, a truncated
file...) is refused with the reader's message, and a DICOMDIR is recognised so that a folder upload can skip it.
Unless RADBATCH_DEIDENTIFY=false, the stored copy is the data set after the PS3.15 Basic Profile
(`dicomio.deidentify`) and the row keeps only the keyed pseudonym of PatientID; the metadata is read after
de-identification, so it holds what the stored file holds. The pixels are decoded later, by the worker.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from pydicom.dataset import Dataset

from dicomio.deidentify import deidentify
from dicomio.read import READ_ERRORS, DicomDirError, DicomError, dicom_metadata, image_warnings, part10, read_dicom

PIXEL_DATA = 0x7FE00010
PIXEL_DATA_TAG = struct.pack("<HH", 0x7FE0, 0x0010)


class SkippedDicomDir(Exception):
    """The file is a DICOMDIR (an index of a DICOM folder, not an image): it gets no row."""


@dataclass
class PreparedDicom:
    """A DICOM image ready to store: the bytes to write, the columns of its row and the notes for it."""

    stored_bytes: bytes
    columns: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _pixel_element_header(ds: Dataset, length: int) -> bytes | None:
    """The bytes pydicom writes before the value of a native PixelData element of `length` bytes in `ds`'s
    transfer syntax (little endian only), or None."""
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is None or not syntax.is_little_endian or syntax.is_encapsulated or syntax.is_deflated or length % 2:
        return None
    if syntax.is_implicit_VR:
        return PIXEL_DATA_TAG + struct.pack("<I", length)
    vr = ds[PIXEL_DATA].VR
    return PIXEL_DATA_TAG + vr.encode() + b"\0\0" + struct.pack("<I", length) if vr in ("OB", "OW") else None


def _encoded(ds: Dataset, original: bytes) -> bytes:
    """The de-identified data set as a file: the header written by pydicom, the pixel data copied from `original`.

    When the original ends with a native PixelData element, the last of the data set, and holds exactly the bytes
    pydicom would write for it (header and value), those bytes are taken as they are instead of being written
    again; otherwise (compressed or odd-length pixel data, elements after it) the whole data set is written.
    Either way the result is the same bytes.
    """
    pixels = ds.get(PIXEL_DATA)
    if pixels is None or max(ds.keys()) != PIXEL_DATA or not isinstance(pixels.value, bytes):
        return part10(ds)
    header = _pixel_element_header(ds, len(pixels.value))
    start = len(original) - len(pixels.value)
    if header is None or original[start - len(header) : start] != header or not original.endswith(pixels.value):
        return part10(ds)
    del ds[PIXEL_DATA]
    try:
        return b"".join((part10(ds), memoryview(original)[start - len(header) :]))
    finally:
        ds[PIXEL_DATA] = pixels


def prepare_dicom(
    data: bytes, secret: str, deidentify_enabled: bool, parsed: Dataset | DicomError | None = None
) -> PreparedDicom:
    """Check `data` (or `parsed`, what `read_dicom` made of it), de-identify it (when enabled) and return what to
    store. The data set is changed in place.

    Raises DicomError with a message for the row, or SkippedDicomDir for a DICOMDIR.
    """
    try:
        if isinstance(parsed, DicomError):
            raise parsed
        ds = parsed if parsed is not None else read_dicom(data)
    except DicomDirError:
        raise SkippedDicomDir() from None
    try:
        notes = image_warnings(ds)  # before de-identification, which may empty the attributes they read
        identity = deidentify(ds, secret, enabled=deidentify_enabled)
        metadata = dicom_metadata(ds)
        stored = _encoded(ds, data) if deidentify_enabled else data
    except READ_ERRORS as error:  # the message may quote a value of the file: only its type is said
        message = f"cannot de-identify this DICOM file: a malformed element ({type(error).__name__})"
        raise DicomError("corrupt", message) from None
    spacing = metadata.pixel_spacing_mm or (None, None)
    columns = {
        "study_instance_uid": metadata.study_instance_uid,
        "series_instance_uid": metadata.series_instance_uid,
        "sop_instance_uid": metadata.sop_instance_uid,
        "accession_number": metadata.accession_number,
        "study_date": metadata.study_date,
        "view_position": metadata.view_position,
        "modality": metadata.modality,
        "photometric_interpretation": metadata.photometric_interpretation,
        "bits_stored": metadata.bits_stored,
        "transfer_syntax_uid": metadata.transfer_syntax_uid,
        "pixel_spacing_row_mm": spacing[0],
        "pixel_spacing_column_mm": spacing[1],
        "patient_pseudonym": identity.pseudonym,
        "patient_id": identity.patient_id,
        "patient_name": identity.patient_name,
        "width": metadata.columns,
        "height": metadata.rows,
    }
    return PreparedDicom(stored_bytes=stored, columns=columns, notes=notes + identity.warnings)


__all__ = ["DicomError", "PreparedDicom", "SkippedDicomDir", "prepare_dicom"]
