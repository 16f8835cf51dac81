"""Forward an image's DICOM SR to RADBATCH_DICOM_FORWARD: build it from the stored file and the predictions,
send it by C-STORE, retried with backoff.

Runs in the forwarding worker (`worker.forwarder`: its own process, no models), never in a batch: a slow or
unreachable destination costs predictions nothing. Only images stored as DICOM are forwarded (the SR needs the
source's UIDs). The SR's SOP Instance UID is derived from the source and the model versions, so a repeated
delivery replaces rather than duplicates it at the destination.
"""

from __future__ import annotations

import logging
import os
from io import BytesIO
from pathlib import Path

from celery import shared_task
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from broker import FORWARD_TASK
from db.models import Image, ImageStatus, Prediction
from db.session import make_engine, make_session_factory
from dicomio.forward import ForwardError, c_store, parse_destination
from dicomio.sr import build_sr, sr_bytes
from settings import Settings

log = logging.getLogger(__name__)
MODEL_ORDER = {"cnn": 0, "unet": 1, "ensemble": 9}
_state: dict[str, object] = {}


def image_sr(session: Session, image_id: int, upload_dir: Path) -> Dataset | None:
    """The SR of a predicted DICOM image, read back as a Part 10 data set; None if there is nothing to report (not
    predicted, not DICOM, or its file is gone)."""
    image = session.get(Image, image_id)
    if image is None or image.status != ImageStatus.done or not (image.stored_name or "").endswith(".dcm"):
        return None
    try:
        source = dcmread(upload_dir / image.stored_name, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError) as error:
        log.warning("image %d: its stored DICOM file cannot be read (%s); no SR forwarded", image_id, error)
        return None
    predictions = session.scalars(select(Prediction).where(Prediction.image_id == image_id)).all()
    results = [
        (p.model_name, p.model_version, p.probability, p.label, p.threshold)
        for p in sorted(predictions, key=lambda p: (MODEL_ORDER.get(p.model_name, 5), p.model_name))
    ]
    if not results:
        return None
    return dcmread(BytesIO(sr_bytes(build_sr(source, results))))


def forward_image(sessions: sessionmaker[Session], settings: Settings, image_id: int) -> str:
    """Send the image's SR; returns what happened; raises ForwardError when the destination did not take it."""
    destination = parse_destination(settings.dicom_forward)
    with sessions() as session:
        sr = image_sr(session, image_id, settings.upload_dir)
    if sr is None:
        return "nothing to forward"
    c_store(sr, destination, settings.dicom_aet)
    log.info("image %d: SR %s sent to %s", image_id, sr.SOPInstanceUID, destination)
    return "sent"


def _sessions() -> tuple[Settings, sessionmaker[Session]]:
    """This process's settings and session factory (an engine must not cross a fork)."""
    if _state.get("pid") != os.getpid():
        settings = Settings.from_env()
        sessions = make_session_factory(make_engine(settings.database_url))
        _state.update(pid=os.getpid(), settings=settings, sessions=sessions)
    return _state["settings"], _state["sessions"]  # type: ignore[return-value]


@shared_task(
    name=FORWARD_TASK,
    autoretry_for=(ForwardError, OperationalError),
    retry_backoff=5,  # 5, 10, 20 ... s
    retry_backoff_max=300,
    retry_jitter=False,
    max_retries=8,  # about 15 minutes in all, then the failure is logged
    time_limit=120,
    ignore_result=True,
)
def forward_sr(image_id: int) -> str:
    settings, sessions = _sessions()
    return forward_image(sessions, settings, int(image_id))
