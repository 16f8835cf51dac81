"""A heat map as DICOM, for viewers that cannot draw an SR's evidence: a Secondary Capture (highdicom) derived
from the source image, in the source's study, showing the image in gray with the model's Grad-CAM map over it and
the words "AI heat map, not for diagnosis" burned into the top left, and saying so in its Series Description, Image
Comments and Derivation Description. UIDs are derived from the source, the model and its version."""

from __future__ import annotations

import numpy as np
from highdicom.sc import SCImage
from PIL import Image as PILImage
from PIL import ImageDraw
from pydicom.dataset import Dataset

from dicomio.sr import MANUFACTURER, _uid

LABEL = "AI heat map, not for diagnosis"
HEATMAP_SERIES_NUMBER = 9902
MAX_SIDE = 1024


def overlay(gray: np.ndarray, heat: PILImage.Image) -> np.ndarray:
    """The gray image (uint8, H x W) with the heat map (a palette or RGBA picture, any size) blended over it by its
    own opacity, reduced to at most MAX_SIDE a side, the label burned in; RGB uint8."""
    base = PILImage.fromarray(np.ascontiguousarray(gray, dtype=np.uint8)).convert("RGBA")
    scale = min(1.0, MAX_SIDE / max(base.size))
    if scale < 1.0:
        base = base.resize((max(1, round(base.width * scale)), max(1, round(base.height * scale))))
    shown = PILImage.alpha_composite(base, heat.convert("RGBA").resize(base.size, PILImage.Resampling.BILINEAR))
    draw = ImageDraw.Draw(shown)
    box = draw.textbbox((4, 4), LABEL)
    draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill=(0, 0, 0, 255))
    draw.text((4, 4), LABEL, fill=(255, 255, 0, 255))
    return np.asarray(shown.convert("RGB"))


def orientation(source: Dataset) -> tuple[str, str] | None:
    """The source's Patient Orientation, else L\\F for a PA or AP chest radiograph as displayed; None if unknown."""
    given = [str(value) for value in (source.get("PatientOrientation") or [])]
    if len(given) == 2 and all(given):
        return given[0], given[1]
    return ("L", "F") if str(source.get("ViewPosition") or "").upper() in ("PA", "AP") else None


def heatmap_sc(source: Dataset, pixels: np.ndarray, model: str, version: str) -> Dataset | None:
    """The Secondary Capture of `pixels` (overlay's RGB picture) for the source image's header; None when the
    source's orientation is unknown (a derived image must not be shown the wrong way round)."""
    oriented = orientation(source)
    if oriented is None:
        return None
    sc = SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=pixels,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=_uid("heatmap-series", str(source.StudyInstanceUID)),
        series_number=HEATMAP_SERIES_NUMBER,
        sop_instance_uid=_uid("heatmap", str(source.SOPInstanceUID), model, version),
        instance_number=1,
        manufacturer=MANUFACTURER,
        patient_orientation=oriented,
        transfer_syntax_uid="1.2.840.10008.1.2.1",
    )
    sc.SeriesDescription = LABEL
    sc.ImageComments = f"{LABEL}: Grad-CAM of {model} {version}. Research use only."
    sc.DerivationDescription = f"{LABEL} ({model} {version}) over the source image"[:1024]
    sc.ImageType = ["DERIVED", "SECONDARY", "HEATMAP"]
    sc.BurnedInAnnotation = "YES"
    sc.Laterality = None  # type 2C: present and empty, the chest is not a paired body part
    source_ref = Dataset()
    source_ref.ReferencedSOPClassUID, source_ref.ReferencedSOPInstanceUID = source.SOPClassUID, source.SOPInstanceUID
    sc.SourceImageSequence = [source_ref]
    return sc
