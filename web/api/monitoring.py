"""Drift monitoring for administrators: GET /api/v1/monitoring/drift?days=30[&job=ID] and its plot as PNG."""

from __future__ import annotations

from flask import Response, abort, g, jsonify, request

from db.models import User
from models.drift import ReferenceMissingError
from web.api import bp
from web.audit import audit
from web.drift import drift_report
from web.drift_chart import draw_drift
from web.extensions import get_db
from web.query_args import positive_int

MAX_DAYS = 366


def require_monitoring_admin(user: User | None) -> None:
    if user is None or not user.is_admin:
        abort(403, "drift monitoring is for administrators")


def audited_report(user: User | None, chart: bool = False) -> dict:
    """The report for the request's `days` (1 to 366, default 30) and `job`; its read is audited."""
    require_monitoring_admin(user)
    days = positive_int(request.args, "days", 30, MAX_DAYS)
    job_id = positive_int(request.args, "job", 0) or None
    try:
        report = drift_report(get_db(), days, job_id)
    except ReferenceMissingError as error:
        abort(503, str(error))
    audit("drift.view", job_id, days=days, images=report["window"]["images"], **({"chart": True} if chart else {}))
    get_db().commit()
    return report


@bp.get("/monitoring/drift")
def drift():
    return jsonify(audited_report(g.user))


@bp.get("/monitoring/drift.png")
def drift_png():
    png = draw_drift(audited_report(g.user, chart=True))
    return Response(png, mimetype="image/png", headers={"Cache-Control": "no-cache"})
