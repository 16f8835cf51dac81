"""DICOM objects that are not images, for the refusal tests: SR, presentation state, PDF, RT, no pixels."""

from __future__ import annotations

import copy

from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset

from dicomio.sr import build_sr


def _object(image: Dataset, sop_class: str, modality: str) -> Dataset:
    ds = copy.deepcopy(image)
    for keyword in ("PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "SamplesPerPixel"):
        delattr(ds, keyword)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop_class, uid.generate_uid(), modality
    ds.file_meta = FileMetaDataset(ds.file_meta)
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = sop_class, ds.SOPInstanceUID
    return ds


def non_image_datasets(image: Dataset) -> dict[str, tuple[Dataset, str]]:
    """name -> (data set, the DicomError kind reading it must raise)."""
    sr = build_sr(image, [("cnn", "cnn-test", 0.8, "disease", 0.5)])
    presentation = _object(image, uid.GrayscaleSoftcopyPresentationStateStorage, "PR")
    pdf = _object(image, uid.EncapsulatedPDFStorage, "DOC")
    pdf.MIMETypeOfEncapsulatedDocument, pdf.EncapsulatedDocument = "application/pdf", b"%PDF-1.4\n%%EOF\n"
    rt = _object(image, uid.RTStructureSetStorage, "RTSTRUCT")
    rt.StructureSetLabel = "corpus"
    no_pixels = _object(image, image.SOPClassUID, "DX")
    return {
        "sr": (sr, "structured-report"),
        "presentation_state": (presentation, "presentation-state"),
        "pdf": (pdf, "encapsulated-document"),
        "rt_struct": (rt, "radiotherapy"),
        "no_pixel_data": (no_pixels, "no-pixel-data"),
    }
