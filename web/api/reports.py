"""The DICOM Structured Report of one image's predictions, built on request from the stored DICOM file."""

from __future__ import annotations

from flask import Response, abort

from db.models import ImageStatus, split_notes
from dicomio.read import DicomError
from dicomio.sr import image_report, sr_bytes
from storage import names, storage_for
from web.access import visible_image_or_404
from web.api import bp
from web.extensions import get_settings


@bp.get("/images/<int:image_id>/sr.dcm")
def structured_report(image_id: int):
    """A Comprehensive 3D SR (TID 1500): one qualitative evaluation per model and the ensemble, UNVERIFIED."""
    image = visible_image_or_404(image_id)
    if image.stored_name and not image.stored_name.endswith(".dcm"):
        abort(404, f"image {image_id} is not a DICOM file; structured reports exist for DICOM uploads only")
    if image.status != ImageStatus.done or not image.stored_name:
        reason = f": {image.error}" if image.error else ""
        abort(404, f"image {image_id} has no predictions (status {image.status.value}{reason}); no report to make")
    try:
        with storage_for(get_settings()).open(names.upload(image.stored_name)) as stored:
            report = image_report(stored, image.predictions, split_notes(image.notes))
    except FileNotFoundError:
        abort(404, f"the stored file of image {image_id} is gone (it may have been purged)")
    except DicomError as error:
        abort(422, f"image {image_id}: no structured report: {error}")
    if report is None:
        abort(404, f"image {image_id} has no predictions; no report can be made")
    return Response(
        sr_bytes(report),
        mimetype="application/dicom",
        headers={
            "Content-Disposition": f'attachment; filename="radbatch-image{image.id}-sr.dcm"',
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
