"""The atheris target behind test_fuzz.py: DICOM ingest of a file's bytes, as every entry point hands them over.

Run as a script (libFuzzer arguments after the corpus folder): each input goes through what ingest does with a
received file before any row exists: `looks_like_dicom`, `instance_identity` with the UID checks, and
`prepare_dicom` (parse, checks, de-identification, metadata), with de-identification on and off. Refusing the
file (DicomError, or SkippedDicomDir for a DICOMDIR) is the expected answer to bad input; any other exception,
a hang past -timeout or memory past -rss_limit_mb is a finding.
"""

from __future__ import annotations

import logging
import sys
import warnings

import atheris

with atheris.instrument_imports(include=["pydicom", "dicomio"]):
    from dicomio.instances import instance_identity
    from dicomio.prepare import DicomError, SkippedDicomDir, prepare_dicom
    from dicomio.read import looks_like_dicom
    from dicomio.uids import identity_problem, uid_problem


def one_input(data: bytes) -> None:
    looks_like_dicom(data[:4096])
    identity = instance_identity(data)
    identity_problem(identity)
    for value in identity:
        uid_problem(value)
    for deidentify in (True, False):
        try:
            prepare_dicom(data, "fuzz-secret", deidentify)
        except (DicomError, SkippedDicomDir):
            pass


if __name__ == "__main__":
    warnings.simplefilter("ignore")  # pydicom warns on every odd value; findings are exceptions, not warnings
    logging.disable(logging.CRITICAL)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
