"""STOW-RS: `POST /dicomweb/studies` with `multipart/related; type="application/dicom"`, one instance per part.

One request becomes one job (closed, its images queued), stored through the one ingest path like every upload.
The answer is the PS3.18 store-instances response (`application/dicom+json`): ReferencedSOPSequence for the
instances stored, FailedSOPSequence (with FailureReason) for those refused; 200 if every instance was stored,
202 if some were, 409 if none was, each refusal's reason also in a `Warning: 299` header. `Location` names the
job in the REST API.

The limits are the upload API's: the request body (MAX_CONTENT_LENGTH, a 413) and its parts (MAX_FORM_PARTS,
counted before any part is read, a 413). Parts that are empty, not DICOM (by content) or not
`application/dicom`, and instances whose SOP Class, SOP Instance or Study Instance UID is not a valid UID
(FailureReason 0xA900), are refused before any row is made; when nothing is left, no job is made either. The
same instance twice in one request is stored once and counted on the job (`resent`); another instance under the
same SOP Instance UID is kept as its own image, with a note.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from io import BytesIO

from flask import Response, abort, current_app, g, request, url_for
from pydicom.dataset import Dataset

from db.jobs import create_job
from db.models import Image, ImageStatus
from dicomio.instances import parse_instance
from dicomio.uids import identity_problem, pixel_bytes
from formats import DETECTION_BYTES
from ingest import (
    Incoming,
    count_resent,
    instance_path,
    note_namesake,
    queue_received,
)
from ingest.files import refusal
from web.api.errors import receive_or_507
from web.audit import audit
from web.dicomweb import bp
from web.dicomweb.multipart import MultipartError, Part, TooManyParts, split_parts
from web.extensions import celery_client, get_db, get_settings

logger = logging.getLogger(__name__)
DICOM = "application/dicom"
CANNOT_UNDERSTAND = 0xC000  # FailureReason: the instance was refused (its row in the job says why)
BAD_UID = 0xA900  # FailureReason: "data set does not match SOP class"; here, a UID that is not one


@dataclass
class Received:
    """One part to store: its identity, where it goes, and the first part it shares a SOP Instance UID with."""

    sop_class: str
    sop_instance: str
    incoming: Incoming
    data: bytes
    namesake_of: Received | None = None


def _parts() -> list[Part]:
    if request.mimetype != "multipart/related":
        abort(415, f'send multipart/related; type="{DICOM}" (got {request.mimetype or "no Content-Type"})')
    declared = request.mimetype_params.get("type", DICOM).strip('"').lower()
    if declared != DICOM:
        abort(415, f'only type="{DICOM}" parts are accepted (got type="{declared}"); send Part 10 files')
    boundary = request.mimetype_params.get("boundary")
    if not boundary:
        abort(400, "the Content-Type has no boundary parameter")
    limit = current_app.config["MAX_FORM_PARTS"]
    try:
        parts = split_parts(request.get_data(cache=False), boundary.strip('"'), max_parts=limit)
    except TooManyParts:
        abort(413, f"more than {limit} parts in one request; send at most {limit} instances per request")
    except MultipartError as error:
        abort(400, f"malformed multipart body: {error}")
    if not parts:
        abort(400, "the request holds no instance")
    return parts


def _referenced(sop_class: str, sop_instance: str, failure: int | None = None) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class if failure != BAD_UID and sop_class else None
    item.ReferencedSOPInstanceUID = sop_instance if failure != BAD_UID and sop_instance else None
    if failure is not None:
        item.FailureReason = failure
    return item


def _sort(parts: list[Part], max_bytes: int) -> tuple[list[Received], list[Dataset], list[str], int]:
    """The parts to store, the refused ones (no row), why they were refused, and how many were repeats."""
    received: list[Received] = []
    by_uid: dict[str, list[Received]] = {}
    seen: set[bytes] = set()
    failures: list[Dataset] = []
    reasons: list[str] = []
    repeats = 0
    for number, part in enumerate(parts, start=1):
        why = refusal(".dcm", part.content[:DETECTION_BYTES], len(part.content), max_bytes)
        if why is None and part.content_type not in ("", DICOM):
            why = f"its Content-Type is {part.content_type[:60]}, not {DICOM}"
        if why is not None:
            failures.append(_referenced("", "", CANNOT_UNDERSTAND))
            reasons.append(f"part {number}: {why}")
            continue
        instance = parse_instance(part.content)  # the one parse: ingest stores what it made of the part
        sop_class, sop_instance, study = identity = instance.identity
        problem = identity_problem(identity)
        if problem is not None:
            failures.append(_referenced(sop_class, sop_instance, BAD_UID))
            reasons.append(f"part {number}: {problem}")
            continue
        digest = hashlib.sha256(part.content).digest()
        if digest in seen:
            repeats += 1  # the same instance twice in one request is stored once
            continue
        seen.add(digest)
        namesakes = by_uid.setdefault(sop_instance, [])
        path = instance_path(study, sop_instance, copy=len(namesakes) + 1)
        incoming = Incoming(path=path, stream=BytesIO(part.content), parsed=instance.parsed)
        item = Received(sop_class, sop_instance, incoming, part.content)
        item.namesake_of = namesakes[0] if namesakes else None
        namesakes.append(item)
        received.append(item)
    return received, failures, reasons, repeats


def _store(received: list[Received], repeats: int, name: str) -> tuple[int, list[Image | None]]:
    db, settings = get_db(), get_settings()
    job = create_job(db, g.user, name, is_open=False)

    def notes(images: list[Image]) -> None:
        by_path = {image.path: image for image in images}
        for item in received:
            image = by_path.get(item.incoming.path)
            first = by_path.get(item.namesake_of.incoming.path) if item.namesake_of else None
            if image is not None and first is not None:
                note_namesake(image, first.id, pixel_bytes(item.namesake_of.data), item.data)
        if repeats:
            count_resent(db, job.id, repeats)
            logger.info("STOW-RS job %s: %d instances sent twice in the request, stored once", job.id, repeats)
        audit("job.create", job.id, files=len(images))

    images = receive_or_507(db, settings, job.id, [item.incoming for item in received], before_commit=notes)
    by_path = {image.path: image for image in images}
    queue_received(db, celery_client(), job.id, settings.batch_size, full_batches_only=False)  # else: the sweep
    return job.id, [by_path.get(item.incoming.path) for item in received]


def _warning(reasons: list[str]) -> str:
    shown = "; ".join(reasons[:5]) + (f"; and {len(reasons) - 5} more" if len(reasons) > 5 else "")
    return '299 radbatch "' + shown.replace('"', "'")[:1000] + '"'


@bp.post("/studies")
def store_instances() -> Response:
    received, failures, reasons, repeats = _sort(_parts(), get_settings().max_file_mb * 2**20)
    referenced = []
    job_id = None
    if received:
        started = datetime.now(timezone.utc)
        job_id, stored = _store(received, repeats, f"STOW-RS from {g.user.username} at {started:%Y-%m-%d %H:%M:%S} UTC")
        for item, image in zip(received, stored):
            if image is None or image.status == ImageStatus.failed:  # no row: a DICOMDIR, an index, not an image
                failures.append(_referenced(item.sop_class, item.sop_instance, CANNOT_UNDERSTAND))
                reasons.append(f"{item.incoming.path}: {image.error if image is not None else 'a DICOMDIR'}")
            else:
                referenced.append(_referenced(item.sop_class, item.sop_instance))
    body = Dataset()
    if referenced:
        body.ReferencedSOPSequence = referenced
    if failures:
        body.FailedSOPSequence = failures
    stored_count, refused = len(referenced), len(failures)
    status = 200 if not refused else (202 if stored_count else 409)
    logger.info("STOW-RS job %s: %d instances stored, %d refused", job_id, stored_count, refused)
    response = current_app.response_class(body.to_json(), status=status, mimetype="application/dicom+json")
    if job_id is not None:
        response.headers["Location"] = url_for("api.get_job", job_id=job_id)
    if reasons:
        response.headers["Warning"] = _warning(reasons)
    return response
