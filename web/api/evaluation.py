"""Labels and evaluation endpoints: upload a CSV of the site's own labels, read the evaluation and its ROC chart."""

from __future__ import annotations

from flask import Response, abort, g, jsonify, request, url_for

from ingest.labels import LabelFileError
from web.access import job_or_404
from web.api import bp
from web.audit import audit
from web.evaluation import current_evaluation, save_labels
from web.extensions import get_db

CSV_TYPES = ("text/csv", "text/plain", "application/csv", "application/vnd.ms-excel")


def labels_payload() -> bytes:
    """The CSV: a multipart file (field `file`, else the first file part), or the body sent as text/csv."""
    if request.files:
        upload = request.files.get("file") or next(iter(request.files.values()))
        return upload.read()
    if request.mimetype in CSV_TYPES:
        return request.get_data()
    abort(400, "send the labels as a multipart file field 'file', or as the request body with Content-Type text/csv")


@bp.post("/jobs/<int:job_id>/labels")
def upload_labels(job_id: int):
    job = job_or_404(g.user, job_id)
    try:
        summary = save_labels(job, labels_payload())
    except LabelFileError as error:
        abort(400, str(error))
    response = jsonify(summary | {"evaluation_url": url_for("api.evaluation", job_id=job_id)})
    response.status_code = 201
    return response


def _evaluation_of(job_id: int) -> tuple[dict, str]:
    job = job_or_404(g.user, job_id)
    found = current_evaluation(get_db(), job)
    if found is None:
        abort(404, f"job {job_id} has no labels yet; POST a CSV (columns path,label) to /api/v1/jobs/{job_id}/labels")
    return found


@bp.get("/jobs/<int:job_id>/evaluation")
def evaluation(job_id: int):
    evaluation, _svg = _evaluation_of(job_id)
    audit("evaluation.view", job_id)
    get_db().commit()  # the audit row, and the evaluation cache if it was recomputed
    return jsonify(evaluation | {"roc_url": url_for("api.evaluation_roc", job_id=job_id)})


@bp.get("/jobs/<int:job_id>/evaluation/roc.svg")
def evaluation_roc(job_id: int):
    _evaluation, svg = _evaluation_of(job_id)
    get_db().commit()
    return Response(svg, mimetype="image/svg+xml", headers={"Cache-Control": "no-cache"})
