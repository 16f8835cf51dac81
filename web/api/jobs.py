"""Job endpoints: create (optionally open for chunked uploads), add files, close, status, results, history, cancel."""

from __future__ import annotations

import itertools
import json
import logging
import re
from pathlib import PurePosixPath

from flask import abort, current_app, g, jsonify, request, url_for
from sqlalchemy import func, select

from db.jobs import PRIORITIES, JobFinishedError, cancel_job, create_job, job_history, refresh_job
from db.models import Image, Job, JobStatus, User
from ingest import Incoming, QueueUnavailable, clean_text, queue_pending, queue_received
from storage import names
from web.access import job_or_404, require_accepting_files
from web.api import bp
from web.api.errors import error_response, receive_or_507
from web.api.idempotency import commit_once, idempotent
from web.extensions import celery_client, get_db, get_settings
from web.notifications import register_webhook
from web.purging import purge
from web.query_args import enum_choice, flag, page_args
from web.results import parse_filter, results_page

logger = logging.getLogger(__name__)
MAX_DECLARED_BYTES = 2**53  # a held-back file's declared size: any real file is smaller
MAX_JSON_DEPTH = 4  # too_large is a list of flat objects: two levels; a little room for a clear message
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def json_depth(raw: str) -> int:
    """How deeply `raw` nests arrays and objects, found without parsing it (the parser recurses)."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", raw))
    steps = brackets.translate(str.maketrans({"[": "1", "{": "1", "]": "2", "}": "2"}))
    return max(itertools.accumulate((1 if step == "1" else -1 for step in steps), initial=0))


def _user() -> User:
    return g.user


def _incoming() -> list[Incoming]:
    """The request's files with the client's relative paths (the `paths` field, else each part's file name)."""
    uploads = request.files.getlist("files")
    paths = request.form.getlist("paths")
    if paths and len(paths) != len(uploads):
        abort(400, f"got {len(paths)} 'paths' values for {len(uploads)} files; send one per file, in order, or none")
    files = [
        Incoming(path=paths[i] if paths else (upload.filename or "unnamed"), stream=upload.stream)
        for i, upload in enumerate(uploads)
    ]
    raw = request.form.get("too_large")  # files the portal held back because they exceed the per-file limit
    if raw:
        files += _held_back(raw, room=current_app.config["MAX_FORM_PARTS"] - len(files))
    return files


def _held_back(raw: str, room: int) -> list[Incoming]:
    """The `too_large` field: a JSON list of {"path": str, "size": bytes}, at most `room` of them."""
    shape = 'too_large must be a JSON list of {"path": "...", "size": <bytes>} objects'
    if json_depth(raw) > MAX_JSON_DEPTH:
        abort(400, f"{shape}; it nests arrays or objects more than {MAX_JSON_DEPTH} deep")
    try:
        items = json.loads(raw)
    except ValueError as error:
        abort(400, f"{shape} ({error})")
    if not isinstance(items, list):
        abort(400, shape)
    if len(items) > room:
        limit = current_app.config["MAX_FORM_PARTS"]
        abort(400, f"too_large lists {len(items)} files; one request may add at most {limit} files in all")
    held_back = []
    for item in items:
        size = item.get("size") if isinstance(item, dict) else None
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            abort(400, shape)
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size < MAX_DECLARED_BYTES:
            abort(400, f"too_large: size must be a whole number of bytes, 0 to {MAX_DECLARED_BYTES - 1}; got {size!r}")
        held_back.append(Incoming(path=item["path"], stream=None, declared_size=size))
    return held_back


def _store(job: Job, files: list[Incoming], body: dict, status: int, location: str | None = None) -> None:
    """Store the files and commit their rows (with the request's Idempotency-Key and `body`, if it has one).

    On any failure no file of this request is left behind; a full disk is a 507.
    """
    db = get_db()

    def commit(images: list[Image]) -> None:
        commit_once(db, job.to_dict() | body, status, location, _stored_names(images), job.id)

    receive_or_507(db, get_settings(), job.id, files, commit=commit)


def _default_name(files: list[Incoming]) -> str:
    if not files:
        return "untitled"
    parts = PurePosixPath(files[0].path.replace("\\", "/")).parts
    return parts[0] if len(parts) > 1 else f"{len(files)} file{'s' if len(files) != 1 else ''}"


def _queue(job_id: int, full_batches_only: bool) -> int:
    batch_size = get_settings().batch_size
    return queue_pending(get_db(), celery_client(), job_id, batch_size, full_batches_only)


def _queue_quietly(job_id: int, full_batches_only: bool) -> str | None:
    """Send what is ready; an unreachable queue must not fail an upload whose files are already stored."""
    error = queue_received(get_db(), celery_client(), job_id, get_settings().batch_size, full_batches_only)
    return None if error is None else f"{error}; POST /api/v1/jobs/{job_id}/close to send them again"


def _stored_names(images: list[Image]) -> list[str]:
    return [names.upload(image.stored_name) for image in images if image.stored_name]


def _check_open_jobs(db) -> None:
    """RADBATCH_MAX_OPEN_JOBS_PER_USER: a 429 once the user has that many jobs still taking files."""
    limit = get_settings().max_open_jobs_per_user
    still_open = (Job.user_id == _user().id) & Job.is_open & (Job.status != JobStatus.cancelled)
    held = db.scalar(select(func.count(Job.id)).where(still_open)) or 0
    if limit and held >= limit:
        abort(
            429,
            f"you have {held} open jobs, the most one user may have; close them (POST /api/v1/jobs/<id>/close) "
            "or cancel them before opening another",
        )


@bp.post("/jobs")
@idempotent
def create():
    files = _incoming()
    is_open = flag(request.form, "open")
    if not files and not is_open:
        abort(400, "send at least one file in the repeated 'files' field, or open=true to add files in chunks later")
    db = get_db()
    if is_open:
        _check_open_jobs(db)
    heatmaps = flag(request.form, "heatmaps") if "heatmaps" in request.form else get_settings().heatmaps
    name = clean_text(request.form.get("name", "")).strip() or _default_name(files)
    priority = request.form.get("priority", "normal").strip().lower() or "normal"
    if priority not in PRIORITIES:
        abort(400, f"priority must be one of {', '.join(PRIORITIES)}; got {priority[:20]!r}")
    job = create_job(db, _user(), name, is_open, heatmaps, priority)
    webhook = register_webhook(db, job.id, request.form)  # before the files: a job that finishes at once notifies too
    location = url_for("api.get_job", job_id=job.id)
    _store(job, files, webhook, 201, location)
    warning = _queue_quietly(job.id, full_batches_only=is_open)
    body = job.to_dict() | webhook | ({"warning": warning} if warning else {})
    response = jsonify(body)
    response.status_code = 201
    response.headers["Location"] = location
    return response


@bp.post("/jobs/<int:job_id>/files")
@idempotent
def add(job_id: int):
    job = job_or_404(_user(), job_id)
    require_accepting_files(job)
    files = _incoming()
    if not files:
        abort(400, "send at least one file in the repeated 'files' field")
    _store(job, files, {"added": len(files)}, 200)
    warning = _queue_quietly(job.id, full_batches_only=True)  # work starts as files arrive
    return jsonify(job.to_dict() | {"added": len(files)} | ({"warning": warning} if warning else {}))


@bp.post("/jobs/<int:job_id>/close")
def close(job_id: int):
    """Stop accepting files and queue everything still pending; calling it again retries the queueing."""
    db = get_db()
    job = job_or_404(_user(), job_id)
    if job.status == JobStatus.cancelled:
        abort(409, f"job {job.id} was cancelled; there is nothing to close")
    job.is_open = False
    refresh_job(db, job.id)
    db.commit()
    try:
        _queue(job.id, full_batches_only=False)
    except QueueUnavailable as error:
        return error_response(503, f"{error}; POST /api/v1/jobs/{job.id}/close again to retry")
    return jsonify(job.to_dict())


@bp.get("/jobs/<int:job_id>")
def get_job(job_id: int):
    return jsonify(job_or_404(_user(), job_id).to_dict())


@bp.get("/jobs/<int:job_id>/results")
def results(job_id: int):
    job = job_or_404(_user(), job_id)
    page = page_args(request.args)
    rows, total = results_page(get_db(), job.id, parse_filter(request.args), page)
    return jsonify({"results": rows} | page.meta(total))


@bp.get("/jobs")
def list_jobs():
    page = page_args(request.args, default_per_page=50)
    status = enum_choice(request.args, "status", JobStatus)
    jobs, total = job_history(get_db(), _user(), status, page.per_page, page.offset)
    return jsonify({"jobs": [job.to_dict() for job in jobs]} | page.meta(total))


@bp.delete("/jobs/<int:job_id>")
def cancel(job_id: int):
    """Cancel; with ?purge=true delete the job's files and rows too (a running job is cancelled first)."""
    if flag(request.args, "purge"):
        return jsonify(purge(job_or_404(_user(), job_id)))
    db = get_db()
    try:
        job = cancel_job(db, job_or_404(_user(), job_id))
    except JobFinishedError as error:
        abort(409, str(error))
    db.commit()
    logger.info("job %s cancelled by %s", job.id, _user().username)
    return jsonify(job.to_dict())
