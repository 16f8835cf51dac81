"""Run a retrieval (db/retrievals.py): move each matched study from its source to radbatch's own AE by C-MOVE,
or fetch it by WADO-RS and hand it to the listener by C-STORE, both marked with the job's C-MOVE message id so the
listener files the instances under the retrieval's job. Then close the job; a failed step is kept on the
retrieval (`failed_step`, `error`) and the job is closed with what arrived."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker

from db.jobs import refresh_job
from db.models import Job, utcnow
from db.retrievals import Retrieval, message_id
from dicomio.forward import Destination, ForwardError, c_store
from dicomio.retrieve import RetrieveError, Source, move_study, parse_sources, wado_instances
from settings import Settings

log = logging.getLogger(__name__)


def own_listener(settings: Settings) -> Destination:
    host = "127.0.0.1" if settings.dicom_host in ("0.0.0.0", "::", "") else settings.dicom_host
    return Destination(settings.dicom_aet, host, settings.dicom_port)


def _fetch(source: Source, study_uid: str, settings: Settings, message: int) -> int:
    """One study: C-MOVE, or WADO-RS then C-STORE to the listener; the number of instances sent."""
    if not source.dicomweb:
        return move_study(source, study_uid, settings.dicom_aet, message)
    sent = 0
    for dataset in wado_instances(source, study_uid):
        try:
            c_store(dataset, own_listener(settings), settings.dicom_aet, 30, (settings.dicom_aet, message))
        except ForwardError as error:
            raise RetrieveError("wado-rs", f"the listener did not take an instance: {error}") from None
        sent += 1
    return sent


def run_retrieval(sessions: sessionmaker[Session], settings: Settings, retrieval_id: int) -> str:
    with sessions() as session:
        retrieval = session.get(Retrieval, retrieval_id)
        if retrieval is None or retrieval.status != "retrieving":
            return "nothing to do"
        job_id, studies, name = retrieval.job_id, list(retrieval.studies), retrieval.source
    source = parse_sources(settings.dicom_sources).get(name)
    step, error, sent = None, None, 0
    try:
        if source is None:
            raise RetrieveError("c-move", f"source {name!r} is no longer in RADBATCH_DICOM_SOURCES")
        for study_uid in studies:
            sent += _fetch(source, study_uid, settings, message_id(job_id))
    except RetrieveError as failure:
        step, error = failure.step, str(failure)
        log.warning("retrieval %d (job %d): %s", retrieval_id, job_id, failure)
    with sessions() as session:
        retrieval = session.get(Retrieval, retrieval_id)
        retrieval.status, retrieval.step, retrieval.error = ("failed" if step else "done"), step, error
        retrieval.instances, retrieval.finished_at = sent, utcnow()
        job = session.get(Job, job_id)
        if job is not None and job.is_open:
            job.is_open = False
            refresh_job(session, job_id)
        session.commit()
    log.info("retrieval %d (job %d): %d instances from %s", retrieval_id, job_id, sent, name)
    return retrieval.status if not step else f"failed at {step}"
