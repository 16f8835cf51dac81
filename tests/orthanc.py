"""A real PACS for the tests: Debian's Orthanc (`orthanc`, `orthanc-dicomweb`) started on free ports with a
generated JSON configuration (DICOMweb plugin enabled, C-FIND/C-MOVE/C-GET allowed to known modalities), and a
small client for its REST API. The session fixture `orthanc` (tests/dicom_network_fixtures.py) starts one."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import requests

from tests import services

ORTHANC_BINARY = "Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
AE_TITLE = "ORTHANC"


def missing() -> str | None:
    """None when Orthanc and its DICOMweb plugin are installed, else what to install."""
    if shutil.which(ORTHANC_BINARY) is None:
        return "Orthanc is not installed (Debian package orthanc)"
    if not DICOMWEB_PLUGIN.exists():
        return f"the Orthanc DICOMweb plugin is not at {DICOMWEB_PLUGIN} (Debian package orthanc-dicomweb)"
    return None


def configuration(folder: Path, http_port: int, dicom_port: int) -> dict[str, Any]:
    return {
        "Name": "radbatch-test-pacs",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "storage"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": AE_TITLE,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowEcho": True,
        "DicomScpTimeout": 30,
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
        "DicomModalities": {},
        "HttpDescribeErrors": True,
    }


@dataclass
class Orthanc:
    process: subprocess.Popen
    http_port: int
    dicom_port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def address(self) -> str:
        return f"{AE_TITLE}@127.0.0.1:{self.dicom_port}"

    def rest(self, method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(method, f"{self.url}{path}", timeout=kwargs.pop("timeout", 120), **kwargs)
        response.raise_for_status()
        return response.json() if "json" in response.headers.get("Content-Type", "") else response.content

    def add_modality(self, name: str, ae_title: str, port: int, host: str = "127.0.0.1") -> None:
        """Register (or replace) a DICOM peer Orthanc may send to and answer C-FIND/C-MOVE/C-GET from."""
        peer = {"AET": ae_title, "Host": host, "Port": port}
        peer |= {"AllowFind": True, "AllowMove": True, "AllowGet": True, "AllowStore": True, "AllowEcho": True}
        self.rest("PUT", f"/modalities/{name}", json=peer)

    def upload(self, paths: list[Path]) -> list[str]:
        """Store files through the REST API; returns their Orthanc study ids, once each, in order."""
        studies = [self.rest("POST", "/instances", data=path.read_bytes())["ParentStudy"] for path in paths]
        return list(dict.fromkeys(studies))

    def push(self, modality: str, resources: list[str]) -> Any:
        """`POST /modalities/<name>/store`: Orthanc sends the resources to the peer by C-STORE."""
        return self.rest("POST", f"/modalities/{modality}/store", json={"Resources": resources, "Synchronous": True})

    def instances_of_study(self, study_instance_uid: str) -> list[dict[str, Any]]:
        """Every instance Orthanc indexed with this StudyInstanceUID (under any patient), expanded."""
        query = {"Level": "Instance", "Query": {"StudyInstanceUID": study_instance_uid}, "Expand": True}
        return self.rest("POST", "/tools/find", json=query)

    def dataset(self, instance_id: str) -> pydicom.Dataset:
        return pydicom.dcmread(io.BytesIO(self.rest("GET", f"/instances/{instance_id}/file")))

    def clear(self) -> None:
        for patient in self.rest("GET", "/patients"):
            self.rest("DELETE", f"/patients/{patient}")

    def stop(self) -> None:
        services.stop_process(self.process)


def start_orthanc(folder: Path) -> Orthanc:
    """Orthanc with a generated configuration in `folder`; returns once its REST API answers."""
    folder.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = services.free_port(), services.free_port()
    config = folder / "orthanc.json"
    config.write_text(json.dumps(configuration(folder, http_port, dicom_port), indent=2))
    log = folder / "orthanc.log"
    argv = [shutil.which(ORTHANC_BINARY) or ORTHANC_BINARY, str(config)]
    process = services.start_process(argv, {"LANG": "C.UTF-8"}, log)
    orthanc = Orthanc(process, http_port, dicom_port, log)

    def answers() -> bool:
        plugins = requests.get(f"{orthanc.url}/plugins", timeout=5).json()
        return "dicom-web" in plugins

    services.ready_or_stopped(process, answers, 60, "Orthanc", log)
    return orthanc
