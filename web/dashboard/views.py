"""History, the live job page (its result rows are re-rendered by the same template while it runs), CSV, thumbnails."""

from __future__ import annotations

import logging
import re

from flask import (
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    send_file,
    stream_with_context,
    url_for,
)
from sqlalchemy import select

from db.findings import job_finding_names
from db.jobs import JobFinishedError, cancel_job, job_history, visible_jobs
from db.models import Image, Job, JobStatus
from db.studies import METHOD as STUDY_METHOD
from db.studies import job_studies_page, study_cells_of_job
from storage import names, storage_for
from web.access import job_or_404
from web.auth.identity import current_user, login_or_token_required, login_required
from web.dashboard import bp
from web.extensions import get_catalogue, get_db, get_settings
from web.query_args import enum_choice, page_args
from web.results import (
    csv_lines,
    iter_results,
    page_of_images,
    parse_filter,
    show_unvalidated_findings,
    with_outputs,
)

logger = logging.getLogger(__name__)
PLACEHOLDER_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
    '<rect width="64" height="64" fill="#e5e7eb"/><text x="32" y="36" font-size="9" text-anchor="middle" '
    'fill="#6b7280" font-family="sans-serif">no preview</text></svg>'
)
PAGE_SIZES = (25, 50, 100, 250)


@bp.get("/jobs")
@login_required
def history():
    status = enum_choice(request.args, "status", JobStatus)
    page = page_args(request.args, default_per_page=25)
    jobs, total = job_history(get_db(), current_user(), status, page.per_page, page.offset)
    return render_template("dashboard/history.html", jobs=jobs, meta=page.meta(total), status=status)


def _results_context(job: Job) -> dict:
    """The image rows; for a DICOM job with no filter, one row per study instead (`?view=images` for the images).
    A job is a DICOM job when its first page of images holds a study (no extra query on other jobs)."""
    db = get_db()
    flt = parse_filter(request.args)
    page = page_args(request.args, default_per_page=50)
    sizes = sorted({*PAGE_SIZES, page.per_page})
    args = flt.as_args()
    context = {"job": job, "flt": flt, "args": args, "page_sizes": sizes, "studies": None, "study_method": STUDY_METHOD}
    context["catalogue"] = get_catalogue()
    images, total = page_of_images(db, job.id, flt, page)
    context["has_studies"] = bool(flt.study) or any(image.study_instance_uid for image in images)
    if context["has_studies"] and not args:
        if request.args.get("view") != "images":
            studies, total = job_studies_page(db, job.id, page.per_page, page.offset)
            return context | {"studies": studies, "rows": [], "meta": page.meta(total)}
        context["args"] = {"view": "images"}
    return context | {"rows": with_outputs(db, images), "meta": page.meta(total)}


@bp.get("/jobs/<int:job_id>")
@login_required
def job(job_id: int):
    found = job_or_404(current_user(), job_id)
    return render_template("dashboard/job.html", **_results_context(found))


@bp.get("/jobs/<int:job_id>/rows")
@login_required
def job_rows(job_id: int):
    """The result table alone, for the job page's live refresh."""
    found = job_or_404(current_user(), job_id)
    return render_template("dashboard/_results.html", **_results_context(found))


@bp.post("/jobs/<int:job_id>/cancel")
@login_required
def cancel(job_id: int):
    db = get_db()
    try:
        cancel_job(db, job_or_404(current_user(), job_id))
    except JobFinishedError as error:
        abort(409, str(error))
    db.commit()
    flash(f"Job {job_id} cancelled: images not yet processed will be skipped.")
    return redirect(url_for("dashboard.job", job_id=job_id))


def _csv_name(job: Job) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", job.name).strip("-")[:60] or "job"
    return f"radbatch-job{job.id}-{slug}.csv"


@bp.get("/jobs/<int:job_id>/results.csv")
@login_or_token_required
def export_csv(job_id: int):
    found = job_or_404(current_user(), job_id)
    flt = parse_filter(request.args)
    findings = job_finding_names(get_db(), found.id, include_unvalidated=show_unvalidated_findings())
    unvalidated = sorted(set(findings) - set(job_finding_names(get_db(), found.id)))
    studies = study_cells_of_job(get_db(), found.id)
    served = get_catalogue().served_names
    lines = stream_with_context(
        csv_lines(iter_results(get_db(), found.id, flt), findings, unvalidated, studies, served)
    )
    return Response(
        lines,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{_csv_name(found)}"'},
    )


@bp.get("/thumbnails/<int:image_id>.png")
@login_or_token_required
def thumbnail(image_id: int):
    query = select(Image.job_id).join(Job, Job.id == Image.job_id).where(Image.id == image_id)
    job_id = get_db().scalar(visible_jobs(query, current_user()))
    if job_id is None:
        abort(404, f"image {image_id} not found among your jobs")
    g.audit_object = (job_id, image_id)  # what this read is audited as (web.audit)
    try:
        stream = storage_for(get_settings()).open(names.thumbnail(image_id))
    except FileNotFoundError:  # not made yet (queued) or never (refused file): a placeholder, not cached
        return Response(PLACEHOLDER_SVG, mimetype="image/svg+xml", headers={"Cache-Control": "no-store"})
    response = send_file(stream, mimetype="image/png", max_age=3600)
    response.cache_control.public = False
    response.cache_control.private = True  # a patient's image: the browser may keep it, shared caches may not
    return response


@bp.get("/favicon.ico")
def favicon():
    return current_app.send_static_file("favicon.ico")
