"""Read one stored upload: decode it, write its thumbnail, and preprocess it for every served model."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from db.models import Image
from models.preprocess import ImageDecodeError, decode_image, preprocess, to_gray
from models.registry import LoadedModel
from settings import Settings

THUMBNAIL_PX = 128


@dataclass
class Decoded:
    width: int
    height: int
    mode: str
    inputs: dict[str, np.ndarray]  # model name -> (size, size, channels)


def write_thumbnail(image: PILImage.Image, path: Path) -> None:
    """An 8-bit gray PNG at most THUMBNAIL_PX on a side, written atomically."""
    gray = np.clip(np.rint(to_gray(image) * 255.0), 0, 255).astype(np.uint8)
    thumbnail = PILImage.fromarray(gray, mode="L")
    thumbnail.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX), PILImage.Resampling.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            thumbnail.save(handle, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_image(image: Image, models: Mapping[str, LoadedModel], settings: Settings) -> Decoded:
    """Read, decode, thumbnail and preprocess one stored file; ImageDecodeError says what is wrong."""
    if not image.stored_name:
        raise ImageDecodeError("the upload was not stored, so there is nothing to read")
    path = settings.upload_dir / image.stored_name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageDecodeError("the uploaded file is missing from the server's upload folder") from None
    picture = decode_image(data)
    write_thumbnail(picture, settings.thumbnail_dir / f"{image.id}.png")
    inputs = {name: preprocess(picture, size=m.input_size, channels=m.channels) for name, m in models.items()}
    return Decoded(width=picture.width, height=picture.height, mode=picture.mode, inputs=inputs)
