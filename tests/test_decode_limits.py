"""Memory per image is bounded (issue 10, "Memory and bad input"): hostile sizes are refused with a plain
message before anything is decoded, and a big image is reduced while it is decoded. Each hostile file is
decoded in a fresh process (benchmarks.decode_memory) whose address space is capped, so a regression shows
up as a failed assertion, not as a machine out of memory."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.decode_memory import measure, write_png
from broker import make_celery
from models.preprocess import MAX_WORKING_SIDE, decode_image, preprocess
from settings import Settings

MINI = Path(__file__).parent / "data" / "nih-mini" / "images"
CAP_MB = 3072  # the old decoder asked for 4 and 16 GiB on the elongated files


@pytest.mark.parametrize(
    "size, color_type, message",
    [
        ((30000, 30000), 0, "image too large (30000x30000 pixels; the limit is 67,108,864 pixels"),
        ((9000, 9000), 0, "image too large (9000x9000 pixels; the limit is 67,108,864 pixels"),
        ((32768, 2048), 0, "image too elongated (32768x2048 pixels, 16.0:1)"),
        ((65536, 1024), 0, "image too elongated (65536x1024 pixels, 64.0:1)"),
    ],
)
def test_hostile_sizes_are_refused_before_decoding(tmp_path, size, color_type, message):
    found = measure(write_png(tmp_path / "hostile.png", *size, color_type), limit_mb=CAP_MB)
    assert found["outcome"].startswith(f"ImageDecodeError: {message}"), found
    assert found["peak_mb"] < 150, found  # nothing was decoded


def test_a_huge_image_is_reduced_while_decoding_in_bounded_memory(tmp_path):
    """8192x8192 RGBA (the largest accepted): the worker peaked at 2.7 GB on it; now the decoded pixels
    (256 MB) plus a little."""
    found = measure(write_png(tmp_path / "rgba.png", 8192, 8192, color_type=6), limit_mb=CAP_MB)
    assert found["outcome"] == "decoded 2048x2048 RGBA", found
    assert found["peak_mb"] < 600, found


@pytest.fixture(scope="module")
def xray() -> Image.Image:
    """A real radiograph scaled up past MAX_WORKING_SIDE (2048), to be reduced by 2 in bands of 256 rows."""
    with Image.open(sorted(MINI.glob("*.png"))[0]) as image:
        return image.convert("L").resize((2100, 2100), Image.Resampling.BILINEAR)


def as_mode(image: Image.Image, mode: str) -> Image.Image:
    if mode == "I;16":
        return Image.fromarray(np.asarray(image, dtype=np.uint16) * 257)
    if mode == "P":
        return image.convert("P")
    if mode == "RGBA":
        rgba = image.convert("RGBA")
        rgba.putalpha(200)
        return rgba
    return image.convert(mode)


@pytest.mark.parametrize("mode, fmt", [("L", "BMP"), ("1", "BMP"), ("P", "BMP"), ("RGBA", "TIFF"), ("I;16", "TIFF")])
def test_reduction_keeps_the_model_input(xray, mode, fmt):
    original = as_mode(xray, mode)
    buffer = io.BytesIO()
    original.save(buffer, format=fmt)
    decoded = decode_image(buffer.getvalue())
    assert max(decoded.size) <= MAX_WORKING_SIDE and decoded.size == (1050, 1050)
    difference = np.abs(preprocess(decoded) - preprocess(original))
    assert difference.mean() < 0.005 and difference.max() < 0.05, (difference.mean(), difference.max())


def test_big_jpegs_are_scaled_while_decoding_and_keep_their_orientation(xray):
    buffer = io.BytesIO()
    wide = xray.resize((6000, 3000))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    wide.save(buffer, format="JPEG", quality=92, exif=exif.tobytes())
    decoded = decode_image(buffer.getvalue())
    assert decoded.size == (750, 1500)  # DCT-scaled to 3000x1500, box-reduced by 2, then turned upright
    upright = wide.transpose(Image.Transpose.ROTATE_270)
    assert np.abs(preprocess(decoded) - preprocess(upright)).mean() < 0.01


def test_workers_are_replaced_above_the_memory_limit():
    app = make_celery(Settings(redis_url="redis://example:6379/0", worker_max_memory_mb=1200))
    assert app.conf.worker_max_memory_per_child == 1200 * 1024  # KiB
