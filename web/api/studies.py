"""Study-level results (db/studies.py): one study, the studies of a job, and a study found by its accession."""

from __future__ import annotations

import json

from flask import Response, abort, g, jsonify, request

from db.studies import job_studies_page, studies_by_accession, summarise_many, visible_study_images
from interop.fhir import study_bundle
from web.access import job_or_404
from web.api import bp
from web.audit import audit
from web.extensions import get_db, get_settings
from web.query_args import page_args
from web.results import study_uid

MAX_ACCESSION = 64


@bp.get("/studies/<study_instance_uid>")
def study(study_instance_uid: str):
    uid = study_uid({"study": study_instance_uid})
    images = visible_study_images(get_db(), g.user, uid)
    if not uid or not images:
        abort(404, f"study {study_instance_uid} not found among your jobs")
    (summary,) = summarise_many(get_db(), [images])
    audit("study.view", summary["job_ids"][0], study=uid)
    get_db().commit()
    return jsonify(summary)


@bp.get("/studies/<study_instance_uid>/fhir")
def study_fhir(study_instance_uid: str):
    """The study's results as a FHIR R4 transaction Bundle (interop/fhir.py): DiagnosticReport + Observations."""
    uid = study_uid({"study": study_instance_uid})
    images = visible_study_images(get_db(), g.user, uid)
    if not uid or not images:
        abort(404, f"study {study_instance_uid} not found among your jobs")
    (summary,) = summarise_many(get_db(), [images])
    audit("study.view", summary["job_ids"][0], study=uid, format="fhir")
    get_db().commit()
    return Response(json.dumps(study_bundle(summary)), mimetype="application/fhir+json")


@bp.get("/studies")
def find_studies():
    """`?accession=` the site's accession number (or its pseudonym): the matching studies, summarised."""
    accession = (request.args.get("accession") or "").strip()
    if not accession or len(accession) > MAX_ACCESSION:
        abort(400, f"accession (the site's accession number, at most {MAX_ACCESSION} characters) is required")
    uids = studies_by_accession(get_db(), g.user, accession, get_settings().secret_key)
    found = summarise_many(get_db(), [visible_study_images(get_db(), g.user, uid) for uid in uids])
    for summary in found:
        audit("study.view", summary["job_ids"][0], study=summary["study_instance_uid"])
    get_db().commit()
    return jsonify({"studies": found})


@bp.get("/jobs/<int:job_id>/studies")
def job_studies(job_id: int):
    """The job's DICOM images grouped by study, each with its study-level result."""
    job = job_or_404(g.user, job_id)
    page = page_args(request.args, default_per_page=50)
    found, total = job_studies_page(get_db(), job.id, page.per_page, page.offset)
    audit("results.view", job.id, studies=len(found))
    get_db().commit()
    return jsonify({"job_id": job.id, "studies": found} | page.meta(total))
