"""The one preprocessing function: every image mode, any size, same picture -> same input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.preprocess import ImageDecodeError, decode_image, preprocess
from tests.conftest import SHARED_DATA, skip_or_fail

MINI = Path(__file__).parent / "data" / "nih-mini" / "images"
ORIGINALS = SHARED_DATA / "originals"
SUBSET = SHARED_DATA / "nih-cxr14-subset" / "images"


def needs_shared_data() -> None:
    if not ORIGINALS.exists():
        skip_or_fail(f"{ORIGINALS} not found (the shared NIH data sits beside the repo)")


@pytest.fixture(scope="module")
def gray() -> Image.Image:
    return Image.open(sorted(MINI.glob("*.png"))[0]).convert("L")


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def as_palette(gray: Image.Image) -> Image.Image:
    palette_image = Image.frombytes("P", gray.size, gray.tobytes())
    palette_image.putpalette([v for i in range(256) for v in (i, i, i)])
    return palette_image


def as_16bit(gray: Image.Image) -> Image.Image:
    values = np.asarray(gray, dtype=np.uint16) * 257
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    return image


def variants(gray: Image.Image) -> dict[str, bytes]:
    rgba = gray.convert("RGBA")
    return {
        "L png": encode(gray, "PNG"),
        "RGB png": encode(gray.convert("RGB"), "PNG"),
        "RGBA png (opaque)": encode(rgba, "PNG"),
        "LA png": encode(gray.convert("LA"), "PNG"),
        "P png": encode(as_palette(gray), "PNG"),
        "I;16 png": encode(as_16bit(gray), "PNG"),
        "L bmp": encode(gray, "BMP"),
        "RGB tiff": encode(gray.convert("RGB"), "TIFF"),
        "I;16 tiff": encode(as_16bit(gray), "TIFF"),
    }


def test_same_picture_in_every_lossless_mode_gives_the_same_input(gray):
    reference = preprocess(decode_image(encode(gray, "PNG")))
    for name, data in variants(gray).items():
        image = decode_image(data)
        result = preprocess(image)
        assert result.shape == (128, 128, 1), name
        assert result.dtype == np.float32, name
        np.testing.assert_allclose(result, reference, atol=1e-5, err_msg=name)


def test_sixteen_bit_png_is_really_sixteen_bit(gray):
    image = decode_image(variants(gray)["I;16 png"])
    assert image.mode.startswith("I")
    assert np.asarray(image).max() > 255


def test_cmyk_jpeg_matches_gray_jpeg_within_compression_error(gray):
    cmyk = decode_image(encode(gray.convert("RGB").convert("CMYK"), "JPEG", quality=95))
    assert cmyk.mode == "CMYK"
    reference = preprocess(decode_image(encode(gray, "JPEG", quality=95)))
    assert np.abs(preprocess(cmyk) - reference).mean() < 0.02


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I", "I;16", "F"])
def test_every_mode_gives_a_valid_input(gray, mode):
    image = as_16bit(gray) if mode == "I;16" else gray.convert(mode)
    result = preprocess(image, size=96, channels=3)
    assert result.shape == (96, 96, 3)
    assert np.isfinite(result).all() and result.min() >= 0.0 and result.max() <= 1.0
    assert np.array_equal(result[..., 0], result[..., 2])


def test_transparent_pixels_become_black(gray):
    rgba = gray.convert("RGBA")
    alpha = np.full(gray.size[::-1], 255, np.uint8)
    alpha[:, : gray.size[0] // 2] = 0
    rgba.putalpha(Image.fromarray(alpha))
    result = preprocess(rgba, size=gray.size[0])[..., 0]
    assert result[:, : gray.size[0] // 2 - 2].max() == 0.0
    assert result[:, gray.size[0] // 2 + 2 :].max() > 0.5


def test_non_square_images_are_padded_not_stretched():
    wide = Image.fromarray(np.full((50, 100), 255, np.uint8))
    result = preprocess(wide, size=100)[..., 0]
    assert result.shape == (100, 100)
    assert result[:20].max() == 0.0 and result[-20:].max() == 0.0  # black bands top and bottom
    assert result[30:70].min() > 0.99  # the picture itself, unstretched


def mode_of(path: Path) -> str:
    with Image.open(path) as image:
        return image.mode


def test_full_size_originals_match_the_training_images():
    """1024x1024 originals (one RGBA) preprocess like the 128-px copies the models were trained on."""
    needs_shared_data()
    originals = sorted(ORIGINALS.glob("*.png"))
    assert "RGBA" in [mode_of(p) for p in originals]
    for path in originals:
        served = preprocess(decode_image(path))
        assert served.shape == (128, 128, 1)
        trained = preprocess(decode_image(SUBSET / path.name))
        assert np.abs(served - trained).mean() < 0.6 / 255, path.name  # bilinear: 0.86 grey levels
        assert np.abs(served - trained).max() < 0.25, path.name


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty file"),
        (b"patient notes, not an image\n" * 10, "not an image"),
        (b"\0" * 128 + b"DICM" + b"\0" * 64, "DICOM file: read it with formats.read_upload"),
        (b"GIF89a" + b"\0" * 64, "not an image"),
    ],
)
def test_bad_files_raise_a_specific_error(data, message):
    with pytest.raises(ImageDecodeError, match=message):
        decode_image(data)


def test_truncated_png_raises_a_specific_error(gray):
    data = encode(gray.resize((512, 512)), "PNG")
    with pytest.raises(ImageDecodeError, match="truncated"):
        decode_image(data[: len(data) // 2])


def test_gif_is_refused_by_format(gray):
    with pytest.raises(ImageDecodeError, match="unsupported image format GIF"):
        decode_image(encode(gray, "GIF"))
