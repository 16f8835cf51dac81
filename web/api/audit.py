"""The audit log for administrators: GET /api/v1/audit?user=&job=&action=&page=&per_page=."""

from __future__ import annotations

from flask import g, jsonify, request

from db.audit import audit_page
from web.api import bp
from web.audit import audit_query, require_admin
from web.extensions import get_db


@bp.get("/audit")
def audit_log():
    require_admin(g.user)
    filters, page = audit_query(request.args)
    events, total = audit_page(get_db(), **filters, limit=page.per_page, offset=page.offset)
    return jsonify({"events": [event.to_dict() for event in events]} | page.meta(total))
