"""A finished study's results to clinical systems beyond PACS: its FHIR R4 Bundle POSTed to RADBATCH_FHIR_FORWARD
(a FHIR server's base URL, as a transaction) and its HL7 v2 ORU^R01 sent to RADBATCH_HL7_FORWARD (host:port) over
MLLP with the ACK checked (interop/). The tasks (`worker.tasks.fhir`, `worker.tasks.hl7`) retry with backoff; like
the SR, a study goes out once none of its images in the job is still waiting (`worker.forwarding.finished_study`).
"""

from __future__ import annotations

import logging
from typing import Any

import requests
from sqlalchemy.orm import Session, sessionmaker

from db.studies import summarise_many
from dicomio.forward import ForwardError
from interop import hl7
from interop.fhir import study_bundle
from settings import Settings
from worker.forwarding import WAITING, finished_study

log = logging.getLogger(__name__)
TIMEOUT_S = 10


def study_summary(session: Session, image_id: int) -> dict[str, Any] | str | None:
    """The study summary (db/studies.py) of a finished study, or WAITING, or None (nothing to send)."""
    images = finished_study(session, image_id)
    if images is None or images == WAITING or not images[0].study_instance_uid:
        return None if images != WAITING else WAITING
    (summary,) = summarise_many(session, [images])
    return summary


def post_fhir(bundle: dict[str, Any], base_url: str) -> int:
    """POST a transaction Bundle to a FHIR server's base URL; ForwardError unless it answers 2xx."""
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    try:
        response = requests.post(base_url.rstrip("/"), json=bundle, headers=headers, timeout=TIMEOUT_S)
    except requests.RequestException as error:
        raise ForwardError(f"FHIR server {base_url} could not be reached: {type(error).__name__}") from None
    if not response.ok:
        raise ForwardError(f"FHIR server {base_url} answered {response.status_code}: {response.text[:200]}")
    return response.status_code


def forward_fhir(sessions: sessionmaker[Session], settings: Settings, image_id: int, amended: bool = False) -> str:
    with sessions() as session:
        summary = study_summary(session, image_id)
    if not isinstance(summary, dict):
        return summary or "nothing to forward"
    status = post_fhir(study_bundle(summary, amended), settings.fhir_forward)
    log.info("study %s: FHIR bundle posted (%d)", summary["study_instance_uid"], status)
    return "sent"


def forward_hl7(sessions: sessionmaker[Session], settings: Settings, image_id: int, amended: bool = False) -> str:
    with sessions() as session:
        summary = study_summary(session, image_id)
    if not isinstance(summary, dict):
        return summary or "nothing to forward"
    try:
        ack = hl7.send(hl7.oru_message(summary, amended), settings.hl7_forward, TIMEOUT_S)
    except hl7.Hl7Error as error:
        raise ForwardError(str(error)) from None
    log.info("study %s: ORU^R01 acknowledged (%s)", summary["study_instance_uid"], ack)
    return "sent"
