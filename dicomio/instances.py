"""A received DICOM instance (C-STORE, STOW-RS) parsed once: its identity, and the checked data set that ingest
stores, or why it cannot be stored."""

from __future__ import annotations

import io
from dataclasses import dataclass

from pydicom import dcmread
from pydicom.dataset import Dataset

from dicomio.read import READ_ERRORS, DicomError, read_dicom

_IDENTITY = ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"]


@dataclass(frozen=True)
class Instance:
    identity: tuple[str, str, str]  # (SOPClassUID, SOPInstanceUID, StudyInstanceUID); "" for what is unreadable
    parsed: Dataset | DicomError  # handed to ingest (`Incoming.parsed`), which then does not parse it again


def _identity(ds: Dataset) -> tuple[str, str, str]:
    return tuple(str(ds.get(keyword, "") or "") for keyword in _IDENTITY)  # type: ignore[return-value]


def instance_identity(data: bytes) -> tuple[str, str, str]:
    """(SOPClassUID, SOPInstanceUID, StudyInstanceUID) of a Part 10 file, read without its pixel data; empty
    strings for what cannot be read."""
    try:
        return _identity(dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=_IDENTITY))
    except READ_ERRORS:
        return "", "", ""


def parse_instance(data: bytes) -> Instance:
    """Parse and check a received file once. A file that is refused is read again, without its pixels, only for
    the UIDs its sender is told about."""
    try:
        ds = read_dicom(data)
    except DicomError as error:
        return Instance(instance_identity(data), error)
    return Instance(_identity(ds), ds)
