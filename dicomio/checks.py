"""Which DICOM objects are X-ray images (the rest is refused before decoding), and which images to flag."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.uid import UID

from models.preprocess import MAX_PIXELS

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
NOT_IMAGE_MODALITIES = {
    "SR": ("structured-report", "a structured report"),
    "KO": ("structured-report", "a key object selection"),
    "PR": ("presentation-state", "a presentation state"),
    "RTSTRUCT": ("radiotherapy", "an RT structure set"),
    "RTPLAN": ("radiotherapy", "an RT plan"),
    "RTDOSE": ("radiotherapy", "an RT dose"),
    "RTIMAGE": ("radiotherapy", "an RT image"),
    "RTRECORD": ("radiotherapy", "an RT treatment record"),
    "DOC": ("encapsulated-document", "an encapsulated document"),
    "SEG": ("not-image", "a segmentation"),
    "REG": ("not-image", "a spatial registration"),
}
SOP_CLASS_WORDS = (
    (" SR ", "structured-report", "a structured report"),
    ("Key Object Selection", "structured-report", "a key object selection"),
    ("Presentation State", "presentation-state", "a presentation state"),
    ("RT ", "radiotherapy", "a radiotherapy object"),
    ("Encapsulated", "encapsulated-document", "an encapsulated document"),
    ("Waveform", "not-image", "a waveform"),
    ("Raw Data", "not-image", "raw data"),
    ("Registration", "not-image", "a spatial registration"),
    ("Segmentation", "not-image", "a segmentation"),
)
SUPPORTED_BITS_ALLOCATED = (8, 16)
LATERAL_VIEWS = {"LL", "RL", "LAT", "LATERAL", "LEFT LATERAL", "RIGHT LATERAL"}
OBLIQUE_VIEWS = {"LLO", "RLO", "LAO", "RAO", "LPO", "RPO", "OBLIQUE"}
CHEST_BODY_PARTS = {"CHEST", "THORAX"}
RADIOGRAPHY_MODALITIES = {"CR", "DX", "DR", "RG", "OT", "XA"}


class DicomError(ValueError):
    """A DICOM file that cannot be screened; `kind` names the reason, the message explains it to a person."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class DicomDirError(DicomError):
    """A DICOMDIR: an index of a DICOM folder, not an image. Skip it and read the files it lists."""

    def __init__(self, message: str = "DICOMDIR: a directory of DICOM files, not an image; upload the files it lists"):
        super().__init__("dicomdir", message)


def _refuse(kind: str, what: str, ds: Dataset) -> DicomError:
    name = _sop_class_name(ds).strip()
    return DicomError(kind, f"not an image: {what}{f' ({name})' if name else ''}; only X-ray images can be screened")


def _sop_class_name(ds: Dataset) -> str:
    sop_class = ds.get("SOPClassUID")
    if not sop_class and hasattr(ds, "file_meta"):
        sop_class = ds.file_meta.get("MediaStorageSOPClassUID")
    return f" {UID(sop_class).name} " if sop_class else ""


def check_is_image(ds: Dataset) -> None:
    """Raise DicomError (DicomDirError for a DICOMDIR) unless `ds` is an image pydicom can decode within limits."""
    media_class = ds.file_meta.get("MediaStorageSOPClassUID") if hasattr(ds, "file_meta") else None
    if media_class == MEDIA_STORAGE_DIRECTORY or "DirectoryRecordSequence" in ds:
        raise DicomDirError()
    modality = str(ds.get("Modality", "")).strip().upper()
    if modality in NOT_IMAGE_MODALITIES:
        raise _refuse(*NOT_IMAGE_MODALITIES[modality], ds)
    name = _sop_class_name(ds)
    for word, kind, what in SOP_CLASS_WORDS:
        if word in name:
            raise _refuse(kind, what, ds)
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise DicomError("unsupported", "floating-point pixel data is not an X-ray image")
        raise DicomError("no-pixel-data", f"DICOM file without pixel data{name.rstrip()}; nothing to screen")
    rows, columns = ds.get("Rows"), ds.get("Columns")
    if not rows or not columns:
        raise DicomError("corrupt", "DICOM image without Rows and Columns: the image size is unknown")
    rows, columns = int(rows), int(columns)
    if rows * columns > MAX_PIXELS:
        raise DicomError("too-large", f"image too large ({columns}x{rows} pixels; the limit is {MAX_PIXELS:,} pixels)")
    if rows < 8 or columns < 8:
        raise DicomError("too-small", f"image too small ({columns}x{rows} pixels)")
    bits_allocated = int(ds.get("BitsAllocated") or 0)
    if bits_allocated not in SUPPORTED_BITS_ALLOCATED:
        raise DicomError("unsupported", f"{bits_allocated}-bit pixel words are not supported (8 or 16)")
    samples = int(ds.get("SamplesPerPixel") or 1)
    if samples not in (1, 3):
        raise DicomError("unsupported", f"{samples} samples per pixel are not supported (1 or 3)")


def image_warnings(ds: Dataset) -> list[str]:
    """Reasons to distrust a prediction that is still made: the models saw frontal chest radiographs only."""
    warnings = []
    view = str(ds.get("ViewPosition") or "").strip().upper()
    view_codes = " ".join(str(item.get("CodeMeaning", "")).lower() for item in ds.get("ViewCodeSequence") or [])
    if view in LATERAL_VIEWS or ("lateral" in view_codes and "decubitus" not in view_codes):
        warnings.append("lateral view: the models were trained on frontal (PA/AP) views")
    elif view in OBLIQUE_VIEWS or "oblique" in view_codes:
        warnings.append(f"oblique view ({view or view_codes}): the models were trained on frontal (PA/AP) views")
    body_part = str(ds.get("BodyPartExamined") or "").strip().upper()
    if body_part and body_part not in CHEST_BODY_PARTS:
        warnings.append(f"body part {body_part}: the models were trained on chest radiographs")
    modality = str(ds.get("Modality") or "").strip().upper()
    if modality and modality not in RADIOGRAPHY_MODALITIES:
        warnings.append(f"modality {modality}: the models were trained on chest radiographs (CR/DX)")
    return warnings
