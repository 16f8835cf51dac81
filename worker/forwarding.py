"""Forward a study's DICOM SR (IHE AIR, dicomio/sr.py) to RADBATCH_DICOM_FORWARD: built from the stored files and
the predictions of the study's images in the job, sent by C-STORE (the task, retried with backoff, is
`worker.tasks.forward`).

Runs in the forwarding worker (`worker.forwarder`: its own process, no models), never in a batch: a slow or
unreachable destination costs predictions nothing. The worker queues one task per study a batch finished images of
(`one_per_study`); the report goes out once none of the study's images in the job is still waiting, so the batch
that finishes a study sends it. Only images stored as DICOM are forwarded (the SR needs the source's UIDs). The SR's
SOP Instance UID is derived from the study, its images and the model versions, so a repeated delivery replaces
rather than duplicates it at the destination.
"""

from __future__ import annotations

import logging

from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Image, ImageStatus, iso, split_notes
from db.reviews import latest_reviews
from db.studies import is_frontal, job_study_images, summarise_many
from dicomio.forward import c_store, parse_destination
from dicomio.read import DicomError, read_header
from dicomio.sr import (
    MANUFACTURER,
    ImageEvidence,
    ModelResult,
    StudyFinding,
    StudyResult,
    build_study_sr,
    checked,
    ordered_results,
)
from settings import Settings
from storage import Storage, names, storage_for

log = logging.getLogger(__name__)
WAITING = "waiting for the rest of the study"


def one_per_study(session: Session, image_ids: list[int]) -> list[int]:
    """The first of these images for each (job, study); images without a study stand for themselves."""
    rows = session.execute(select(Image.id, Image.job_id, Image.study_instance_uid).where(Image.id.in_(image_ids)))
    first: dict[tuple, int] = {}
    for image_id, job_id, study in sorted(rows):
        first.setdefault((job_id, study or f"image-{image_id}"), image_id)
    return sorted(first.values())


def finished_study(session: Session, image_id: int) -> list[Image] | str | None:
    """The predicted DICOM images of the image's study in its job; WAITING while some are not processed; None if
    there is nothing to report (the image is not predicted or not DICOM)."""
    image = session.get(Image, image_id)
    if image is None or image.status != ImageStatus.done or not (image.stored_name or "").endswith(".dcm"):
        return None
    images = job_study_images(session, image.job_id, image.study_instance_uid) if image.study_instance_uid else [image]
    if any(other.status.is_unfinished for other in images):
        return WAITING
    return [i for i in images if i.status == ImageStatus.done and (i.stored_name or "").endswith(".dcm")]


def study_sr(session: Session, image_id: int, store: Storage) -> Dataset | str | None:
    """The SR of the study of a predicted DICOM image, within its job (or WAITING, or None: `finished_study`);
    None too when the stored files are gone or unreadable."""
    done = finished_study(session, image_id)
    if done is None or done == WAITING:
        return done
    try:
        evidence = []
        for i in done:
            with store.open(names.upload(i.stored_name)) as stored:
                header = read_header(stored)
            evidence.append(ImageEvidence(header, ordered_results(i.predictions), split_notes(i.notes), is_frontal(i)))
        return checked(build_study_sr, evidence, study_result(session, done), MANUFACTURER, review_texts(session, done))
    except (FileNotFoundError, DicomError) as error:
        log.warning("image %d: no SR forwarded: %s", image_id, error)
        return None


def review_texts(session: Session, images: list[Image]) -> list[str]:
    """The newest review of the study in its job, in words for the SR (a disagreeing one makes it an amendment)."""
    review = latest_reviews(session, [images[0].job_id]).get((images[0].job_id, images[0].study_instance_uid or ""))
    if review is None:
        return []
    correction = f"; correct label {review.label}" if review.verdict == "disagree" and review.label else ""
    findings = f"; findings {', '.join(review.findings)}" if review.findings else ""
    comment = f"; comment: {review.comment}" if review.comment else ""
    return [
        f"Reviewed by {review.username} at {iso(review.created_at)}: {review.verdict}{correction}{findings}{comment}"
    ]


def study_result(session: Session, images: list[Image]) -> StudyResult | None:
    """The study-level result (db/studies.py) as the SR states it; None without a predicted frontal image."""
    (summary,) = summarise_many(session, [images])
    result = summary["result"]
    if result["probability"] is None:
        return None
    headline = ModelResult(
        result["model"], result["model_version"], result["probability"], result["label"], result["threshold"]
    )
    findings = [StudyFinding(name, f["probability"], f["threshold"]) for name, f in summary["findings"].items()]
    return StudyResult(headline, result["method"], findings)


def forward_image(sessions: sessionmaker[Session], settings: Settings, image_id: int) -> str:
    """Send the SR of the image's study; returns what happened; raises ForwardError if the destination refuses it."""
    destination = parse_destination(settings.dicom_forward)
    with sessions() as session:
        sr = study_sr(session, image_id, storage_for(settings))
    if sr is None:
        return "nothing to forward"
    if sr == WAITING:
        return WAITING
    c_store(sr, destination, settings.dicom_aet)
    log.info("image %d: study SR %s sent to %s", image_id, sr.SOPInstanceUID, destination)
    return "sent"
