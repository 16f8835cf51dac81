"""A job's webhook delivery state: GET /api/v1/jobs/<id>/webhook (the secret is never shown again)."""

from __future__ import annotations

from flask import abort, g, jsonify

from db.webhooks import JobWebhook
from web.access import job_or_404
from web.api import bp
from web.extensions import get_db


@bp.get("/jobs/<int:job_id>/webhook")
def webhook(job_id: int):
    job = job_or_404(g.user, job_id)
    found = get_db().get(JobWebhook, job.id)
    if found is None:
        abort(404, f"job {job_id} has no webhook; set webhook_url when creating a job")
    return jsonify({"job_id": job.id, **found.to_dict()})
