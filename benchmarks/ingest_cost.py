"""What ingest costs per file, without HTTP: the work `ingest.add_files` does for each upload, in this process.

    .venv/bin/python -m benchmarks.ingest_cost --n 64 --corpus dicom,1024

For each corpus (benchmarks/corpus.py) it times, in interleaved rounds over the same files, wall and CPU
milliseconds per file of:
  copy        writing the received bytes to the upload folder, atomically, with their SHA-256 (the floor)
  store       `ingest.files.store_file`, the whole per-file ingest: check, (for DICOM) parse, check, de-identify
              and encode, write, hash
  store, no de-identification   the same with RADBATCH_DEIDENTIFY=false (DICOM only)
and prints each as a ratio of the copy, all measured in this one run.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from benchmarks import corpus as corpora
from ingest.files import Incoming, store_file
from settings import Settings
from storage import names, storage_for


def _timed(step: Callable[[bytes, int], object], blobs: list[bytes]) -> tuple[float, float]:
    """(wall ms, CPU ms) per file for `step` over every blob."""
    wall, cpu = time.perf_counter(), time.process_time()
    for number, data in enumerate(blobs):
        step(data, number)
    n = len(blobs)
    return 1000 * (time.perf_counter() - wall) / n, 1000 * (time.process_time() - cpu) / n


def steps(name: str, home: Path) -> dict[str, Callable[[bytes, int], object]]:
    """The steps to time, each storing into a fresh local store under `home`."""
    settings = Settings(home=home, secret_key="benchmark")
    storage_for(settings).prepare()
    max_bytes = settings.max_file_mb * 2**20
    plain = replace(settings, deidentify=False)
    suffix = ".dcm" if name == "dicom" else ".png"

    def copy(data: bytes, number: int) -> None:
        storage_for(settings).put(names.upload(f"copy-{number}{suffix}"), io.BytesIO(data))

    def store(config: Settings) -> Callable[[bytes, int], object]:
        return lambda data, number: store_file(Incoming(f"f{number}{suffix}", io.BytesIO(data)), 1, config, max_bytes)

    found = {"copy": copy, "store": store(settings)}
    if name == "dicom":
        found["store, no de-identification"] = store(plain)
    return found


def measure(name: str, n: int, rounds: int, workdir: Path) -> dict[str, tuple[float, float]]:
    files = corpora.build(name, n, workdir / "corpus" / name)
    blobs = [path.read_bytes() for path in files.paths]
    timings: dict[str, list[tuple[float, float]]] = {}
    for round_number in range(rounds):
        for label, step in steps(name, workdir / f"home-{round_number}").items():
            timings.setdefault(label, []).append(_timed(step, blobs))
    return {
        label: (statistics.median(w for w, _ in found), statistics.median(c for _, c in found))
        for label, found in timings.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="dicom", help=f"comma-separated, of {', '.join(corpora.CORPORA)}")
    parser.add_argument("--n", type=int, default=64, help="files per corpus")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is shown")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="radbatch-ingest-") as tmp:
        for name in args.corpus.split(","):
            found = measure(name, args.n, args.rounds, Path(tmp) / name)
            copy_wall, copy_cpu = found["copy"]
            print(f"\ncorpus {name}: {args.n} files, median of {args.rounds} interleaved rounds")
            print(f"{'per file':32s} {'wall ms':>8s} {'CPU ms':>8s} {'wall / copy':>12s} {'CPU / copy':>11s}")
            for label, (wall, cpu) in found.items():
                print(f"{label:32s} {wall:8.2f} {cpu:8.2f} {wall / copy_wall:12.2f} {cpu / copy_cpu:11.2f}")


if __name__ == "__main__":
    main()
