"""The DICOM listener in this process over real DICOM networking (pynetdicom SCU), with a real SQLite database
and Redis: C-ECHO, the allow-list, out-of-resources statuses on disk and database failures, one job per
association, and a job cut off by a dead listener continued without duplicates. The listener as a process,
killed with SIGKILL, is tested in test_dicom_network.py."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import func, select

from broker import make_celery
from db.models import Image, Job
from db.session import make_engine, make_session_factory, session_scope
from dicomio.forward import parse_destination
from listener import jobs
from listener.scp import Listener
from settings import Settings
from tests import services
from tests.dicom_network_helpers import scu_association
from web.dicomweb.multipart import MultipartError, split_parts

OUT_OF_RESOURCES = 0xA700


def send(port: int, files: list[Path], calling_aet: str = "MODALITY") -> list[int]:
    assoc = scu_association(port, calling_aet)
    assert assoc.is_established
    statuses = [assoc.send_c_store(pydicom.dcmread(path)).Status for path in files]
    assoc.release()
    return statuses


def listener_jobs(sessions) -> list[Job]:
    """The jobs, once every association's job is closed (the listener closes it just after the release)."""

    def all_closed() -> list[Job] | None:
        with sessions() as session:
            found = list(session.scalars(select(Job).order_by(Job.id)))
        return found if found and not any(job.is_open for job in found) else None

    return services.wait_for(all_closed, 10, "the listener's jobs closed")


def image_count(sessions, job_id: int) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Image).where(Image.job_id == job_id))


def test_echo_and_the_allow_list(running: Listener) -> None:
    assoc = scu_association(running.settings.dicom_port, "OTHER")
    assert assoc.is_established and assoc.send_c_echo().Status == 0
    assoc.release()
    intruder = scu_association(running.settings.dicom_port, "INTRUDER")
    assert intruder.is_rejected and not intruder.is_established


def test_one_job_per_association_closed_on_release(running: Listener, sessions, dicom_files: list[Path]) -> None:
    port = running.settings.dicom_port
    assert send(port, dicom_files[:3]) == [0, 0, 0]
    assert send(port, dicom_files[3:5], calling_aet="OTHER") == [0, 0]
    first, second = listener_jobs(sessions)
    assert jobs.calling_aet_of(first.name) == "MODALITY" and jobs.calling_aet_of(second.name) == "OTHER"
    assert (first.total, second.total) == (3, 2)
    with sessions() as session:
        paths = set(session.scalars(select(Image.path).where(Image.job_id == first.id)))
    assert paths == {
        f"{pydicom.dcmread(p).StudyInstanceUID}/{pydicom.dcmread(p).SOPInstanceUID}.dcm" for p in dicom_files[:3]
    }


def test_disk_failure_is_out_of_resources_and_keeps_nothing(
    running: Listener, sessions, dicom_files: list[Path]
) -> None:
    uploads = running.settings.upload_dir
    shutil.rmtree(uploads)
    uploads.write_bytes(b"not a folder")  # the upload folder cannot be made: every store fails
    assoc = scu_association(running.settings.dicom_port, "MODALITY")
    assert assoc.send_c_store(pydicom.dcmread(dicom_files[0])).Status == OUT_OF_RESOURCES
    uploads.unlink()
    assert assoc.send_c_store(pydicom.dcmread(dicom_files[0])).Status == 0  # the sender's retry is stored once
    assoc.release()
    (job,) = listener_jobs(sessions)
    assert job.total == 1 and len(list(uploads.iterdir())) == 1


def test_database_failure_is_out_of_resources(running: Listener, sessions, dicom_files: list[Path]) -> None:
    assoc = scu_association(running.settings.dicom_port, "MODALITY")
    assert assoc.send_c_store(pydicom.dcmread(dicom_files[0])).Status == 0
    unreachable = make_engine(f"postgresql+psycopg://nobody@127.0.0.1:{services.free_port()}/none")
    running.sessions = make_session_factory(unreachable)
    assert assoc.send_c_store(pydicom.dcmread(dicom_files[1])).Status == OUT_OF_RESOURCES
    running.sessions = sessions
    assert assoc.send_c_store(pydicom.dcmread(dicom_files[1])).Status == 0
    assoc.release()
    (job,) = listener_jobs(sessions)
    assert job.total == 2 and len(list(running.settings.upload_dir.iterdir())) == 2


def test_a_cut_off_job_is_continued_without_duplicates(
    listener_settings: Settings, sessions, dicom_files: list[Path]
) -> None:
    """A job left open by a listener that died: the next association from its AE title continues it, and the
    instances it already holds are acknowledged, not stored again."""
    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    with session_scope(sessions) as session:
        user = jobs.listener_user(session, "pacs")
        cut_off = jobs.start_job(session, user, "MODALITY", started)
    assert jobs.job_name("MODALITY", started) == "DICOM from MODALITY at 2026-01-02 03:04:05 UTC"
    listener = Listener(listener_settings, sessions, make_celery(listener_settings))
    listener.serve(block=False)
    try:
        assert send(listener_settings.dicom_port, dicom_files[:2]) == [0, 0]  # the dead listener stored these
        assert [job.id for job in listener_jobs(sessions)] == [cut_off]
        with session_scope(sessions) as session:  # ... and then died, leaving the job open
            session.get(Job, cut_off).is_open = True
        listener.shutdown()
        listener = Listener(listener_settings, sessions, make_celery(listener_settings))
        listener.serve(block=False)
        assert send(listener_settings.dicom_port, dicom_files) == [0] * len(dicom_files)  # the sender sends again
    finally:
        listener.shutdown()
    (job,) = listener_jobs(sessions)
    assert job.id == cut_off and image_count(sessions, cut_off) == len(dicom_files)


def test_forward_destination_setting() -> None:
    destination = parse_destination("PACS@10.0.0.5:104")
    assert (destination.ae_title, destination.host, destination.port) == ("PACS", "10.0.0.5", 104)
    for bad in ("PACS@10.0.0.5", "10.0.0.5:104", "PACS@host:0", "A_TITLE_LONGER_THAN_16@h:1"):
        with pytest.raises(ValueError, match="AET@host:port"):
            parse_destination(bad)


def test_multipart_related_parts() -> None:
    body = b"--b1\r\nContent-Type: application/dicom\r\n\r\nfirst\r\n--b1\r\nContent-Type: x\r\n\r\n2\r\n--b1--\r\n"
    first, second = split_parts(body, "b1")
    assert (first.content_type, first.content, second.content) == ("application/dicom", b"first", b"2")
    with pytest.raises(MultipartError, match="closing boundary"):
        split_parts(body[: body.index(b"--b1--")], "b1")
    with pytest.raises(MultipartError, match="no part"):
        split_parts(b"nothing here", "b1")
