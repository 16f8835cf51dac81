"""Job endpoints: create (optionally open for chunked uploads), add files, close, status, results, history, cancel."""

from __future__ import annotations

import json
import logging
from pathlib import PurePosixPath

from flask import abort, g, jsonify, request, url_for

from db.models import JobStatus, User
from db.progress import refresh_job
from web.api import bp
from web.api.errors import error_response
from web.api.health import PUBLIC_ENDPOINTS
from web.auth.identity import api_user
from web.database import get_db, get_settings
from web.enqueue import QueueUnavailable, enqueue_pending
from web.jobs import (
    cancel_job,
    create_job,
    get_job_or_404,
    history,
    job_to_dict,
    parse_job_status,
    require_accepting_files,
)
from web.pagination import page_args
from web.results import parse_filter, results_page
from web.uploads import Incoming, add_files

logger = logging.getLogger(__name__)
_TRUE = ("1", "true", "yes", "on")


@bp.before_request
def authenticate() -> None:
    if request.endpoint not in PUBLIC_ENDPOINTS:
        api_user()


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
        try:
            held_back = [
                Incoming(path=str(item["path"]), stream=None, declared_size=int(item["size"]))
                for item in json.loads(raw)
            ]
        except (ValueError, TypeError, KeyError) as error:
            abort(400, f'too_large must be a JSON list of {{"path": ..., "size": ...}} objects ({error})')
        files += held_back
    return files


def _default_name(files: list[Incoming]) -> str:
    if not files:
        return "untitled"
    parts = PurePosixPath(files[0].path.replace("\\", "/")).parts
    return parts[0] if len(parts) > 1 else f"{len(files)} file{'s' if len(files) != 1 else ''}"


def _enqueue_quietly(job_id: int, full_batches_only: bool) -> str | None:
    """Send what is ready; an unreachable queue must not fail an upload whose files are already stored."""
    try:
        enqueue_pending(get_db(), job_id, batch_size=get_settings().batch_size, full_batches_only=full_batches_only)
    except QueueUnavailable as error:
        return f"{error}; POST /api/v1/jobs/{job_id}/close to send them again"
    return None


def _store(job_id: int, files: list[Incoming]) -> None:
    settings = get_settings()
    add_files(get_db(), job_id, files, settings.upload_dir, settings.max_file_mb)


@bp.post("/jobs")
def create():
    files = _incoming()
    is_open = request.form.get("open", "").strip().lower() in _TRUE
    if not files and not is_open:
        abort(400, "send at least one file in the repeated 'files' field, or open=true to add files in chunks later")
    db = get_db()
    job = create_job(db, _user(), request.form.get("name", "").strip() or _default_name(files), is_open)
    _store(job.id, files)
    refresh_job(db, job.id)
    db.commit()
    warning = _enqueue_quietly(job.id, full_batches_only=is_open)
    body = job_to_dict(job) | ({"warning": warning} if warning else {})
    response = jsonify(body)
    response.status_code = 201
    response.headers["Location"] = url_for("api.get_job", job_id=job.id)
    return response


@bp.post("/jobs/<int:job_id>/files")
def add(job_id: int):
    db = get_db()
    job = get_job_or_404(db, _user(), job_id)
    require_accepting_files(job)
    files = _incoming()
    if not files:
        abort(400, "send at least one file in the repeated 'files' field")
    _store(job.id, files)
    refresh_job(db, job.id)
    db.commit()
    warning = _enqueue_quietly(job.id, full_batches_only=True)  # work starts as files arrive
    return jsonify(job_to_dict(job) | {"added": len(files)} | ({"warning": warning} if warning else {}))


@bp.post("/jobs/<int:job_id>/close")
def close(job_id: int):
    """Stop accepting files and queue everything still pending; calling it again retries the queueing."""
    db = get_db()
    job = get_job_or_404(db, _user(), job_id)
    if job.status == JobStatus.cancelled:
        abort(409, f"job {job.id} was cancelled; there is nothing to close")
    job.is_open = False
    refresh_job(db, job.id)
    db.commit()
    try:
        enqueue_pending(db, job.id, batch_size=get_settings().batch_size, full_batches_only=False)
    except QueueUnavailable as error:
        return error_response(503, f"{error}; POST /api/v1/jobs/{job.id}/close again to retry")
    return jsonify(job_to_dict(job))


@bp.get("/jobs/<int:job_id>")
def get_job(job_id: int):
    return jsonify(job_to_dict(get_job_or_404(get_db(), _user(), job_id)))


@bp.get("/jobs/<int:job_id>/results")
def results(job_id: int):
    db = get_db()
    job = get_job_or_404(db, _user(), job_id)
    page = page_args(request.args)
    rows, total = results_page(db, job.id, parse_filter(request.args), page)
    return jsonify({"results": rows} | page.meta(total))


@bp.get("/jobs")
def list_jobs():
    page = page_args(request.args, default_per_page=50)
    jobs, total = history(get_db(), _user(), parse_job_status(request.args.get("status")), page)
    return jsonify({"jobs": [job_to_dict(job) for job in jobs]} | page.meta(total))


@bp.delete("/jobs/<int:job_id>")
def cancel(job_id: int):
    db = get_db()
    job = cancel_job(db, get_job_or_404(db, _user(), job_id))
    db.commit()
    logger.info("job %s cancelled by %s", job.id, _user().username)
    return jsonify(job_to_dict(job))
