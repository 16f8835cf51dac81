"""The listener's gate over real DICOM networking (pynetdicom SCUs, raw TCP sockets, a second loopback address):
called AE title, exposure without an allow-list, associations per calling AE title and per peer, ARTIM and idle
timeouts, AE titles mapped to users with an audit row per job, invalid UIDs refused with 0xA900, and instances
sent twice (identical: counted; different content: kept with a note)."""

from __future__ import annotations

import gc
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation, Verification
from sqlalchemy import select

from broker import make_celery
from db.audit import AuditEvent
from db.models import Image, Job, User
from db.session import session_scope
from db.users import create_user
from listener.guard import ListenerConfigError
from listener.scp import Listener
from settings import Settings
from tests import services
from tests.test_dicom_listener import listener_jobs, send

# pynetdicom drops the socket of an association the listener aborts or rejects without closing it; the garbage
# collector reports it in whichever test runs next (see pyproject's filterwarnings for the same warning).
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(autouse=True)
def _collect_dropped_sockets() -> Iterator[None]:
    """Collect them here, under this module's filter, not in the next module's first test."""
    yield
    gc.collect()


BAD_UID = 0xA900


def _association(port: int, calling: str, called: str = "RADBATCH", source: str = "127.0.0.1"):
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    ae.add_requested_context(DigitalXRayImageStorageForPresentation, pydicom.uid.ExplicitVRLittleEndian)
    ae.acse_timeout = 5
    return ae.associate("127.0.0.1", port, ae_title=called, bind_address=(source, 0))


@pytest.fixture
def start(listener_settings: Settings, sessions):
    started: list[Listener] = []

    def run(**changes) -> Listener:
        listener = Listener(replace(listener_settings, **changes), sessions, make_celery(listener_settings))
        listener.serve(block=False)
        started.append(listener)
        return listener

    yield run
    for listener in started:
        listener.shutdown()


def test_the_called_ae_title_must_be_ours(start) -> None:
    port = start().settings.dicom_port
    wrong = _association(port, "MODALITY", called="WRONGCALLED")
    assert wrong.is_rejected and not wrong.is_established
    right = _association(port, "MODALITY")
    assert right.is_established
    right.release()


def test_a_listener_others_can_reach_needs_an_allow_list(listener_settings: Settings, sessions) -> None:
    exposed = replace(listener_settings, dicom_host="0.0.0.0", dicom_allowed_aets=())
    with pytest.raises(ListenerConfigError, match="RADBATCH_DICOM_ALLOWED_AETS"):
        Listener(exposed, sessions, make_celery(exposed))
    Listener(replace(exposed, dicom_aet_users=("SITEA=pacs",)), sessions, make_celery(exposed)).shutdown()
    Listener(replace(exposed, dicom_host="127.0.0.1"), sessions, make_celery(exposed)).shutdown()


def test_one_sender_cannot_take_every_association(start) -> None:
    port = start(dicom_max_per_aet=2, dicom_max_per_peer=3).settings.dicom_port
    held = [_association(port, "MODALITY") for _ in range(2)]
    assert all(assoc.is_established for assoc in held)
    third = _association(port, "MODALITY")
    answer = third.acceptor.primitive
    assert third.is_rejected and (answer.result, answer.result_source, answer.diagnostic) == (0x02, 0x03, 0x02)
    other = _association(port, "OTHER")  # another sender still gets in
    assert other.is_established and other.send_c_echo().Status == 0
    refused_peer = _association(port, "OTHER")  # a 4th connection from 127.0.0.1 is closed at once
    assert not refused_peer.is_established
    elsewhere = _association(port, "OTHER", source="127.0.0.2")  # ... while another address gets in
    assert elsewhere.is_established
    for assoc in (*held, other, elsewhere):
        assoc.release()
    again = services.wait_for(lambda: (a := _association(port, "MODALITY")).is_established and a, 10, "a free slot")
    again.release()


def test_silent_connections_and_idle_associations_are_dropped(start) -> None:
    port = start(dicom_max_per_peer=2, dicom_artim_timeout=1, dicom_idle_timeout=1).settings.dicom_port
    raw = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]  # never send an association request
    time.sleep(0.3)
    assert not _association(port, "MODALITY").is_established  # the peer's two slots are taken ...
    for sock in raw:
        sock.settimeout(5)
        assert sock.recv(1) == b""  # ... until ARTIM closes them
        sock.close()
    idle = services.wait_for(lambda: (a := _association(port, "MODALITY")).is_established and a, 5, "a slot")
    services.wait_for(lambda: idle.is_aborted or None, 5, "the idle association aborted")


def test_jobs_belong_to_the_senders_user_and_are_audited(start, sessions, dicom_files: list[Path]) -> None:
    with session_scope(sessions) as session:
        create_user(session, "site-a", "site a password")
    port = start(dicom_aet_users=("SITEA=site-a",), dicom_allowed_aets=("MODALITY",)).settings.dicom_port
    assert send(port, dicom_files[:1], calling_aet="SITEA") == [0]
    assert send(port, dicom_files[1:2], calling_aet="MODALITY") == [0]
    assert not _association(port, "EVILPACS").is_established
    first, second = listener_jobs(sessions)
    with session_scope(sessions) as session:
        owners = [session.get(User, job.user_id).username for job in (first, second)]
        events = session.execute(select(AuditEvent.action, AuditEvent.job_id, AuditEvent.username, AuditEvent.ip))
        assert sorted(events) == [
            ("job.create", first.id, "site-a", "127.0.0.1"),
            ("job.create", second.id, "pacs", "127.0.0.1"),
        ]
    assert owners == ["site-a", "pacs"]


def test_invalid_uids_are_refused_with_a900(start, sessions, dicom_files: list[Path]) -> None:
    port = start().settings.dicom_port
    assoc = _association(port, "MODALITY")
    for uid in ("../../../../x/PWNED<x>", "1.2.03.4", "1..2", "1.2.3."):
        dataset = pydicom.dcmread(dicom_files[0])
        dataset.SOPInstanceUID = uid
        status = assoc.send_c_store(dataset)
        assert status.Status == BAD_UID and "SOP Instance UID" in status.ErrorComment, uid
    dataset = pydicom.dcmread(dicom_files[0])
    dataset.StudyInstanceUID = "1.2.840.abc"
    assert assoc.send_c_store(dataset).Status == BAD_UID
    assert assoc.send_c_store(pydicom.dcmread(dicom_files[0])).Status == 0
    assoc.release()
    (job,) = listener_jobs(sessions)
    assert job.total == 1


def test_a_resend_is_counted_and_a_namesake_is_kept_with_a_note(start, sessions, dicom_files: list[Path]) -> None:
    port = start().settings.dicom_port
    original = pydicom.dcmread(dicom_files[0])
    namesake = pydicom.dcmread(dicom_files[0])
    namesake.PixelData = (255 - np.frombuffer(original.PixelData, dtype=np.uint8)).tobytes()
    assoc = _association(port, "MODALITY")
    statuses = [assoc.send_c_store(dataset).Status for dataset in (original, original, namesake, namesake)]
    assoc.release()
    assert statuses == [0, 0, 0, 0]
    (job,) = listener_jobs(sessions)
    assert (job.total, job.resent) == (2, 2)
    with session_scope(sessions) as session:
        first, second = session.execute(select(Image.id, Image.notes).where(Image.job_id == job.id).order_by(Image.id))
        assert session.get(Job, job.id).to_dict()["resent"] == 2
    assert f"same SOP Instance UID as image {first.id}, different pixels" in second.notes
    assert first.notes is None or "same SOP Instance UID" not in first.notes


def test_the_listener_process_refuses_to_start_exposed_without_an_allow_list(tmp_path: Path) -> None:
    """What compose runs (`python -m listener` on 0.0.0.0): with no allow-list it exits at once, saying why."""
    env = services.service_env(
        {
            "RADBATCH_HOME": str(tmp_path),
            "RADBATCH_SECRET_KEY": "exposed",
            "RADBATCH_DICOM_HOST": "0.0.0.0",
            "RADBATCH_DICOM_PORT": str(services.free_port()),
        }
    )
    run = subprocess.run(
        [sys.executable, "-m", "listener"], cwd=services.REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2 and "set RADBATCH_DICOM_ALLOWED_AETS" in run.stderr, run.stderr[-2000:]
