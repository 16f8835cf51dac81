"""One JSON shape for every API error; HTML error pages for everything else."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flask import Flask, Response, current_app, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError, RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES

from ingest import Incoming, StorageFull, receive

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from db.models import Image
    from settings import Settings

logger = logging.getLogger(__name__)


class InsufficientStorage(HTTPException):
    """507: the server cannot store the request's files now (its disk is full); retrying later may work."""

    code = 507
    description = "the server has no space left to store this request"


def receive_or_507(db: Session, settings: Settings, job_id: int, files: list[Incoming], **options) -> list[Image]:
    """`ingest.receive` (store, flush, commit), with a full disk rolled back and answered 507 (nothing of the
    request is kept)."""
    try:
        return receive(db, settings, job_id, files, **options)
    except StorageFull as error:
        db.rollback()
        raise InsufficientStorage(
            f"{error.strerror}: nothing from this request was kept; try again later (an administrator must free space)"
        ) from None


def error_response(status: int, message: str | None = None) -> Response:
    """`{"error": "Not Found", "message": "...", "status": 404}` with that status code."""
    reason = HTTP_STATUS_CODES.get(status, "Unknown error")
    response = jsonify({"error": reason, "message": message or reason, "status": status})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="radbatch"'
    return response


def _message(error: HTTPException) -> str:
    if isinstance(error, CSRFError):
        return (
            f"CSRF check failed ({error.description.rstrip('.')}); cookie sessions must send the X-CSRFToken header, "
            "API clients should use 'Authorization: Bearer <token>'"
        )
    if isinstance(error, RequestEntityTooLarge) and error.description == RequestEntityTooLarge.description:
        return _too_large_message()
    if isinstance(error, InternalServerError):
        return "internal server error; the server log has the details"
    return error.description or HTTP_STATUS_CODES.get(error.code or 500, "error")


def _too_large_message() -> str:
    """Werkzeug raises the same 413 for a body over MAX_CONTENT_LENGTH, too many form parts and an over-long
    non-file field; the declared body length tells the first apart from the other two."""
    limit_bytes = current_app.config.get("MAX_CONTENT_LENGTH") or 0
    parts = current_app.config.get("MAX_FORM_PARTS")
    field_kb = (current_app.config.get("MAX_FORM_MEMORY_SIZE") or 0) // 1000
    too_many = f"more than {parts} form parts (files and fields), or a non-file field over {field_kb} KB"
    length = request.content_length
    if length is not None and length <= limit_bytes:
        return f"{too_many}; send fewer files per request"
    body = f"request body larger than {limit_bytes // 2**20} MB"
    return f"{body if length is not None else f'{body}, or {too_many}'}; send fewer or smaller files per request"


def handle_http_error(error: HTTPException):
    if isinstance(error, InternalServerError) and error.original_exception is not None:
        logger.error("unhandled error on %s %s", request.method, request.path, exc_info=error.original_exception)
    message = _message(error)
    status = error.code or 500
    if request.path.startswith(("/api/", "/dicomweb/")):
        return error_response(status, message)
    return render_template("error.html", status=status, reason=HTTP_STATUS_CODES.get(status), message=message), status


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_error)
