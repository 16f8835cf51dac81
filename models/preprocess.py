"""The one preprocessing path shared by training, evaluation and serving.

`decode_image` turns file bytes into a Pillow image or raises `ImageDecodeError`
with a message a person can act on; it bounds the memory one image may cost (sizes
and aspect ratios refused before decoding, big images reduced while decoding).
`preprocess` turns an image of any mode and size into the model input:

* Mode. Every mode becomes one grayscale float channel in [0, 1]. Integer data
  is divided by the largest value its bit depth can hold (255 for 8-bit modes,
  65535 for 16-bit ones), so an 8-bit picture saved as 16-bit (values * 257)
  gives the same input. Colour (RGB, CMYK, palette) becomes luma with the
  ITU-R 601 weights Pillow uses for "L". Transparent pixels (RGBA, LA, palette
  with transparency) are composited onto black, the background of a radiograph.
* Aspect. A non-square image is padded with black to a centred square, so no
  anatomy is cropped and nothing is stretched.
* Size. The square is resized with Pillow's Lanczos filter with a reducing gap
  of 3 on float data (no 8-bit rounding in between), whatever the source size.
  That is how NIH's 1024-px originals became the 128-px images the models were
  trained on (on 8-bit data it reproduces those copies bit for bit), so a
  full-resolution upload gets the prediction of its 128-px copy.
* Channels. The result has `channels` identical copies of the gray plane (the
  seed models take 3, the improved ones 1). Any further normalisation lives
  inside the models.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

SUPPORTED_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "BMP": "BMP", "TIFF": "TIFF", "MPO": "JPEG"}
MAX_PIXELS = 8192 * 8192  # refused above this many pixels, before anything is decoded
MAX_ASPECT = 4  # refused when the longer side is more than this many times the shorter one
MAX_WORKING_SIDE = 2048  # larger images are reduced while decoding; the models see 128-256 px
RESAMPLE = Image.Resampling.LANCZOS
RESIZE_REDUCING_GAP = 3.0
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

ImageFile.LOAD_TRUNCATED_IMAGES = False
ACCEPTED = "upload PNG, JPEG, BMP, TIFF or DICOM"
HEAD_BYTES = 132  # enough for every signature `sniff` knows, and DICOM's "DICM" at offset 128


def sniff(head: bytes) -> str | None:
    """The format of an image Pillow reads here ("PNG", "JPEG", "BMP", "TIFF") from its first bytes, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"BM") and len(head) >= 26:
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


class ImageDecodeError(ValueError):
    """A file that cannot be turned into a chest X-ray image; the message says why."""


def decode_image(source: bytes | str | Path) -> Image.Image:
    """Read and decode an image file at a bounded size, or raise ImageDecodeError saying what is wrong.

    An image larger than MAX_WORKING_SIDE on its longer side comes back reduced by a whole factor (box
    filter; JPEGs already while decoding), so the memory one image costs is bounded whatever its size.
    """
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else source
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    if data[128:HEAD_BYTES] == b"DICM":  # Pillow would only say it is no image
        raise ImageDecodeError("a DICOM file: read it with formats.read_upload (dicomio decodes DICOM)")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageDecodeError(f"not an image: the content is not PNG, JPEG, BMP or TIFF; {ACCEPTED}") from None
    except Image.DecompressionBombError:
        raise ImageDecodeError(_too_large_message(_header_size(data))) from None
    if image.format not in SUPPORTED_FORMATS:
        raise ImageDecodeError(f"unsupported image format {image.format}; {ACCEPTED}")
    width, height = image.size
    check_dimensions(width, height)
    try:
        return _load_reduced(image)
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageDecodeError(f"corrupt or truncated {image.format} file: {error}") from None


def check_dimensions(width: int, height: int) -> None:
    """Refuse, before decoding, sizes and shapes that would cost too much memory or are no chest X-ray."""
    if width * height > MAX_PIXELS:
        raise ImageDecodeError(_too_large_message((width, height)))
    if width < 8 or height < 8:
        raise ImageDecodeError(f"image too small ({width}x{height} pixels)")
    if max(width, height) > MAX_ASPECT * min(width, height):
        ratio = max(width, height) / min(width, height)
        raise ImageDecodeError(
            f"image too elongated ({width}x{height} pixels, {ratio:.1f}:1); "
            f"the longer side may be at most {MAX_ASPECT} times the shorter one"
        )


def _too_large_message(size: tuple[int, int] | None) -> str:
    shown = f"{size[0]}x{size[1]} pixels" if size else "its header declares more"
    return f"image too large ({shown}; the limit is {MAX_PIXELS:,} pixels, e.g. 8192x8192)"


def _header_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the header alone (Pillow refused to open it as a decompression bomb)."""
    fmt = sniff(data[:HEAD_BYTES])
    if fmt is None or fmt not in Image.OPEN:
        return None
    factory, _accept = Image.OPEN[fmt]
    try:
        return factory(io.BytesIO(data), "").size  # the plugin parses the header; the bomb check is in Image.open
    except Exception:  # noqa: BLE001  (only the message depends on it)
        return None


def _load_reduced(image: Image.Image) -> Image.Image:
    """Decode with the longer side reduced to at most MAX_WORKING_SIDE: JPEGs by DCT scaling while decoding,
    everything else by a box filter applied band by band, so no full-size copy is ever made after decoding."""
    source_size = image.size
    factor = -(-max(image.size) // MAX_WORKING_SIDE)
    if factor > 1 and image.format in ("JPEG", "MPO"):
        image.draft(image.mode, (-(-image.width // factor), -(-image.height // factor)))
    image.load()
    image.info["source_size"] = source_size  # the upload's own width and height, for its row
    factor = -(-max(image.size) // MAX_WORKING_SIDE)
    if factor == 1:
        return ImageOps.exif_transpose(image) if image.format in ("JPEG", "MPO", "TIFF") else image
    exif = image.getexif().tobytes() if image.format in ("JPEG", "MPO", "TIFF") else None
    band = factor * 128  # whole blocks per band: the bands reduce exactly like the whole image would
    pieces = [
        _reducible(image.crop((0, top, image.width, min(image.height, top + band)))).reduce(factor)
        for top in range(0, image.height, band)
    ]
    reduced = Image.new(pieces[0].mode, (pieces[0].width, sum(piece.height for piece in pieces)))
    for index, piece in enumerate(pieces):
        reduced.paste(piece, (0, index * (band // factor)))
    reduced.format = image.format
    reduced.info["source_size"] = source_size  # the upload's own width and height, for its row
    if exif:
        reduced.info["exif"] = exif
        return ImageOps.exif_transpose(reduced)
    return reduced


def _reducible(image: Image.Image) -> Image.Image:
    """`Image.reduce` averages pixel values, so palette, 1-bit and 16-bit images are converted first."""
    if image.mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode == "1":
        return image.convert("L")
    if image.mode.startswith("I;16"):
        return image.convert("I")
    return image


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


def crop_padding(square: np.ndarray, width: int, height: int) -> np.ndarray:
    """Cut `pad_to_square`'s padding off a (resized) square again, for an image of `width` x `height`: what is
    left has the image's aspect ratio (thumbnails, heat maps)."""
    side = square.shape[0]
    rows = max(1, round(side * height / max(width, height)))
    cols = max(1, round(side * width / max(width, height)))
    top, left = (side - rows) // 2, (side - cols) // 2
    return square[top : top + rows, left : left + cols]


def preprocess(image: Image.Image, size: int = 128, channels: int = 1) -> np.ndarray:
    """Model input of shape (size, size, channels), float32 in [0, 1], from any decoded image."""
    square = pad_to_square(to_gray(image))
    if square.shape[0] != size:
        resized = Image.fromarray(square).resize((size, size), RESAMPLE, reducing_gap=RESIZE_REDUCING_GAP)
        square = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
    return np.repeat(square[..., None], channels, axis=-1)


def load_and_preprocess(source: bytes | str | Path, size: int = 128, channels: int = 1) -> np.ndarray:
    return preprocess(decode_image(source), size=size, channels=channels)
