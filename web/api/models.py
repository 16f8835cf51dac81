"""The model catalogue (models/catalogue.py): GET /api/v1/models, and for admins a shadow model's comparison with the
served ensemble on a job and the role changes (promote, demote) that the comparison page makes."""

from __future__ import annotations

from flask import abort, g, jsonify, request

from models.catalogue import ROLES
from web.access import job_or_404
from web.api import bp
from web.audit import audit, require_admin
from web.comparison import compare_on_job, set_role
from web.extensions import get_catalogue, get_db
from web.query_args import positive_int

WHAT = "comparing and promoting models"


@bp.get("/models")
def list_models():
    """Every model with its role; shadow models only for admins (they are shown to no one else)."""
    catalogue = get_catalogue()
    shown = [e for e in catalogue.entries if e.role != "shadow" or g.user.is_admin]
    return jsonify({"headline": catalogue.headline, "models": [e.public() for e in shown]})


@bp.get("/models/<name>/comparison")
def model_comparison(name: str):
    require_admin(g.user, WHAT)
    job_id = positive_int(request.args, "job", 0)
    if not job_id:
        abort(400, "job= is required: the id of a job the shadow model ran on")
    job = job_or_404(g.user, job_id)
    found = compare_on_job(name, job)
    audit("model.compare", job.id, model=name)
    get_db().commit()
    return jsonify(found)


@bp.post("/models/<name>/role")
def change_model_role(name: str):
    """{"role": "served" | "shadow" | "off", "version": optional, "confirm": the name again, needed to serve}."""
    require_admin(g.user, WHAT)
    body = request.get_json(silent=True) or {}
    role, version = body.get("role"), body.get("version")
    if role not in ROLES:
        abort(400, f"role must be one of {', '.join(ROLES)}")
    if role == "served" and body.get("confirm") != name:
        abort(400, f"serving {name!r} shows its results to every user: send confirm: {name!r} to confirm")
    if version is not None and not isinstance(version, str):
        abort(400, "version must be a string")
    record = set_role(name, role, version)
    get_db().commit()
    return jsonify(record)
