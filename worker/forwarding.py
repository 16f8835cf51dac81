"""Forward an image's DICOM SR to RADBATCH_DICOM_FORWARD: build it from the stored file and the predictions,
send it by C-STORE (the task, retried with backoff, is `worker.tasks.forward`).

Runs in the forwarding worker (`worker.forwarder`: its own process, no models), never in a batch: a slow or
unreachable destination costs predictions nothing. Only images stored as DICOM are forwarded (the SR needs the
source's UIDs). The SR's SOP Instance UID is derived from the source and the model versions, so a repeated
delivery replaces rather than duplicates it at the destination.
"""

from __future__ import annotations

import logging

from pydicom.dataset import Dataset
from sqlalchemy.orm import Session, sessionmaker

from db.models import Image, ImageStatus
from dicomio.forward import c_store, parse_destination
from dicomio.read import DicomError
from dicomio.sr import image_report
from settings import Settings
from storage import names, storage_for

log = logging.getLogger(__name__)


def image_sr(session: Session, image_id: int, settings: Settings) -> Dataset | None:
    """The SR of a predicted DICOM image; None if there is nothing to report (not predicted, not DICOM, or its
    file is gone or unreadable)."""
    image = session.get(Image, image_id)
    if image is None or image.status != ImageStatus.done or not (image.stored_name or "").endswith(".dcm"):
        return None
    try:
        with storage_for(settings).open(names.upload(image.stored_name)) as stored:
            return image_report(stored, image.predictions)
    except (FileNotFoundError, DicomError) as error:
        log.warning("image %d: no SR forwarded: %s", image_id, error)
        return None


def forward_image(sessions: sessionmaker[Session], settings: Settings, image_id: int) -> str:
    """Send the image's SR; returns what happened; raises ForwardError when the destination did not take it."""
    destination = parse_destination(settings.dicom_forward)
    with sessions() as session:
        sr = image_sr(session, image_id, settings)
    if sr is None:
        return "nothing to forward"
    c_store(sr, destination, settings.dicom_aet)
    log.info("image %d: SR %s sent to %s", image_id, sr.SOPInstanceUID, destination)
    return "sent"
