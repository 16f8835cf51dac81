"""A DICOM file on ingest: check it is an X-ray image, de-identify it, and read the metadata its row keeps.

The file is parsed once (`dicomio.read.read_dicom`, or by the caller that already parsed it: the listener and
STOW-RS name the instance by its UIDs): what is not an image (SR, presentation state, RT, PDF, a truncated
file...) is refused with the reader's message, and a DICOMDIR is recognised so that a folder upload can skip it.
Unless RADBATCH_DEIDENTIFY=false, the stored copy is the data set after the PS3.15 Basic Profile
(`dicomio.deidentify`) and the row keeps only the keyed pseudonym of PatientID; the metadata is read after
de-identification, so it holds what the stored file holds. The pixels are decoded later, by the worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydicom.dataset import Dataset

from dicomio.deidentify import deidentify
from dicomio.read import READ_ERRORS, DicomDirError, DicomError, dicom_metadata, image_warnings, part10, read_dicom


class SkippedDicomDir(Exception):
    """The file is a DICOMDIR (an index of a DICOM folder, not an image): it gets no row."""


@dataclass
class PreparedDicom:
    """A DICOM image ready to store: the bytes to write, the columns of its row and the notes for it."""

    stored_bytes: bytes
    columns: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


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
        stored = part10(ds) if deidentify_enabled else data
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
