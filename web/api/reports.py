"""The DICOM Structured Report of one image's predictions, built on request from the stored DICOM file."""

from __future__ import annotations

import io
import logging

import pydicom
from flask import Response, abort
from pydicom.errors import InvalidDicomError
from sqlalchemy import select

from db.models import ImageStatus, Prediction
from dicomio.sr import ModelResult, build_sr, sr_bytes
from web.access import visible_image_or_404
from web.api import bp
from web.extensions import get_db, get_settings

logger = logging.getLogger(__name__)
MODEL_ORDER = {"cnn": 0, "unet": 1, "ensemble": 2}


def _stored_header(stored_name: str, image_id: int) -> pydicom.Dataset:
    """The stored (de-identified unless RADBATCH_DEIDENTIFY=false) file's header, without its pixels."""
    path = get_settings().upload_dir / stored_name
    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    except FileNotFoundError:
        abort(404, f"the stored file of image {image_id} is gone (it may have been purged)")
    except (InvalidDicomError, OSError, ValueError) as error:
        abort(422, f"the stored DICOM file of image {image_id} cannot be read: {error}")
    if "TransferSyntaxUID" not in ds.file_meta:  # a data set without file meta, stored as received
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            pydicom.uid.ImplicitVRLittleEndian
            if implicit
            else (pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian)
        )
    return ds


@bp.get("/images/<int:image_id>/sr.dcm")
def structured_report(image_id: int):
    """A Comprehensive 3D SR (TID 1500): one qualitative evaluation per model and the ensemble, UNVERIFIED."""
    image = visible_image_or_404(image_id)
    if image.stored_name and not image.stored_name.endswith(".dcm"):
        abort(404, f"image {image_id} is not a DICOM file; structured reports exist for DICOM uploads only")
    if image.status != ImageStatus.done or not image.stored_name:
        reason = f": {image.error}" if image.error else ""
        abort(404, f"image {image_id} has no predictions (status {image.status.value}{reason}); no report to make")
    predictions = get_db().scalars(select(Prediction).where(Prediction.image_id == image.id)).all()
    ordered = sorted(predictions, key=lambda p: (MODEL_ORDER.get(p.model_name, len(MODEL_ORDER)), p.model_name))
    results = [ModelResult(p.model_name, p.model_version, p.probability, p.label, p.threshold) for p in ordered]
    if not results:
        abort(404, f"image {image_id} has no predictions; no report can be made")
    source = _stored_header(image.stored_name, image.id)
    try:
        report = sr_bytes(build_sr(source, results))
    except (ValueError, AttributeError, TypeError, KeyError) as error:
        logger.warning("image %s: no structured report: %s", image.id, type(error).__name__)
        abort(422, f"image {image_id}: the stored DICOM file lacks what a report needs ({type(error).__name__})")
    return Response(
        io.BytesIO(report).getvalue(),
        mimetype="application/dicom",
        headers={
            "Content-Disposition": f'attachment; filename="radbatch-image{image.id}-sr.dcm"',
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
