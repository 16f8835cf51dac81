"""The administrators' models page: the catalogue with each model's role, a shadow model's comparison with the served
ensemble on a job (web/comparison.py), and the promote and demote buttons (audited)."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for

from models.catalogue import ROLES
from web.access import job_or_404
from web.audit import audit, require_admin
from web.auth.identity import current_user, login_required
from web.comparison import compare_on_job, set_role
from web.dashboard import bp
from web.extensions import get_catalogue, get_db
from web.query_args import positive_int

WHAT = "the models page"


@bp.get("/admin/models")
@login_required
def models_page():
    user = require_admin(current_user(), WHAT)
    catalogue = get_catalogue()
    name = request.args.get("model") or next((e.name for e in catalogue.shadow), "")
    job_id = positive_int(request.args, "job", 0)
    comparison = None
    if name and job_id:
        comparison = compare_on_job(name, job_or_404(user, job_id))
        audit("model.compare", job_id, model=name)
        get_db().commit()
    return render_template(
        "dashboard/models.html", catalogue=catalogue, model=name, job_id=job_id or "", comparison=comparison
    )


@bp.post("/admin/models/<name>/role")
@login_required
def models_role(name: str):
    require_admin(current_user(), WHAT)
    role = request.form.get("role", "")
    if role not in ROLES:
        abort(400, f"role must be one of {', '.join(ROLES)}")
    if role == "served" and request.form.get("confirm", "") != name:
        flash(f"Not promoted: type the model's name, {name}, to confirm that every user will see its results.")
    else:
        record = set_role(name, role, request.form.get("version") or None)
        get_db().commit()
        flash(f"{name}: {record['from_role']} → {record['to_role']} ({record['to_version']}).")
    job = request.form.get("job", "")
    return redirect(url_for("dashboard.models_page", model=name, **({"job": job} if job.isdigit() else {})))
