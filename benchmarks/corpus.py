"""The files a throughput run sends: what users send, written to a folder once before anything is timed.

128    the 128-px NIH subset (../shared/data/nih-cxr14-subset/images), the first N files
1024   the 15 full-resolution NIH originals (../shared/data/originals), repeated to N files; each copy gets
       its own tEXt chunk, so no two files have the same bytes while their pixels stay the same
dicom  the same originals as DICOM written here with pydicom: uncompressed, explicit VR little endian,
       16-bit monochrome (the 8-bit values times 257), each copy its own SOP Instance UID
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SHARED_DATA = Path(os.environ.get("RADBATCH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
CORPORA = ("128", "1024", "dicom")


@dataclass(frozen=True)
class Corpus:
    name: str
    paths: list[Path]
    content_type: str

    @property
    def suffix(self) -> str:
        return self.paths[0].suffix


def _png_with_text(data: bytes, text: str) -> bytes:
    """The same PNG with one more tEXt chunk before IEND (pixels unchanged)."""
    body = b"Comment\0" + text.encode()
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    end = data.rindex(b"IEND") - 4
    return data[:end] + chunk + data[end:]


def _gray16(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        gray = np.asarray(image.convert("L"), dtype=np.uint16)
    return gray * 257


def dicom_bytes(pixels: np.ndarray, copy: int) -> bytes:
    """An uncompressed explicit-VR-little-endian 16-bit DX image of `pixels`."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID, ds.PatientName = "DX", f"BENCH{copy:06d}", "Benchmark^Synthetic"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def build(name: str, n: int, folder: Path, shared: Path = SHARED_DATA) -> Corpus:
    """Write `n` files of corpus `name` into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    if name == "128":
        source = sorted((shared / "nih-cxr14-subset" / "images").glob("*.png"))[:n]
        if len(source) < n:
            raise ValueError(f"only {len(source)} images in {shared / 'nih-cxr14-subset' / 'images'}")
        return Corpus(name, source, "image/png")
    originals = sorted((shared / "originals").glob("*.png"))
    if not originals:
        raise ValueError(f"no originals in {shared / 'originals'}")
    paths = []
    if name == "1024":
        blobs = [p.read_bytes() for p in originals]
        for i in range(n):
            path = folder / f"{originals[i % len(originals)].stem}_copy{i:05d}.png"
            path.write_bytes(_png_with_text(blobs[i % len(blobs)], f"radbatch benchmark copy {i}"))
            paths.append(path)
        return Corpus(name, paths, "image/png")
    if name == "dicom":
        planes = [_gray16(p) for p in originals]
        for i in range(n):
            path = folder / f"{originals[i % len(originals)].stem}_copy{i:05d}.dcm"
            path.write_bytes(dicom_bytes(planes[i % len(planes)], i))
            paths.append(path)
        return Corpus(name, paths, "application/dicom")
    raise ValueError(f"unknown corpus {name!r}; choose from {', '.join(CORPORA)}")
