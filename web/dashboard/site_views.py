"""The job page's labels upload, evaluation and permanent deletion, and the administrators' audit log page."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from db.audit import ACTIONS, audit_page
from db.studies import METHOD as STUDY_METHOD
from ingest.labels import LabelFileError
from web.access import job_or_404
from web.audit import audit, audit_query, require_admin
from web.auth.identity import current_user, login_required
from web.dashboard import bp
from web.evaluation import current_evaluation, save_labels
from web.extensions import get_db
from web.purging import purge


@bp.post("/jobs/<int:job_id>/labels")
@login_required
def upload_labels(job_id: int):
    job = job_or_404(current_user(), job_id)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash("Choose a CSV file of labels first (columns path and label).")
        return redirect(url_for("dashboard.job", job_id=job_id, _anchor="evaluation"))
    try:
        summary = save_labels(job, upload.read())
    except LabelFileError as error:
        flash(f"Labels not stored: {error}.")
        return redirect(url_for("dashboard.job", job_id=job_id, _anchor="evaluation"))
    unused, unlabelled = summary["unused"]["count"], summary["images_without_label"]["count"]
    flash(
        f"Labels stored: {summary['used']} of {summary['rows']} rows matched an image; {unused} rows not used, "
        f"{unlabelled} images without a label (listed under Evaluation)."
    )
    return redirect(url_for("dashboard.job", job_id=job_id, _anchor="evaluation"))


@bp.get("/jobs/<int:job_id>/evaluation")
@login_required
def evaluation_fragment(job_id: int):
    """The evaluation part of the job page, loaded by sitetools.js."""
    job = job_or_404(current_user(), job_id)
    found = current_evaluation(get_db(), job)
    if found is not None:
        audit("evaluation.view", job.id)
    get_db().commit()
    return render_template("dashboard/_evaluation_results.html", job=job, evaluation=found[0] if found else None)


@bp.post("/jobs/<int:job_id>/purge")
@login_required
def purge_job(job_id: int):
    summary = purge(job_or_404(current_user(), job_id))
    flash(f"Job {job_id} deleted for good: {summary['images']} images and {summary['files']} files removed.")
    return redirect(url_for("dashboard.history"))


@bp.get("/admin/audit")
@login_required
def audit_log():
    require_admin(current_user())
    filters, page = audit_query(request.args)
    events, total = audit_page(get_db(), **filters, limit=page.per_page, offset=page.offset)
    args = {key: value for key, value in request.args.items() if key in ("user", "job", "action") and value}
    return render_template(
        "dashboard/audit.html", events=events, meta=page.meta(total), args=args, filters=filters, actions=ACTIONS
    )


@bp.get("/worklist")
@login_required
def worklist_page():
    """Finished, unreviewed studies, most suspicious first; the table is filled and refreshed from the API."""
    return render_template("dashboard/worklist.html", method=STUDY_METHOD)
