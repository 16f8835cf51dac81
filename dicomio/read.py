"""DICOM files in: detect by content, refuse what is not an X-ray image, decode to an 8-bit picture.

`read_dicom` parses a file (bytes or a path) and refuses, with a `DicomError` saying why, anything
that is not an image: structured reports, presentation states, RT objects, encapsulated documents,
DICOMDIRs (`DicomDirError`, so a folder upload can skip it), truncated files, files without pixel
data and absurd image sizes (before any decoding). `decode_dicom` turns an image into a `DicomImage`:
an 8-bit Pillow image after the display pipeline of `dicomio.display` (modality LUT, VOI LUT or
window, MONOCHROME1, Bits Stored), the metadata kept per image, and the notes and warnings for its
row. The reader registry (`formats`) hands the picture to `models.preprocess.preprocess` like any other.

Every transfer syntax pydicom 3 can decode with the installed plugins is read: native little/big
endian and deflated by pydicom; RLE by pylibjpeg-rle; JPEG baseline and lossless by GDCM, 12-bit
JPEG extended by imagecodecs (`dicomio.jpeg12`); JPEG-LS by pyjpegls (CharLS); JPEG 2000 by
pylibjpeg-openjpeg.
"""

from __future__ import annotations

import contextlib
import io
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.pixels import get_decoder
from pydicom.pixels.processing import apply_color_lut
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicomio import jpeg12
from dicomio.checks import DicomDirError, DicomError, check_is_image, image_warnings
from dicomio.display import apply_display
from dicomio.j2k import reduced_j2k_frame
from dicomio.metadata import DicomMetadata, dicom_metadata
from models.preprocess import MAX_PIXELS

# Box-reduce only while the image stays at least REDUCING_GAP times the model input: on the 15 shared
# originals as 2,500 x 2,048 DICOM, the CNN's probability then moves by at most 0.002 (mean 0.0006);
# with a gap of 4 it moved by up to 0.015, too close to the 0.01 allowed for lossless files.
REDUCING_GAP = 8.0
READ_ERRORS = (
    InvalidDicomError,
    BytesLengthException,
    EOFError,
    ValueError,
    OSError,
    struct.error,
    zlib.error,
    KeyError,
    TypeError,
    IndexError,
    AttributeError,
    NotImplementedError,
    RuntimeError,
    OverflowError,
)


@contextmanager
def _corrupt(what: str) -> Iterator[None]:
    """Turn a pydicom or decoder failure (READ_ERRORS) into DicomError("corrupt", "<what>: <error>"); a
    DicomError passes as it is."""
    try:
        yield
    except DicomError:
        raise
    except READ_ERRORS as error:
        raise DicomError("corrupt", f"{what}: {error}") from None


@dataclass
class DicomImage:
    image: Image.Image
    metadata: DicomMetadata
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def looks_like_dicom(data: bytes) -> bool:
    """DICOM by content: the "DICM" prefix after a 128-byte preamble, or a raw data set (no preamble).

    A raw data set (PACS exports such as IM000001) starts with its lowest element: group 0002 (file
    meta) or 0008. After the tag come either two upper-case VR letters (explicit VR) or a small even
    value length (implicit VR). PNG, JPEG, TIFF and BMP signatures never match this.
    """
    if len(data) >= 132 and data[128:132] == b"DICM":
        return True
    if len(data) < 8:
        return False
    group, _ = struct.unpack_from("<HH", data)
    if group not in (0x0002, 0x0008):
        return False
    vr = data[4:6]
    if vr.isalpha() and vr.isupper():
        return True
    (length,) = struct.unpack_from("<I", data, 4)
    return length % 2 == 0 and length < min(len(data), 4096)


def _fill_transfer_syntax(ds: Dataset) -> None:
    """A raw data set has no file meta: take its transfer syntax from how pydicom read it."""
    if not hasattr(ds, "file_meta"):
        ds.file_meta = FileMetaDataset()
    if "TransferSyntaxUID" in ds.file_meta:
        return
    implicit, little = ds.original_encoding
    if "PixelData" in ds and ds["PixelData"].is_undefined_length:
        raise DicomError("corrupt", "compressed pixel data without a file meta header naming its transfer syntax")
    ds.file_meta.TransferSyntaxUID = (
        ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    )


def _check_not_truncated(ds: Dataset) -> None:
    if not len(ds):
        raise DicomError("truncated", "truncated DICOM file: no data elements after the header")
    last = ds.get_item(max(ds.keys()))
    length, value = getattr(last, "length", None), getattr(last, "value", None)
    if length not in (None, 0xFFFFFFFF) and isinstance(value, bytes) and len(value) < length:
        raise DicomError(
            "truncated", f"truncated DICOM file: element {last.tag} has {len(value)} of its {length} bytes"
        )


def read_dicom(source: bytes | str | Path) -> Dataset:
    """Parse a DICOM file and check it is an image that can be decoded, or raise DicomError."""
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else source
    if not looks_like_dicom(data):
        raise DicomError("not-dicom", "not a DICOM file: no DICM prefix and no DICOM data set at the start")
    with _corrupt("corrupt or truncated DICOM file"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        if any("End of file reached" in str(warning.message) for warning in caught):
            raise DicomError("truncated", "truncated DICOM file: the pixel data ends before its end marker")
        _check_not_truncated(ds)
        for _ in ds.iterall():  # parse every element now, so a damaged one fails here and not in later use
            pass
    return _checked(ds)


def _checked(ds: Dataset) -> Dataset:
    with _corrupt("corrupt DICOM file"):
        _fill_transfer_syntax(ds)
        check_is_image(ds)
    return ds


def read_header(path: str | Path | BinaryIO) -> Dataset:
    """A stored file's data set without its pixel data (what an SR repeats), its transfer syntax filled in; from
    a path or an open binary stream. FileNotFoundError when the file is gone; DicomError when it cannot be read."""
    opened = open(path, "rb") if isinstance(path, (str, Path)) else contextlib.nullcontext(path)
    with opened as handle, _corrupt("unreadable DICOM file"):
        ds = pydicom.dcmread(handle, force=True, stop_before_pixels=True)
        _fill_transfer_syntax(ds)
    return ds


def part10(ds: Dataset) -> bytes:
    """A data set as a DICOM Part 10 file (preamble, file meta, its transfer syntax)."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def dicomdir_paths(dicomdir: str | Path) -> list[Path]:
    """The files a DICOMDIR lists (absolute paths), for an uploader that is handed a DICOM folder."""
    root = Path(dicomdir).resolve().parent
    with _corrupt("unreadable DICOMDIR"):  # the records themselves: pydicom's FileSet stages in a temporary folder
        records = pydicom.dcmread(dicomdir).DirectoryRecordSequence
        file_ids = [record.ReferencedFileID for record in records if "ReferencedFileID" in record]
        return [root.joinpath(*([file_id] if isinstance(file_id, str) else file_id)) for file_id in file_ids]


def _first_frame(ds: Dataset) -> tuple[np.ndarray, dict]:
    syntax = ds.file_meta.TransferSyntaxUID
    jpeg12.register()
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise DicomError("unsupported", f"no decoder for transfer syntax {UID(syntax).name} ({syntax})") from None
    if not decoder.is_available:
        raise DicomError("unsupported", f"the decoder for {UID(syntax).name} is not installed")
    with _corrupt(f"cannot decode the {UID(syntax).name} pixel data"):
        return decoder.as_array(ds, index=0, as_rgb=True)


def _to_gray8(ds: Dataset, pixels: np.ndarray, meta: dict, notes: list[str]) -> np.ndarray:
    photometric = str(meta.get("photometric_interpretation", ds.get("PhotometricInterpretation", ""))).upper()
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
        photometric = "RGB"
    if pixels.ndim == 3:
        notes.append(f"colour image ({photometric}) converted to grayscale")
        if pixels.dtype.itemsize > 1:
            pixels = (pixels >> (8 * pixels.dtype.itemsize - 8)).astype(np.uint8)
        return np.asarray(Image.fromarray(np.ascontiguousarray(pixels[..., :3]).astype(np.uint8), "RGB").convert("L"))
    if pixels.dtype.itemsize > 2:
        raise DicomError("unsupported", f"{8 * pixels.dtype.itemsize}-bit pixel data is not supported (at most 16)")
    bits_stored = int(meta.get("bits_stored") or ds.get("BitsStored") or 8 * pixels.dtype.itemsize)
    signed = bool(meta.get("pixel_representation", ds.get("PixelRepresentation", 0)))
    native = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("="))
    return apply_display(ds, native, bits_stored, signed, notes)


def decode_dicom(source: bytes | str | Path | Dataset, target_size: int | None = None) -> DicomImage:
    """Decode the first frame to an 8-bit grayscale image after the DICOM display pipeline.

    With `target_size` (the model input side), the picture is box-reduced by an integer factor while
    its longer side stays at least REDUCING_GAP times `target_size`, so preprocessing never converts
    a full-resolution image to float; JPEG 2000 is decoded at the reduced resolution directly where it can.
    """
    ds = _checked(source) if isinstance(source, Dataset) else read_dicom(source)
    with _corrupt("corrupt DICOM file"):  # a damaged element is only parsed when it is first used
        return _decode_checked(ds, target_size)


def _decode_checked(ds: Dataset, target_size: int | None) -> DicomImage:
    metadata = dicom_metadata(ds)
    notes: list[str] = []
    if metadata.number_of_frames > 1:
        notes.append(f"multi-frame file ({metadata.number_of_frames} frames): the first frame was used")
    rows, columns = metadata.rows or 0, metadata.columns or 0
    factor = int(max(rows, columns) / (target_size * REDUCING_GAP)) if target_size else 1
    reduced = reduced_j2k_frame(ds, factor)
    pixels, meta, done = (reduced[0], {}, reduced[1]) if reduced else (*_first_frame(ds), 1)
    image = Image.fromarray(_to_gray8(ds, pixels, meta, notes), "L")
    if factor // done > 1:
        image = image.reduce(factor // done)
    return DicomImage(image=image, metadata=metadata, notes=notes, warnings=image_warnings(ds))


__all__ = [
    "MAX_PIXELS",
    "DicomDirError",
    "DicomError",
    "DicomImage",
    "DicomMetadata",
    "decode_dicom",
    "dicom_metadata",
    "dicomdir_paths",
    "image_warnings",
    "looks_like_dicom",
    "part10",
    "read_dicom",
    "read_header",
]
