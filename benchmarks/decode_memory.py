"""Peak memory of decoding + preprocessing hostile images, each in a fresh process.

    .venv/bin/python -m benchmarks.decode_memory            # writes the inputs to a temp folder, prints a table

The inputs are the ones from issue 10: an 8192x8192 RGBA PNG, a 32768x2048 and a 65536x1024 PNG (both at the
pixel limit, but very elongated), and a 30000x30000 decompression bomb. They are written as real, complete
PNG files (zlib-compressed black rows), so nothing but the file's own size limits what a decoder may do.
Peak RSS is the child's VmHWM (Linux), which includes the interpreter, numpy and Pillow (about 30 MB).
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# (file name, width, height, PNG colour type: 0 gray, 6 RGBA)
INPUTS = [
    ("rgba-8192x8192.png", 8192, 8192, 6),
    ("wide-32768x2048.png", 32768, 2048, 0),
    ("wide-65536x1024.png", 65536, 1024, 0),
    ("bomb-30000x30000.png", 30000, 30000, 0),
]
_CHANNELS = {0: 1, 2: 3, 6: 4}

MEASURE = """
import json, resource, sys
sys.path.insert(0, sys.argv[2])
limit = int(sys.argv[3]) << 20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # the old decoder could ask for 16 GiB
from models.preprocess import decode_image, preprocess
try:
    image = decode_image(sys.argv[1])
    preprocess(image)
    outcome = f"decoded {image.width}x{image.height} {image.mode}"
except Exception as error:
    outcome = f"{type(error).__name__}: {error}"
# VmHWM, not ru_maxrss: after fork + exec, ru_maxrss still counts the parent's pages at the fork.
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"peak_mb": peak_kb / 1024, "outcome": outcome}))
"""


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def write_png(path: Path, width: int, height: int, color_type: int = 0) -> Path:
    """A valid 8-bit PNG of black (transparent black for RGBA) pixels, written in a second or two.

    Every row is the same, so one band of rows is deflated once (ending in a full flush, which makes the next
    band's bytes identical) and repeated; the zlib header and the Adler-32 of all the rows frame the stream.
    """
    row = b"\0" * (1 + width * _CHANNELS[color_type])  # filter byte 0, then the pixels
    band_rows = max(1, min(height, (4 << 20) // len(row)))
    bands, rest = divmod(height, band_rows)

    def deflated(rows: int) -> bytes:
        compressor = zlib.compressobj(1, zlib.DEFLATED, -15)
        return compressor.compress(row * rows) + compressor.flush(zlib.Z_FULL_FLUSH)

    band, checksum = deflated(band_rows), 1
    for _ in range(bands):
        checksum = zlib.adler32(row * band_rows, checksum)
    checksum = zlib.adler32(row * rest, checksum)
    with open(path, "wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n")
        out.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)))
        out.write(_chunk(b"IDAT", b"\x78\x01"))
        for _ in range(bands):
            out.write(_chunk(b"IDAT", band))
        tail = zlib.compressobj(1, zlib.DEFLATED, -15)
        out.write(_chunk(b"IDAT", tail.compress(row * rest) + tail.flush() + struct.pack(">I", checksum)))
        out.write(_chunk(b"IEND", b""))
    return path


def measure(path: Path, code_root: Path = REPO_ROOT, limit_mb: int = 8192) -> dict:
    """Decode + preprocess `path` with the `models` package under `code_root`, in a fresh process whose
    address space is capped at `limit_mb` (a request beyond it shows up as a MemoryError)."""
    argv = [sys.executable, "-c", MEASURE, str(path), str(code_root), str(limit_mb)]
    result = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=code_root)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decode_memory", description=__doc__.split("\n")[0])
    parser.add_argument("--code-root", type=Path, default=REPO_ROOT, help="a checkout whose models/ to measure")
    parser.add_argument("--limit-mb", type=int, default=8192, help="address-space cap of each child (MB)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="radbatch-decode-") as folder:
        print(f"{'input':<24} {'file KB':>8} {'peak RSS MB':>12}  outcome")
        for name, width, height, color_type in INPUTS:
            path = write_png(Path(folder) / name, width, height, color_type)
            found = measure(path, args.code_root, args.limit_mb)
            size_kb = path.stat().st_size / 1024
            print(f"{name:<24} {size_kb:>8.0f} {found['peak_mb']:>12.0f}  {found['outcome'][:110]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
