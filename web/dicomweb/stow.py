"""STOW-RS: `POST /dicomweb/studies` with `multipart/related; type="application/dicom"`, one instance per part.

One request becomes one job (closed, its images queued), stored through the one ingest path like every upload.
The answer is the PS3.18 store-instances response (`application/dicom+json`): ReferencedSOPSequence for the
instances stored, FailedSOPSequence (with FailureReason) for those refused; 200 if every instance was stored,
202 if some were, 409 if none was. `Location` names the job in the REST API.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from io import BytesIO

from flask import Response, abort, current_app, g, request, url_for
from pydicom.dataset import Dataset

from db.jobs import create_job, refresh_job
from db.models import Image, ImageStatus
from dicomio.instances import parse_instance
from ingest import (
    Incoming,
    QueueUnavailable,
    discarded_unless_committed,
    instance_path,
    queue_pending,
    sync_stored,
)
from web.api.errors import add_files_or_507
from web.audit import audit
from web.dicomweb import bp
from web.dicomweb.multipart import MultipartError, Part, split_parts
from web.extensions import celery_client, get_db, get_settings

logger = logging.getLogger(__name__)
DICOM = "application/dicom"
CANNOT_UNDERSTAND = 0xC000  # FailureReason: the instance was refused (its row in the job says why)


def _parts() -> list[Part]:
    if request.mimetype != "multipart/related":
        abort(415, f'send multipart/related; type="{DICOM}" (got {request.mimetype or "no Content-Type"})')
    declared = request.mimetype_params.get("type", DICOM).strip('"').lower()
    if declared != DICOM:
        abort(415, f'only type="{DICOM}" parts are accepted (got type="{declared}"); send Part 10 files')
    boundary = request.mimetype_params.get("boundary")
    if not boundary:
        abort(400, "the Content-Type has no boundary parameter")
    try:
        parts = split_parts(request.get_data(cache=False), boundary.strip('"'))
    except MultipartError as error:
        abort(400, f"malformed multipart body: {error}")
    if not parts:
        abort(400, "the request holds no instance")
    return parts


def _referenced(sop_class: str, sop_instance: str, failure: int | None = None) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class or None
    item.ReferencedSOPInstanceUID = sop_instance or None
    if failure is not None:
        item.FailureReason = failure
    return item


def _store(files: list[Incoming], name: str) -> tuple[int, list[Image]]:
    db, settings = get_db(), get_settings()
    job = create_job(db, g.user, name, is_open=False)
    images = add_files_or_507(db, job.id, files, settings)
    with discarded_unless_committed(db, images, settings.upload_dir):
        sync_stored(images, settings.upload_dir)
        refresh_job(db, job.id)
        audit("job.create", job.id, files=len(images))
        db.commit()
    try:
        queue_pending(db, celery_client(), job.id, settings.batch_size, full_batches_only=False)
    except QueueUnavailable as error:  # stored and committed; the recovery sweep sends them
        logger.warning("STOW-RS job %s: %s", job.id, error)
    return job.id, images


@bp.post("/studies")
def store_instances() -> Response:
    files: list[Incoming] = []
    identities: list[tuple[str, str]] = []
    failures: list[Dataset] = []
    for index, part in enumerate(_parts()):
        instance = parse_instance(part.content)  # the one parse: ingest stores what it made of the part
        sop_class, sop_instance, study = instance.identity
        if part.content_type not in ("", DICOM):
            failures.append(_referenced(sop_class, sop_instance, CANNOT_UNDERSTAND))
            continue
        path = instance_path(study, sop_instance) if sop_instance else f"part-{index + 1}.dcm"
        if sop_instance and (sop_class, sop_instance) in identities:
            continue  # the same instance twice in one request is stored once
        files.append(Incoming(path=path, stream=BytesIO(part.content), parsed=instance.parsed))
        identities.append((sop_class, sop_instance))
    started = datetime.now(timezone.utc)
    job_id, images = _store(files, f"STOW-RS from {g.user.username} at {started:%Y-%m-%d %H:%M:%S} UTC")
    referenced = []
    by_path = {image.path: image for image in images}
    for incoming, (sop_class, sop_instance) in zip(files, identities):
        image = by_path.get(incoming.path)
        if image is None or image.status == ImageStatus.failed:  # no row: a DICOMDIR, an index and not an image
            failures.append(_referenced(sop_class, sop_instance, CANNOT_UNDERSTAND))
        else:
            referenced.append(_referenced(sop_class, sop_instance))
    body = Dataset()
    if referenced:
        body.ReferencedSOPSequence = referenced
    if failures:
        body.FailedSOPSequence = failures
    stored, refused = len(referenced), len(failures)
    status = 200 if not refused else (202 if stored else 409)
    logger.info("STOW-RS job %s: %d instances stored, %d refused", job_id, stored, refused)
    response = current_app.response_class(body.to_json(), status=status, mimetype="application/dicom+json")
    response.headers["Location"] = url_for("api.get_job", job_id=job_id)
    return response
