"""Triage and review: the worklist of finished, unreviewed studies (db/worklist.py) and a radiologist's review of
a study's result (db/reviews.py). A disagreeing review sends a correction out where forwarding is on: the SR again
with the review in it (a new instance), the FHIR Bundle with status amended, the ORU with result status C."""

from __future__ import annotations

import re

from flask import abort, g, jsonify, request
from sqlalchemy import select

from broker import FHIR_QUEUE, FHIR_TASK, FORWARD_QUEUE, FORWARD_TASK, HL7_QUEUE, HL7_TASK
from db.models import ImageStatus
from db.reviews import LABELS, VERDICTS, Review, record_review
from db.studies import METHOD, is_frontal, job_study_images, visible_study_images
from db.worklist import WorklistFilter, worklist
from web.access import job_or_404
from web.api import bp
from web.audit import audit
from web.extensions import celery_client, get_db, get_settings
from web.query_args import page_args, positive_int
from web.results import study_uid

DATES = re.compile(r"^(\d{8})?(-(\d{8})?)?$")
MAX_COMMENT = 2000


def worklist_filter(args) -> WorklistFilter:
    dates = (args.get("date") or "").strip()
    match = DATES.match(dates)
    if not match:
        abort(400, "date must be YYYYMMDD, YYYYMMDD-YYYYMMDD, YYYYMMDD- or -YYYYMMDD (study dates)")
    first, _, last = match.groups()
    single = "-" not in dates
    source = (args.get("source") or "").strip()[:32]
    return WorklistFilter(first or "", (first if single else last) or "", source, positive_int(args, "job", 0) or None)


@bp.get("/worklist")
def get_worklist():
    page = page_args(request.args, default_per_page=50)
    items = worklist(get_db(), g.user, worklist_filter(request.args))
    shown = items[page.offset : page.offset + page.per_page]
    for item in shown:
        item["study_url"] = f"/api/v1/studies/{item['study_instance_uid']}"
        item["job_url"] = f"/jobs/{item['job_id']}?study={item['study_instance_uid']}"
    return jsonify({"studies": shown, "order": f"most suspicious first: {METHOD}"} | page.meta(len(items)))


def _review_body(body: dict) -> tuple[str, str | None, list[str], str]:
    verdict = body.get("verdict")
    if verdict not in VERDICTS:
        abort(400, f"verdict must be one of {', '.join(VERDICTS)}")
    label = body.get("label")
    if verdict == "disagree" and label not in LABELS:
        abort(400, f"a disagreeing review needs the correct label: {' or '.join(LABELS)}")
    findings = body.get("findings") or []
    if not isinstance(findings, list) or not all(isinstance(name, str) and len(name) <= 32 for name in findings):
        abort(400, 'findings must be a list of finding names (e.g. ["Effusion"])')
    comment = body.get("comment") or ""
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        abort(400, f"comment must be text of at most {MAX_COMMENT} characters")
    return verdict, label if verdict == "disagree" else None, findings, comment.strip()


@bp.post("/studies/<study_instance_uid>/reviews")
def review_study(study_instance_uid: str):
    uid = study_uid({"study": study_instance_uid})
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, 'send JSON: {"job_id": N, "verdict": "agree" | "disagree" | "unsure", "label", "comment"}')
    visible = visible_study_images(get_db(), g.user, uid) if uid else []
    if not visible:
        abort(404, f"study {study_instance_uid} not found among your jobs")
    job_id = body.get("job_id") or max(image.job_id for image in visible)
    if not isinstance(job_id, int) or isinstance(job_id, bool) or not 0 < job_id < 2**63:
        abort(400, "job_id must be the id of the job whose study you review")
    job = job_or_404(g.user, job_id)
    images = job_study_images(get_db(), job.id, uid)
    if not images:
        abort(404, f"study {uid} has no images in job {job.id}")
    verdict, label, findings, comment = _review_body(body)
    counted = [image for image in images if image.status == ImageStatus.done and is_frontal(image)]
    if verdict == "agree":
        label = _study_label(counted)
    review = record_review(get_db(), g.user, job.id, uid, verdict, label, findings, comment, [i.id for i in counted])
    audit("study.review", job.id, study=uid, verdict=verdict)
    get_db().commit()
    if verdict == "disagree" and counted:
        _send_corrections(counted[0].id)
    response = jsonify(review.to_dict())
    response.status_code = 201
    return response


def _study_label(counted) -> str | None:
    scores = [p for image in counted for p in image.predictions if p.headline]
    if not scores:
        return None
    top = max(scores, key=lambda p: p.probability)
    return "disease" if top.probability >= top.threshold else "healthy"


def _send_corrections(image_id: int) -> None:
    settings = get_settings()
    for on, task, queue in (
        (settings.fhir_forward, FHIR_TASK, FHIR_QUEUE),
        (settings.hl7_forward, HL7_TASK, HL7_QUEUE),
    ):
        if on:
            celery_client().send_task(task, args=[image_id, True], queue=queue)
    if settings.dicom_forward:  # the study's SR again, now with the review: a new instance beside the first
        celery_client().send_task(FORWARD_TASK, args=[image_id], queue=FORWARD_QUEUE)


@bp.get("/studies/<study_instance_uid>/reviews")
def study_reviews(study_instance_uid: str):
    uid = study_uid({"study": study_instance_uid})
    visible = visible_study_images(get_db(), g.user, uid) if uid else []
    if not visible:
        abort(404, f"study {study_instance_uid} not found among your jobs")
    jobs = sorted({image.job_id for image in visible})
    query = select(Review).where(Review.study_instance_uid == uid, Review.job_id.in_(jobs)).order_by(Review.id)
    return jsonify({"reviews": [review.to_dict() for review in get_db().scalars(query)]})
