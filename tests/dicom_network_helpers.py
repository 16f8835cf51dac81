"""Helpers for the DICOM network tests: a folder of DICOM files made from the committed PNGs, a C-STORE
destination that keeps what it receives (pynetdicom), a pynetdicom SCU, and the listener as a process."""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom import uid
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from tests import services
from tests.dicom_corpus import image_dataset

TEST_DATA = Path(__file__).resolve().parent / "data"
PHI_NAME = "NETWORK^PATIENT"


def committed_pngs() -> list[Path]:
    """The 64 committed test PNGs (pipeline and nih-mini), in a fixed order."""
    return sorted((TEST_DATA / "pipeline" / "images").glob("*.png")) + sorted(
        (TEST_DATA / "nih-mini" / "images").glob("*.png")
    )


def write_dicom_folder(out_dir: Path, count: int, studies: int = 5) -> dict[str, Path]:
    """`count` DX files (explicit VR little endian, 8 bits) from the committed PNGs, spread over `studies`
    studies; returns SOPInstanceUID -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = committed_pngs()
    study_uids = [uid.generate_uid() for _ in range(studies)]
    written = {}
    for index in range(count):
        pixels = np.asarray(Image.open(pngs[index % len(pngs)]).convert("L"))
        dataset = image_dataset(pixels, 8, PatientName=PHI_NAME, PatientID=f"NET-{index % studies}")
        dataset.StudyInstanceUID = study_uids[index % studies]
        dataset.InstanceNumber = index + 1
        path = out_dir / f"IM{index + 1:04d}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        written[str(dataset.SOPInstanceUID)] = path
    return written


@dataclass
class Destination:
    """A C-STORE SCP (the forwarding target) that writes every data set it receives under `folder`."""

    folder: Path
    ae_title: str = "FORWARDTO"
    port: int = field(default_factory=services.free_port)
    received: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        ae = AE(ae_title=self.ae_title)
        ae.supported_contexts = AllStoragePresentationContexts
        ae.add_supported_context(Verification)
        self._server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on)]
        )

    def _on(self, event: evt.Event) -> int:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        path = self.folder / f"{dataset.SOPInstanceUID}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        with self._lock:
            self.received.append(path)
        return 0x0000

    @property
    def address(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.port}"

    def referenced_sources(self) -> dict[str, Path]:
        """Source SOPInstanceUID -> the (study) SR file that reports on it."""
        with self._lock:
            paths = list(self.received)
        return {source: path for path in paths for source in evidence_uids(pydicom.dcmread(path))}

    def stop(self) -> None:
        self._server.shutdown()


def evidence_uids(sr: pydicom.Dataset) -> set[str]:
    """The SOP Instance UIDs an SR lists as its evidence (every series of every study)."""
    return {
        str(item.ReferencedSOPInstanceUID)
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }


def scu_association(port: int, calling_aet: str, called_aet: str = "RADBATCH"):
    """An established pynetdicom association to the listener, proposing DX storage and verification."""
    ae = AE(ae_title=calling_aet)
    ae.add_requested_context(uid.DigitalXRayImageStorageForPresentation, uid.ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    return ae.associate("127.0.0.1", port, ae_title=called_aet)


def start_listener(env: dict[str, str], log: Path) -> subprocess.Popen:
    """`python -m listener`; returns once it answers C-ECHO."""
    process = services.start_process([sys.executable, "-m", "listener"], env, log)
    port = int(env["RADBATCH_DICOM_PORT"])

    def echoes() -> bool:
        assoc = scu_association(port, "PROBE")
        if not assoc.is_established:
            return False
        status = assoc.send_c_echo()
        assoc.release()
        return status.Status == 0

    services.ready_or_stopped(process, echoes, 60, "DICOM listener", log)
    return process
