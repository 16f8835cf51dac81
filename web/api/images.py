"""One image at full resolution for the viewer, rendered from the stored file by the models' own decoder, and its
heat maps (drawn by the worker, worker/heatmaps.py)."""

from __future__ import annotations

import io
import logging

import numpy as np
from flask import Response, abort, request
from PIL import Image as PILImage

from db.models import ImageStatus
from dicomio.read import REDUCING_GAP
from formats import read_upload
from models.preprocess import MAX_WORKING_SIDE, ImageDecodeError, to_gray
from storage import names, storage_for
from web.access import visible_image_or_404
from web.api import bp
from web.extensions import get_catalogue, get_settings

logger = logging.getLogger(__name__)


def render_png(data: bytes) -> bytes:
    """The stored file as an 8-bit gray PNG, through the worker's reader (`formats`) and gray conversion.

    DICOM goes through its display pipeline (modality LUT, VOI LUT or window, MONOCHROME1, Bits Stored), reduced
    only when its longer side is at least twice MAX_WORKING_SIDE, as other formats are.
    """
    gray = to_gray(read_upload(data, target_size=int(MAX_WORKING_SIDE // REDUCING_GAP)).image)
    pixels = np.rint(gray * 255.0).astype(np.uint8)
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, format="PNG", compress_level=1)
    return out.getvalue()


@bp.get("/images/<int:image_id>/image.png")
def image_png(image_id: int):
    image = visible_image_or_404(image_id)
    if not image.stored_name:
        abort(404, f"image {image_id} has no stored file: {image.error or 'it was not uploaded'}")
    try:
        data = storage_for(get_settings()).read(names.upload(image.stored_name))
    except FileNotFoundError:
        abort(404, f"the stored file of image {image_id} is gone (it may have been purged)")
    try:
        png = render_png(data)
    except (ImageDecodeError, OSError, SyntaxError) as error:  # Pillow can raise the last two while reading a header
        abort(422, f"image {image_id} cannot be shown: {error}")
    return _png_response(png)


def _png_response(png: bytes) -> Response:
    return Response(
        png,
        mimetype="image/png",
        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
    )


@bp.get("/images/<int:image_id>/heatmap")
def heatmap(image_id: int):
    """The Grad-CAM heat map of one served model for the image (`?model=cnn`): an 8-bit palette PNG with the
    image's aspect ratio whose values are the normalised map (worker/heatmaps.py); 404 saying why when none."""
    image = visible_image_or_404(image_id)
    settings = get_settings()
    model = request.args.get("model", "")
    with_maps = get_catalogue().heatmap_models
    if model not in with_maps:
        abort(404, f"no heat maps for model {model!r}; choose model= from {', '.join(with_maps) or 'none'}")
    if not image.job.heatmaps:
        abort(404, f"image {image_id} has no heat map: its job was created without heat maps")
    if image.status != ImageStatus.done:
        reason = f"it failed: {image.error}" if image.status == ImageStatus.failed else f"it is {image.status.value}"
        abort(404, f"image {image_id} has no heat map: {reason}")
    try:
        png = storage_for(settings).read(names.heatmap(image_id, model))
    except FileNotFoundError:
        abort(404, f"image {image_id} has no {model} heat map: none was written when it was predicted")
    return _png_response(png)
