"""Forwarding SRs by C-STORE against real pynetdicom SCPs: success, an unreachable destination and a failure
status (both raise ForwardError, which the Celery task retries with backoff), and `forward_image` on a real
database, which sends only what has predictions and a stored DICOM file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, AllStoragePresentationContexts, evt

from db.models import Image, ImageStatus, Job, Prediction
from db.session import make_engine, make_session_factory, session_scope
from db.setup import make_dirs, migrate
from db.users import create_user
from dicomio.forward import Destination, ForwardError, c_store
from settings import Settings
from tests import services
from tests.dicom_network_helpers import Destination as Receiver
from tests.dicom_network_helpers import write_dicom_folder
from worker.forwarding import forward_image
from worker.tasks.forward import forward_sr


@pytest.fixture
def receiver(tmp_path: Path):
    destination = Receiver(tmp_path / "received")
    yield destination
    destination.stop()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    (path,) = write_dicom_folder(tmp_path / "source", 1, studies=1).values()
    return path


def test_c_store_success_and_failures(receiver: Receiver, source: Path) -> None:
    dataset = pydicom.dcmread(source)
    assert c_store(dataset, Destination("FORWARDTO", "127.0.0.1", receiver.port), "RADBATCH") == 0
    assert [pydicom.dcmread(p).SOPInstanceUID for p in receiver.received] == [dataset.SOPInstanceUID]
    with pytest.raises(ForwardError, match="could not be reached"):
        c_store(dataset, Destination("NOBODY", "127.0.0.1", services.free_port()), "RADBATCH", timeout_s=2)
    full = AE(ae_title="FULL")
    full.supported_contexts = AllStoragePresentationContexts
    port = services.free_port()
    server = full.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda e: 0xA700)])
    try:
        with pytest.raises(ForwardError, match="status 0xA700"):
            c_store(dataset, Destination("FULL", "127.0.0.1", port), "RADBATCH")
    finally:
        server.shutdown()


def test_the_task_retries_forward_errors_with_backoff() -> None:
    assert ForwardError in forward_sr.autoretry_for and forward_sr.max_retries >= 5
    assert forward_sr.retry_backoff and forward_sr.retry_backoff_max <= 600


def test_forward_image_sends_the_sr_of_a_predicted_dicom(tmp_path: Path, receiver: Receiver, source: Path) -> None:
    settings = Settings(
        home=tmp_path / "home",
        database_url=f"sqlite:///{tmp_path / 'forward.db'}",
        secret_key="forward",
        dicom_forward=receiver.address,
    )
    make_dirs(settings)
    migrate(settings.database_url)
    shutil.copyfile(source, settings.upload_dir / "a.dcm")
    (settings.upload_dir / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as session:
        job = Job(user_id=create_user(session, "owner", "owner password").id, name="forward")
        session.add(job)
        session.flush()
        images = [
            Image(job_id=job.id, filename=name, path=name, stored_name=name, status=ImageStatus.done)
            for name in ("a.dcm", "b.png")
        ]
        session.add_all(images)
        session.flush()
        for image in images:
            for model, probability in (("cnn", 0.7), ("unet", 0.4), ("ensemble", 0.55)):
                label = "disease" if probability >= 0.5 else "healthy"
                session.add(
                    Prediction(
                        image_id=image.id,
                        model_name=model,
                        headline=model == "ensemble",  # the worker marks the headline model's row
                        model_version=f"{model}-1",
                        probability=probability,
                        label=label,
                        threshold=0.5,
                    )
                )
        dicom_id, png_id = images[0].id, images[1].id
    try:
        assert forward_image(sessions, settings, png_id) == "nothing to forward"
        assert forward_image(sessions, settings, dicom_id) == "sent"
    finally:
        engine.dispose()
    (report,) = [pydicom.dcmread(p) for p in receiver.received]
    evidence = report.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence
    assert evidence[0].ReferencedSOPInstanceUID == pydicom.dcmread(source).SOPInstanceUID
    assert report.VerificationFlag == "UNVERIFIED"
