"""DICOM UIDs as PS3.5 9.1 defines them, checked before a received instance is stored or referenced, and the
encoded pixel data of a Part 10 file, compared (not decoded) when two instances share a SOP Instance UID."""

from __future__ import annotations

import io
import re

from pydicom import dcmread

from dicomio.read import READ_ERRORS

_IDENTITY_NAMES = ("SOP Class UID", "SOP Instance UID", "Study Instance UID")
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
MAX_UID = 64


def uid_problem(value: str) -> str | None:
    """Why `value` is not a UID (PS3.5 9.1: digits and dots, no empty component, no leading zero in a component
    of more than one digit, at most 64 characters), or None when it is one. The value itself is never quoted."""
    if not value:
        return "missing"
    if len(value) > MAX_UID:
        return f"longer than {MAX_UID} characters"
    if _UID.fullmatch(value) is None:
        return "not a UID: only digits and dots, no empty component and no leading zero (PS3.5 9.1)"
    return None


def identity_problem(identity: tuple[str, str, str]) -> str | None:
    """The first of SOP Class, SOP Instance and Study Instance UID that is not a valid UID, and why."""
    for name, value in zip(_IDENTITY_NAMES, identity):
        problem = uid_problem(value)
        if problem is not None:
            return f"{name} {problem}"
    return None


def pixel_bytes(data: bytes) -> bytes | None:
    """The encoded Pixel Data of a Part 10 file, not decoded; None if it cannot be read."""
    try:
        return dcmread(io.BytesIO(data), specific_tags=["PixelData"]).get("PixelData")
    except READ_ERRORS:
        return None
