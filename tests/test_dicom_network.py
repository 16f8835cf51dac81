"""DICOM over the network, end to end against real processes: dcmtk's storescu and echoscu, pynetdicom's SCU and
dicomweb-client's STOW-RS send to the listener and the web app; the worker predicts; the forwarding worker sends
each SR to a pynetdicom SCP; dcmtk's dsrdump reads every SR. The listener is killed with SIGKILL mid-association
and the sender sends again: nothing is lost and nothing is duplicated."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from tests.conftest import skip_or_fail
from tests.dicom_corpus_objects import non_image_datasets
from tests.dicom_network_fixtures import NetworkStack
from tests.dicom_network_helpers import PHI_NAME, scu_association, write_dicom_folder
from tests.services import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def dcmtk() -> None:
    for tool in ("storescu", "echoscu", "dsrdump"):
        if shutil.which(tool) is None:
            skip_or_fail(f"dcmtk's {tool} is not installed (Debian package dcmtk)")


def run(*argv: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=300)


def storescu(stack: NetworkStack, calling_aet: str, *inputs: Path) -> subprocess.CompletedProcess:
    return run("storescu", "-aet", calling_aet, "-aec", "RADBATCH", "+sd", "127.0.0.1", stack.dicom_port, *inputs)


def jobs_named(stack: NetworkStack, prefix: str) -> list[dict]:
    jobs = stack.api.http.get(f"{stack.api.base}/jobs", params={"per_page": 200}, timeout=30).json()["jobs"]
    return [job for job in jobs if job["name"].startswith(prefix)]


def closed_jobs_named(stack: NetworkStack, prefix: str) -> list[dict] | None:
    found = jobs_named(stack, prefix)
    return found if found and not any(job["is_open"] for job in found) else None


def assert_every_result_once(stack: NetworkStack, job: dict, sent: dict[str, Path]) -> None:
    finished = stack.api.wait_finished(job["id"], timeout=300)
    assert (finished["total"], finished["done"], finished["failed"]) == (len(sent), len(sent), 0)
    rows = stack.api.results(job["id"], per_page=100)
    paths = [row["path"] for row in rows]
    assert sorted(p.rsplit("/", 1)[-1].removesuffix(".dcm") for p in paths) == sorted(sent)
    assert all(row["predictions"]["ensemble"]["label"] in ("healthy", "disease") for row in rows)


def assert_forwarded_and_valid(stack: NetworkStack, sent: dict[str, Path]) -> None:
    """The destination received one SR per sent image, and dsrdump reads each without a complaint."""

    def all_arrived() -> dict[str, Path] | None:
        found = stack.destination.referenced_sources()
        return found if set(sent) <= set(found) else None

    reports = wait_for(all_arrived, 180, "forwarded SRs")
    for sop_instance_uid in sent:
        dump = run("dsrdump", reports[sop_instance_uid])
        assert dump.returncode == 0 and not dump.stderr.strip(), dump.stderr
        assert "Comprehensive 3D SR" in dump.stdout and "UNVERIFIED" in dump.stdout


def test_echo_and_allow_list(network_stack: NetworkStack) -> None:
    echo = run("echoscu", "-aet", "ECHOSCU", "-aec", "RADBATCH", "127.0.0.1", network_stack.dicom_port)
    assert echo.returncode == 0, echo.stderr
    intruder = scu_association(network_stack.dicom_port, "INTRUDER")
    assert intruder.is_rejected
    assert not jobs_named(network_stack, "DICOM from INTRUDER")


def test_storescu_folder_becomes_one_job_and_every_sr_is_forwarded(network_stack: NetworkStack, tmp_path: Path) -> None:
    sent = write_dicom_folder(tmp_path / "study", 50)
    result = storescu(network_stack, "STORESCU", tmp_path / "study")
    assert result.returncode == 0, result.stderr[-2000:]
    # The listener closes the job in the association's thread after the release, so shortly after storescu exits.
    (job,) = wait_for(lambda: closed_jobs_named(network_stack, "DICOM from STORESCU at "), 30, "the job closed")
    assert_every_result_once(network_stack, job, sent)
    assert_forwarded_and_valid(network_stack, sent)
    assert_no_phi(network_stack)


def assert_no_phi(stack: NetworkStack) -> None:
    """Neither the patient's name nor an ID is anywhere under RADBATCH_HOME (stored files, the SQLite database, the
    logs) or in the SRs the destination received (under it too)."""
    leaks = [
        f"{path.relative_to(stack.home)} holds {value!r}"
        for path in stack.home.rglob("*")
        if path.is_file() and path.suffix != ".sock"
        for value in (PHI_NAME.encode(), *(f"NET-{study}".encode() for study in range(5)))
        if value in path.read_bytes()
    ]
    assert leaks == []


def kill_listener(stack: NetworkStack) -> None:
    os.killpg(stack.listener.pid, signal.SIGKILL)
    stack.listener.wait(10)
    stack.restart_listener()  # what supervisord does


def stored_count(stack: NetworkStack, calling_aet: str) -> int:
    return sum(job["total"] for job in jobs_named(stack, f"DICOM from {calling_aet} at "))


def test_listener_killed_mid_association_loses_and_duplicates_nothing(
    network_stack: NetworkStack, tmp_path: Path
) -> None:
    """Killed twice: between two C-STOREs of pynetdicom's SCU, then while storescu is streaming (possibly between
    a commit and its acknowledgement); each time the sender sends the whole folder again."""
    sent = write_dicom_folder(tmp_path / "study", 50)
    assoc = scu_association(network_stack.dicom_port, "KILLTEST")
    assert assoc.is_established
    for path in list(sent.values())[:20]:
        assert assoc.send_c_store(pydicom.dcmread(path)).Status == 0
    kill_listener(network_stack)
    assoc.abort()
    streaming = subprocess.Popen(
        ["storescu", "-aet", "KILLTEST", "-aec", "RADBATCH", "+sd", "127.0.0.1", str(network_stack.dicom_port)]
        + [str(tmp_path / "study")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while stored_count(network_stack, "KILLTEST") < 22 and time.monotonic() < deadline:  # 2 new files stored
        time.sleep(0.01)
    kill_listener(network_stack)
    assert streaming.wait(60) != 0  # storescu saw the listener die before it had sent everything
    result = storescu(network_stack, "KILLTEST", tmp_path / "study")
    assert result.returncode == 0, result.stderr[-2000:]
    (job,) = jobs_named(network_stack, "DICOM from KILLTEST at ")
    assert_every_result_once(network_stack, job, sent)
    assert_forwarded_and_valid(network_stack, sent)


def test_stow_rs_with_dicomweb_client(network_stack: NetworkStack, tmp_path: Path) -> None:
    sent = write_dicom_folder(tmp_path / "stow", 5, studies=1)
    datasets = [pydicom.dcmread(path) for path in sent.values()]
    report, _kind = non_image_datasets(datasets[0])["sr"]
    headers = {"Authorization": f"Bearer {network_stack.token}"}
    client = DICOMwebClient(url=f"{network_stack.base_url}/dicomweb", headers=headers)
    response = client.store_instances(datasets=[*datasets, report])
    stored = {str(item.ReferencedSOPInstanceUID) for item in response.ReferencedSOPSequence}
    (failed,) = response.FailedSOPSequence
    assert stored == set(sent)
    assert (failed.ReferencedSOPInstanceUID, failed.FailureReason) == (report.SOPInstanceUID, 0xC000)
    (job,) = jobs_named(network_stack, "STOW-RS from pacs-owner")
    finished = network_stack.api.wait_finished(job["id"], timeout=300)
    assert (finished["total"], finished["done"], finished["failed"]) == (6, 5, 1)
    anonymous = requests.post(f"{network_stack.base_url}/dicomweb/studies", data=b"", timeout=30)
    assert anonymous.status_code == 401 and anonymous.json()["status"] == 401
