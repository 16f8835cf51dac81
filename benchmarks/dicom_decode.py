"""Decode and preprocessing time of a full-resolution DICOM, per transfer syntax, on one core.

    .venv/bin/python -m benchmarks.dicom_decode            # 2,500 x 2,048, 16-bit, median of 7
    .venv/bin/python -m benchmarks.dicom_decode --repeat 15 --png path/to/xray.png

Makes a 2,500 x 2,048 radiograph (16 bits stored, windowed) from a 1024-px NIH original with
Lanczos, encodes it once per transfer syntax (pydicom's encoders; dcmtk's dcmconv and dcmcjpeg
where installed; JPEG Baseline from an 8-bit copy and JPEG Extended from a 12-bit one, as those
syntaxes cannot hold 16 bits) and times, from the bytes in memory, pinned to one core:

Times are the median CPU time of the process (pinned to one core: the ms of one core the work costs, which
stays meaningful on a busy machine) plus the wall time of reduced+prep.

  decode        pydicom parse + decode of the first frame to an array
  display       `decode_dicom` at full resolution (decode + the one-table display pipeline)
  full+prep     `decode_dicom` at full resolution, then `preprocess(image, 128, 1)`
  reduced+prep  `decode_dicom(target_size=128)` (box-reduced 8-bit image), then `preprocess`

The goal is reduced+prep of the uncompressed 16-bit file at about 60 ms of one core or less. The
ratio column is full+prep / reduced+prep, measured in the same run.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom import uid
from pydicom.dataset import Dataset

from benchmarks.corpus import SHARED_DATA
from dicomio.read import decode_dicom, read_dicom
from models.preprocess import preprocess
from tests.dicom_corpus import image_dataset, large_dataset, run_dcmtk

DEFAULT_PNG = SHARED_DATA / "originals" / "00000798_025.png"
COMPRESSED_16 = (
    ("RLE Lossless", uid.RLELossless, {}),
    ("JPEG-LS Lossless", uid.JPEGLSLossless, {}),
    ("JPEG-LS Near-Lossless", uid.JPEGLSNearLossless, {"jls_error": 2}),
    ("JPEG 2000 Lossless", uid.JPEG2000Lossless, {}),
    ("JPEG 2000 (lossy 20:1)", uid.JPEG2000, {"j2k_cr": [20]}),
)


def to_bytes(ds: Dataset, **write) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True, **write)
    return buffer.getvalue()


def encodings(png: Path, work: Path) -> dict[str, bytes]:
    base = large_dataset(png)
    files = {"Explicit VR Little Endian (16-bit)": to_bytes(base)}
    implicit = large_dataset(png)
    implicit.file_meta.TransferSyntaxUID = uid.ImplicitVRLittleEndian
    files["Implicit VR Little Endian"] = to_bytes(implicit)
    (work / "base.dcm").write_bytes(files["Explicit VR Little Endian (16-bit)"])
    for name, option in (("Explicit VR Big Endian", "+tb"), ("Deflated Explicit VR Little Endian", "+td")):
        if not run_dcmtk("dcmconv", option, work / "base.dcm", work / "out.dcm"):
            files[name] = (work / "out.dcm").read_bytes()
    if not run_dcmtk("dcmcjpeg", "+e1", "+un", work / "base.dcm", work / "out.dcm"):
        files["JPEG Lossless SV1"] = (work / "out.dcm").read_bytes()
    for name, syntax, options in COMPRESSED_16:
        ds = large_dataset(png)
        ds.compress(syntax, **options)
        files[name] = to_bytes(ds)
    twelve = (base.pixel_array >> 4).astype(np.uint16)
    eight = (base.pixel_array >> 8).astype(np.uint8)
    (work / "12.dcm").write_bytes(to_bytes(image_dataset(twelve, 12, WindowCenter=2047.5, WindowWidth=4096)))
    (work / "8.dcm").write_bytes(to_bytes(image_dataset(eight, 8)))
    for name, option, source in (
        ("JPEG Extended (12-bit)", "+ee", "12.dcm"),
        ("JPEG Baseline (8-bit)", "+eb", "8.dcm"),
    ):
        if not run_dcmtk("dcmcjpeg", option, "+un", work / source, work / "out.dcm"):
            files[name] = (work / "out.dcm").read_bytes()
    return files


def median_ms(function, repeat: int) -> tuple[float, float]:
    """Median CPU time of this process (all its threads, pinned to one core) and median wall time, in ms."""
    function()  # warm up: imports, plugin discovery
    cpu, wall = [], []
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        function()
        cpu.append(time.process_time() - started_cpu)
        wall.append(time.perf_counter() - started)
    return 1000 * statistics.median(cpu), 1000 * statistics.median(wall)


def measure(data: bytes, repeat: int) -> dict[str, tuple[float, float]]:
    def decode():
        ds = read_dicom(data)
        ds.pixel_array_options(index=0)
        return ds.pixel_array

    return {
        "decode": median_ms(decode, repeat),
        "display": median_ms(lambda: decode_dicom(data), repeat),
        "full+prep": median_ms(lambda: preprocess(decode_dicom(data).image, 128, 1), repeat),
        "reduced+prep": median_ms(lambda: preprocess(decode_dicom(data, target_size=128).image, 128, 1), repeat),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--png", type=Path, default=DEFAULT_PNG, help="8-bit grayscale source radiograph")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per measurement (median)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    with tempfile.TemporaryDirectory() as work:
        files = encodings(args.png, Path(work))
    first = pydicom.dcmread(io.BytesIO(next(iter(files.values()))))
    print(f"{first.Columns} x {first.Rows} pixels, one core, median of {args.repeat}, pydicom {pydicom.__version__}")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; CPU ms: this process, pinned to one core")
    columns = ("MB", 5), ("decode", 7), ("display", 8), ("full+prep", 10), ("reduced+prep", 13), ("ratio", 6)
    header = f"{'transfer syntax':36s} " + " ".join(f"{title:>{width}s}" for title, width in columns)
    header += "  reduced+prep wall ms"
    print(header)
    print("-" * len(header))
    for name, data in files.items():
        ms = measure(data, args.repeat)
        cpu = {key: value[0] for key, value in ms.items()}
        print(
            f"{name:36s} {len(data) / 1e6:5.1f} {cpu['decode']:7.1f} {cpu['display']:8.1f} {cpu['full+prep']:10.1f} "
            f"{cpu['reduced+prep']:13.1f} {cpu['full+prep'] / cpu['reduced+prep']:6.2f}  {ms['reduced+prep'][1]:20.1f}"
        )
    print("CPU ms of one core, median; ratio = full+prep / reduced+prep")


if __name__ == "__main__":
    main()
