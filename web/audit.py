"""Write the audit log from the views: one table of endpoints and the action each one records.

After a successful request to an endpoint in AUDITED_ENDPOINTS, one row is written: who (the session or token
user), which job, when and from which address (`request.remote_addr`). Views whose row needs more detail, or
must be written in their own transaction (a purge), call `audit()` themselves. Nothing here stores a path, a
file name or a job name. Status polls, the live page's row refreshes and thumbnails are not recorded: the job
page view that shows them is.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, abort, g, request
from sqlalchemy.exc import SQLAlchemyError

from db.audit import ACTIONS, record_event
from db.models import User
from web.extensions import get_db
from web.query_args import PageArgs, choice, page_args, positive_int

logger = logging.getLogger(__name__)

AUDITED_ENDPOINTS = {
    "api.create": "job.create",
    "api.add": "job.add_files",
    "api.close": "job.close",
    "api.results": "results.view",
    "api.cancel": "job.cancel",
    "api.create_retrieval": "job.create",
    "dashboard.job": "job.view",
    "dashboard.export_csv": "results.export",
    "dashboard.cancel": "job.cancel",
}


def audit(action: str, job_id: int | None, **detail: Any) -> None:
    """Stage an audit row for this request in the request's session; the view commits it with its own work."""
    record_event(get_db(), action, g.get("user"), job_id, request.remote_addr, detail)
    g.audited = True


def audit_query(args: Mapping[str, str]) -> tuple[dict[str, Any], PageArgs]:
    """The log's filters (user name, job id, action) and page from query arguments; a bad value is a 400."""
    filters: dict[str, Any] = {"username": (args.get("user") or "").strip() or None}
    filters["job_id"] = positive_int(args, "job", 0) or None
    filters["action"] = choice(args, "action", ACTIONS, None)
    return filters, page_args(args, default_per_page=100)


def require_admin(user: User | None) -> User:
    if user is None or not user.is_admin:
        abort(403, "the audit log is for administrators")
    return user


def _detail(endpoint: str, response: Response) -> tuple[int | None, dict[str, Any]]:
    job_id = (request.view_args or {}).get("job_id")
    if endpoint in ("api.create", "api.add"):
        body = response.get_json(silent=True) or {}
        job_id = job_id or body.get("id")
        return job_id, {"files": body.get("added", body.get("total"))}
    return job_id, {}


def _record_mapped(response: Response) -> Response:
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
    app.after_request(_record_mapped)
