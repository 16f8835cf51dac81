"""The file formats radbatch reads, told apart by content: one list for ingest (at upload) and the decoder."""

from __future__ import annotations

# Extension (lower case) -> the format it promises.
IMAGE_EXTENSIONS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}
DICOM_EXTENSIONS = {".dcm", ".dicom", ".dic"}
STORED_EXTENSION = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tiff"}
ACCEPTED = "upload PNG, JPEG, BMP, TIFF or DICOM"
HEAD_BYTES = 132  # enough for every signature below, DICOM's "DICM" at offset 128 included


def sniff(head: bytes) -> str | None:
    """The format of a supported image ("PNG", "JPEG", "BMP", "TIFF") from its first bytes, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"BM") and len(head) >= 26:
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


def is_dicom(head: bytes) -> bool:
    """A DICOM Part 10 file: a 128-byte preamble, then "DICM"."""
    return head[128:132] == b"DICM"
