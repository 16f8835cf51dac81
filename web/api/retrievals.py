"""Pull studies from a PACS named in RADBATCH_DICOM_SOURCES into a new job (dicomio/retrieve.py).

`POST /api/v1/retrievals` with `{"source": NAME, "query": {"AccessionNumber"|"StudyDate"|"Modality"|"PatientID"|
"StudyInstanceUID": ...}, "max_studies": N}`: the C-FIND (or QIDO-RS) runs in the request, so a refused
association, no match or too many matches answer at once with the step that failed; then a job is made and the
forwarding worker moves the studies (202). `GET /api/v1/retrievals/<id>` follows it.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from flask import abort, g, jsonify, request, url_for

from broker import RETRIEVE_QUEUE, RETRIEVE_TASK
from db.jobs import create_job
from db.retrievals import NAME_PREFIX, Retrieval
from dicomio.retrieve import QUERY_KEYS, RetrieveError, find_studies, parse_sources
from web.access import job_or_404
from web.api import bp
from web.extensions import celery_client, get_db, get_settings

DATE = re.compile(r"^\d{8}(-\d{8})?$")
MAX_VALUE = 64


def _failed(status: int, step: str, message: str):
    response = jsonify({"error": "retrieval failed", "failed_step": step, "message": message, "status": status})
    response.status_code = status
    return response


def _query(body: dict) -> dict[str, str]:
    query = body.get("query")
    if not isinstance(query, dict) or not query:
        abort(400, f"query must be an object with at least one of {', '.join(QUERY_KEYS)}")
    unknown = sorted(set(query) - set(QUERY_KEYS))
    if unknown:
        abort(400, f"query keys {', '.join(unknown)} are not supported; use {', '.join(QUERY_KEYS)}")
    if not all(isinstance(value, str) and 0 < len(value) <= MAX_VALUE for value in query.values()):
        abort(400, f"query values must be non-empty strings of at most {MAX_VALUE} characters")
    if "StudyDate" in query and not DATE.match(query["StudyDate"]):
        abort(400, "StudyDate must be YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
    return {key: value.strip() for key, value in query.items()}


@bp.post("/retrievals")
def create_retrieval():
    settings = get_settings()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, 'send JSON: {"source": "NAME", "query": {"AccessionNumber": "..."}}')
    try:
        sources = parse_sources(settings.dicom_sources)
    except ValueError as error:
        abort(503, str(error))
    source = sources.get(str(body.get("source") or ""))
    if source is None:
        abort(400, f"source must be one of RADBATCH_DICOM_SOURCES: {', '.join(sources) or 'none is configured'}")
    query = _query(body)
    limit = body.get("max_studies", settings.retrieve_max_studies)
    if not isinstance(limit, int) or limit < 1:
        abort(400, "max_studies must be a positive whole number")
    try:
        studies = find_studies(source, query, settings.dicom_aet)
    except RetrieveError as error:
        return _failed(502, error.step, str(error))
    step = "qido-rs" if source.dicomweb else "c-find"
    if not studies:
        return _failed(404, step, f"{step}: no study on {source.name} matched {query}")
    if len(studies) > limit:
        message = f"{step}: {len(studies)} studies matched, more than the limit of {limit}; send max_studies"
        return _failed(413, step, f"{message} {len(studies)} to retrieve them all")
    db = get_db()
    name = f"{NAME_PREFIX}{source.name} at {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
    job = create_job(db, g.user, name, is_open=True)
    retrieval = Retrieval(job_id=job.id, source=source.name, query=query, studies=studies, status="retrieving")
    db.add(retrieval)
    db.commit()
    celery_client().send_task(RETRIEVE_TASK, args=[retrieval.id], queue=RETRIEVE_QUEUE)
    response = jsonify({"retrieval": retrieval.to_dict(), "job": job.to_dict()})
    response.status_code = 202
    response.headers["Location"] = url_for("api.get_retrieval", retrieval_id=retrieval.id)
    return response


@bp.get("/retrievals/<int:retrieval_id>")
def get_retrieval(retrieval_id: int):
    retrieval = get_db().get(Retrieval, retrieval_id)
    if retrieval is None:
        abort(404, f"retrieval {retrieval_id} not found")
    job = job_or_404(g.user, retrieval.job_id)
    return jsonify({"retrieval": retrieval.to_dict(), "job": job.to_dict()})
