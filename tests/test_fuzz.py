"""Coverage-guided fuzzing of DICOM ingest (a file's bytes) with atheris for a bounded time (tests/fuzz_dicom_ingest.py
is the target). Seeds: small valid images in the usual encodings. Skipped where atheris cannot be installed."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.dicom_corpus import image_dataset
from tests.services import REPO_ROOT

pytestmark = pytest.mark.fuzz
FUZZ_SECONDS = int(os.environ.get("RADBATCH_TEST_FUZZ_SECONDS", "60"))


def _seeds(folder: Path) -> None:
    folder.mkdir()
    pixels = (np.arange(32 * 24, dtype=np.uint16).reshape(32, 24) % 4096).astype(np.uint16)
    explicit, implicit = pydicom.uid.ExplicitVRLittleEndian, pydicom.uid.ImplicitVRLittleEndian
    cases = {
        "explicit8": (image_dataset((pixels % 256).astype(np.uint8), 8), explicit),
        "implicit12": (image_dataset(pixels, 12), implicit),
        "mono1": (image_dataset(pixels, 12, PhotometricInterpretation="MONOCHROME1"), explicit),
    }
    for name, (dataset, syntax) in cases.items():
        dataset.file_meta.TransferSyntaxUID = syntax
        dataset.save_as(folder / f"{name}.dcm", enforce_file_format=True)


def test_dicom_ingest_survives_fuzzing(tmp_path: Path) -> None:
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed (pip install atheris; it has wheels for Linux, CPython <= 3.12)")
    corpus = tmp_path / "corpus"
    _seeds(corpus)
    arguments = [f"-max_total_time={FUZZ_SECONDS}", "-timeout=20", "-rss_limit_mb=3072", "-print_final_stats=1"]
    arguments += [f"-artifact_prefix={tmp_path}/", "-close_fd_mask=1"]
    run = subprocess.run(
        [sys.executable, "-m", "tests.fuzz_dicom_ingest", str(corpus), *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=FUZZ_SECONDS + 240,
    )
    findings = sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(("crash-", "timeout-", "oom-")))
    assert run.returncode == 0 and not findings, f"{findings}\n{run.stderr[-6000:]}"
    assert "Done" in run.stderr and "stat::number_of_executed_units" in run.stderr
