"""One JSON shape for every API error; HTML error pages for everything else."""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError, RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES

logger = logging.getLogger(__name__)


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
    if isinstance(error, RequestEntityTooLarge):
        limit_mb = (current_app.config.get("MAX_CONTENT_LENGTH") or 0) // 2**20
        return f"request body larger than {limit_mb} MB; send fewer or smaller files per request"
    if isinstance(error, InternalServerError):
        return "internal server error; the server log has the details"
    return error.description or HTTP_STATUS_CODES.get(error.code or 500, "error")


def handle_http_error(error: HTTPException):
    if isinstance(error, InternalServerError) and error.original_exception is not None:
        logger.error("unhandled error on %s %s", request.method, request.path, exc_info=error.original_exception)
    message = _message(error)
    status = error.code or 500
    if request.path.startswith("/api/"):
        return error_response(status, message)
    return render_template("error.html", status=status, reason=HTTP_STATUS_CODES.get(status), message=message), status


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_error)
