"""The one preprocessing path shared by training, evaluation and serving.

`decode_image` turns file bytes into a Pillow image or raises `ImageDecodeError`
with a message a person can act on. `preprocess` turns an image of any mode and
size into the model input:

* Mode. Every mode becomes one grayscale float channel in [0, 1]. Integer data
  is divided by the largest value its bit depth can hold (255 for 8-bit modes,
  65535 for 16-bit ones), so an 8-bit picture saved as 16-bit (values * 257)
  gives the same input. Colour (RGB, CMYK, palette) becomes luma with the
  ITU-R 601 weights Pillow uses for "L". Transparent pixels (RGBA, LA, palette
  with transparency) are composited onto black, the background of a radiograph.
* Aspect. A non-square image is padded with black to a centred square, so no
  anatomy is cropped and nothing is stretched.
* Size. The square is resized with Pillow's anti-aliased bilinear filter on
  float data (no 8-bit rounding in between), whatever the source size.
* Channels. The result has `channels` identical copies of the gray plane (the
  seed models take 3, the improved ones 1). Any further normalisation lives
  inside the models.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from models.formats import ACCEPTED, HEAD_BYTES, is_dicom

SUPPORTED_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "BMP": "BMP", "TIFF": "TIFF", "MPO": "JPEG"}
MAX_PIXELS = 8192 * 8192
RESAMPLE = Image.Resampling.BILINEAR
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageDecodeError(ValueError):
    """A file that cannot be turned into a chest X-ray image; the message says why."""


def decode_image(source: bytes | str | Path) -> Image.Image:
    """Read and fully decode an image file, or raise ImageDecodeError saying what is wrong."""
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else source
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    if is_dicom(data[:HEAD_BYTES]):
        raise ImageDecodeError(f"DICOM files are not supported yet; {ACCEPTED}")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageDecodeError(f"not an image: the content is not PNG, JPEG, BMP or TIFF; {ACCEPTED}") from None
    if image.format not in SUPPORTED_FORMATS:
        raise ImageDecodeError(f"unsupported image format {image.format}; {ACCEPTED}")
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageDecodeError(f"image too large ({width}x{height} pixels)")
    try:
        image.load()
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(f"image too large: {error}") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageDecodeError(f"corrupt or truncated {image.format} file: {error}") from None
    if width < 8 or height < 8:
        raise ImageDecodeError(f"image too small ({width}x{height} pixels)")
    return ImageOps.exif_transpose(image) if image.format in ("JPEG", "MPO", "TIFF") else image


def to_gray(image: Image.Image) -> np.ndarray:
    """One float32 plane in [0, 1] from an image of any Pillow mode."""
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode == "CMYK":
        image = image.convert("RGB")
        mode = "RGB"
    if mode in ("1", "L"):
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    if mode in ("LA", "La", "PA"):
        pixels = np.asarray(image.convert("LA"), dtype=np.float32) / 255.0
        return pixels[..., 0] * pixels[..., 1]
    if mode in ("RGB", "RGBA", "RGBa", "RGBX", "YCbCr", "LAB", "HSV"):
        pixels = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        return (pixels[..., :3] @ _LUMA) * pixels[..., 3]
    if mode.startswith("I;16") or mode == "I":
        pixels = np.asarray(image, dtype=np.float32)
        depth_max = 65535.0 if pixels.max(initial=0) <= 65535 else float(pixels.max())
        return np.clip(pixels / depth_max, 0.0, 1.0)
    if mode == "F":
        pixels = np.asarray(image, dtype=np.float32)
        peak = float(pixels.max(initial=0))
        return np.clip(pixels / peak if peak > 1.0 else pixels, 0.0, 1.0)
    raise ImageDecodeError(f"unsupported image mode {mode}")


def pad_to_square(gray: np.ndarray) -> np.ndarray:
    height, width = gray.shape
    side = max(height, width)
    if height == width:
        return gray
    square = np.zeros((side, side), dtype=np.float32)
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = gray
    return square


def preprocess(image: Image.Image, size: int = 128, channels: int = 1) -> np.ndarray:
    """Model input of shape (size, size, channels), float32 in [0, 1], from any decoded image."""
    square = pad_to_square(to_gray(image))
    if square.shape[0] != size:
        resized = Image.fromarray(square).resize((size, size), RESAMPLE)
        square = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
    return np.repeat(square[..., None], channels, axis=-1)


def load_and_preprocess(source: bytes | str | Path, size: int = 128, channels: int = 1) -> np.ndarray:
    return preprocess(decode_image(source), size=size, channels=channels)
