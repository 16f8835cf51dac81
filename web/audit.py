"""Write the audit log from the views: one table of endpoints and the action each one records.

After a successful request to an endpoint in AUDITED_ENDPOINTS, one row is written: who (the session or token
user), which job, when and from which address (`request.remote_addr`). Views whose row needs more detail, or
must be written in their own transaction (a purge), call `audit()` themselves. Nothing here stores a path, a
file name or a job name. Status polls and the live page's row refreshes are not recorded: the job page view
that shows them is.

Reads of patient pixels or results (READ_ENDPOINTS: image, thumbnail, heat map, SR, results, CSV export, file
list) are recorded with the user, the job, the image and the time, through the buffered writer
(`db.audit_buffer`), so that a read costs microseconds, not a transaction. Reading the log first writes what
this process has buffered.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, abort, current_app, g, request
from sqlalchemy.exc import SQLAlchemyError

from db.audit import ACTIONS, record_event
from db.audit_buffer import AuditBuffer
from db.models import User
from web.extensions import get_db
from web.query_args import PageArgs, choice, page_args, positive_int

logger = logging.getLogger(__name__)

AUDITED_ENDPOINTS = {
    "api.create": "job.create",
    "api.add": "job.add_files",
    "api.close": "job.close",
    "api.cancel": "job.cancel",
    "api.create_retrieval": "job.create",
    "dashboard.job": "job.view",
    "dashboard.cancel": "job.cancel",
}


READ_ENDPOINTS = {
    "api.image_png": "image.view",
    "dashboard.thumbnail": "image.view",
    "api.heatmap": "heatmap.view",
    "api.structured_report": "report.view",
    "api.results": "results.view",
    "dashboard.export_csv": "results.export",
    "api.stored_files": "files.view",
}
READ_BUFFER = "radbatch_audit_buffer"


def audit(action: str, job_id: int | None, **detail: Any) -> None:
    """Stage an audit row for this request in the request's session; the view commits it with its own work."""
    record_event(get_db(), action, g.get("user"), job_id, request.remote_addr, detail)
    g.audited = True


def audit_query(args: Mapping[str, str]) -> tuple[dict[str, Any], PageArgs]:
    """The log's filters (user name, job id, action) and page from query arguments; a bad value is a 400."""
    current_app.extensions[READ_BUFFER].flush()
    filters: dict[str, Any] = {"username": (args.get("user") or "").strip() or None}
    filters["job_id"] = positive_int(args, "job", 0) or None
    filters["action"] = choice(args, "action", ACTIONS, None)
    return filters, page_args(args, default_per_page=100)


def require_admin(user: User | None, what: str = "the audit log") -> User:
    if user is None or not user.is_admin:
        abort(403, f"{what} is for administrators")
    return user


def _detail(endpoint: str, response: Response) -> tuple[int | None, dict[str, Any]]:
    job_id = (request.view_args or {}).get("job_id")
    if endpoint in ("api.create", "api.add"):
        body = response.get_json(silent=True) or {}
        job_id = job_id or body.get("id")
        return job_id, {"files": body.get("added", body.get("total"))}
    return job_id, {}


def _record_read(response: Response) -> None:
    action = READ_ENDPOINTS.get(request.endpoint or "")
    if action is None or g.get("user") is None or response.status_code != 200:
        return
    job_id, image_id = g.get("audit_object") or ((request.view_args or {}).get("job_id"), None)
    detail = {"image": image_id} if image_id is not None else {}
    if request.endpoint == "dashboard.thumbnail":
        if response.mimetype != "image/png":
            return  # the placeholder of an image not yet processed
        detail["thumbnail"] = True
    if request.endpoint == "api.heatmap":
        detail["model"] = request.args.get("model", "")[:16]
    current_app.extensions[READ_BUFFER].add(action, g.user, job_id, request.remote_addr, detail)


def _record_mapped(response: Response) -> Response:
    _record_read(response)
    action = AUDITED_ENDPOINTS.get(request.endpoint or "")
    if action is None or g.get("audited") or g.get("user") is None or response.status_code >= 400:
        return response
    job_id, detail = _detail(request.endpoint, response)
    try:
        audit(action, job_id, **detail)
        get_db().commit()
    except SQLAlchemyError:
        get_db().rollback()
        logger.exception("could not write the audit row for %s on job %s", action, job_id)
    return response


def init_app(app: Flask) -> None:
    app.extensions[READ_BUFFER] = AuditBuffer(app.extensions["radbatch_sessions"])
    app.after_request(_record_mapped)
