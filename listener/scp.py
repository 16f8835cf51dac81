"""The DICOM C-STORE SCP: a pynetdicom AE whose handlers only store, record and close jobs.

Every storage SOP class is accepted in every transfer syntax pynetdicom knows (ingest decides what it can
read and says why on the row). The raw encoded data set is written after its file meta information, as the
sender encoded it, without decoding it. Who may associate, and how many at once, is `listener.guard`. Each job
belongs to the user RADBATCH_DICOM_AET_USERS maps its calling AE title to (else RADBATCH_DICOM_USER) and is
audited (`job.create`, with the peer's address). An instance whose UIDs are not UIDs is refused with 0xA900.
"""

from __future__ import annotations

import io
import logging
import threading
from datetime import datetime, timezone
from typing import Any

from celery import Celery
from pydicom.dataset import Dataset
from pydicom.filewriter import write_file_meta_info
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification
from pynetdicom.utils import make_target
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from db.audit import record_event
from db.models import User
from db.retrievals import retrieving_job
from dicomio.instances import parse_instance
from dicomio.uids import identity_problem, uid_problem
from listener import jobs
from listener.guard import Guard, GuardedServer, aet_users, allowed_aets, check_exposure
from listener.storing import DOES_NOT_MATCH, OUT_OF_RESOURCES, SUCCESS, queue_quietly, store_instance
from settings import Settings

logger = logging.getLogger(__name__)
RESUME_WINDOW_S = 600  # how long a job cut off by a dead listener waits for its sender to come back


def part10_bytes(event: evt.Event) -> bytes:
    """The received data set as a DICOM file: preamble, file meta information, the data set as encoded."""
    buffer = io.BytesIO()
    buffer.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(buffer, event.file_meta, enforce_standard=True)
    buffer.write(event.request.DataSet.getvalue())
    return buffer.getvalue()


def _status(code: int, comment: str = "") -> Dataset:
    status = Dataset()
    status.Status = code
    if comment:
        status.ErrorComment = comment[:64]
    return status


class Listener:
    """The AE, its handlers and which job each live association fills."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], client: Celery):
        self.settings, self.sessions, self.client = settings, sessions, client
        self._lock = threading.Lock()
        self._jobs: dict[Association, int] = {}
        check_exposure(settings)
        self._retrievals: set[int] = set()  # jobs of retrievals: their moves' associations do not close them
        with sessions() as session:
            self._user_id = jobs.listener_user(session, settings.dicom_user).id
            self._users = {aet: jobs.listener_user(session, name).id for aet, name in aet_users(settings).items()}
            self._interrupted = jobs.interrupted_jobs(session, [self._user_id, *self._users.values()])
        if self._interrupted:
            logger.warning("jobs cut off by a previous listener, waiting for their senders: %s", self._interrupted)
        self._resume_timer = threading.Timer(RESUME_WINDOW_S, self.close_interrupted)
        self._resume_timer.daemon = True
        self.ae = self._make_ae()
        self.guard = Guard(settings)

    def _make_ae(self) -> AE:
        ae = AE(ae_title=self.settings.dicom_aet)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        allowed = allowed_aets(self.settings)  # plus its own title: a retrieval by WADO-RS hands instances over so
        ae.require_calling_aet = [*allowed, self.settings.dicom_aet] if allowed else []
        ae.require_called_aet = True
        ae.acse_timeout = self.settings.dicom_artim_timeout
        ae.network_timeout = self.settings.dicom_idle_timeout
        ae.maximum_associations = self.settings.dicom_max_associations
        return ae

    def handlers(self) -> list[tuple]:
        return [
            *self.guard.handlers(),
            (evt.EVT_C_ECHO, self.on_echo),
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_RELEASED, self.on_end),
            (evt.EVT_ABORTED, self.on_end),
            (evt.EVT_CONN_CLOSE, self.on_end),
        ]

    def serve(self, block: bool = True) -> GuardedServer:
        """Listen on RADBATCH_DICOM_HOST:RADBATCH_DICOM_PORT; with block=False return the server (tests)."""
        self._resume_timer.start()
        address = (self.settings.dicom_host, self.settings.dicom_port)
        logger.info("DICOM listener %s on %s:%d", self.settings.dicom_aet, *address)
        server_class = type("Server", (GuardedServer,), {"max_per_peer": self.settings.dicom_max_per_peer})
        server = self.ae.make_server(address, evt_handlers=self.handlers(), server_class=server_class)
        self.ae._servers.append(server)  # so that AE.shutdown() stops it, as for AE.start_server
        if block:
            server.serve_forever()
        else:
            threading.Thread(target=make_target(server.serve_forever), name="DicomListener", daemon=True).start()
        return server

    def on_echo(self, event: evt.Event) -> int:
        logger.info("C-ECHO from %s", event.assoc.requestor.ae_title)
        return SUCCESS

    def _retrieval_job(self, request: Any) -> int | None:
        """The retrieval job a C-STORE sub-operation of radbatch's own C-MOVE belongs to (db.retrievals)."""
        originator = getattr(request, "MoveOriginatorApplicationEntityTitle", None) or ""
        originator = (originator.decode(errors="replace") if isinstance(originator, bytes) else str(originator)).strip()
        message = getattr(request, "MoveOriginatorMessageID", None)
        if originator != self.settings.dicom_aet or message is None:
            return None
        with self.sessions() as session:
            return retrieving_job(session, int(message))

    def _job_for(self, assoc: Association, request: Any) -> int:
        with self._lock:
            if assoc in self._jobs:
                return self._jobs[assoc]
            retrieval = self._retrieval_job(request)
            if retrieval is not None:
                self._jobs[assoc] = retrieval
                self._retrievals.add(retrieval)
                logger.info("association from %s: retrieval job %d", assoc.requestor.ae_title.strip(), retrieval)
                return retrieval
            calling_aet = assoc.requestor.ae_title.strip()
            resumed = self._interrupted.pop(calling_aet, None)
            with self.sessions() as session:
                if resumed is not None and jobs.accepting(session, resumed):
                    job_id = resumed
                    logger.info("%s continues job %d, cut off by a previous listener", calling_aet, job_id)
                else:
                    user = session.get(User, self._users.get(calling_aet, self._user_id))
                    lane = jobs.aet_priority(self.settings.dicom_aet_priorities, calling_aet)
                    job_id = jobs.start_job(session, user, calling_aet, datetime.now(timezone.utc), lane)
                    record_event(session, "job.create", user, job_id, assoc.requestor.address, {"via": "dicom"})
                    session.commit()
                    logger.info("association from %s: job %d", calling_aet, job_id)
            self._jobs[assoc] = job_id
            return job_id

    def on_store(self, event: evt.Event) -> Dataset:
        try:
            job_id = self._job_for(event.assoc, event.request)
        except SQLAlchemyError as error:
            logger.error("could not start a job: %s", error)
            return _status(OUT_OF_RESOURCES, "database unavailable")
        data = part10_bytes(event)
        instance = parse_instance(data)  # the one parse: ingest stores what it made of the file
        identity = instance.identity
        problem = identity_problem(identity)
        affected = str(event.request.AffectedSOPInstanceUID or "")
        if problem is None and uid_problem(affected) is not None:
            problem = f"Affected SOP Instance UID {uid_problem(affected)}"
        if problem is not None:
            logger.warning("job %d: refused an instance with a bad UID: %s", job_id, problem)
            return _status(DOES_NOT_MATCH, problem)
        outcome = store_instance(
            self.sessions, self.settings, self.client, job_id, (identity[2], identity[1]), data, instance.parsed
        )
        if outcome.status != SUCCESS:
            logger.warning("job %d: %s answered 0x%04X (%s)", job_id, identity[1], outcome.status, outcome.comment)
        return _status(outcome.status, outcome.comment)

    def on_end(self, event: evt.Event) -> None:
        """Released, aborted or dropped: close the association's job and queue what arrived."""
        with self._lock:
            job_id = self._jobs.pop(event.assoc, None)
        if job_id is not None and job_id in self._retrievals:  # the retrieval closes its job once every move is done
            queue_quietly(self.sessions, self.client, job_id, self.settings.batch_size, full_batches_only=False)
        elif job_id is not None:
            self.close(job_id, f"association from {event.assoc.requestor.ae_title.strip()} {event.event.name}")

    def close(self, job_id: int, why: str) -> None:
        try:
            with self.sessions() as session:
                closed = jobs.close_job(session, job_id)
                session.commit()
        except SQLAlchemyError as error:  # the open-job TTL of the recovery sweep closes it later
            logger.error("job %d: could not close it (%s): %s", job_id, why, error)
            return
        sent = queue_quietly(self.sessions, self.client, job_id, self.settings.batch_size, full_batches_only=False)
        if closed:
            logger.info("job %d closed (%s); %d images queued now", job_id, why, sent)

    def close_interrupted(self) -> None:
        """Close the cut-off jobs whose senders did not come back within RESUME_WINDOW_S."""
        with self._lock:
            left, self._interrupted = self._interrupted, {}
        for aet, job_id in left.items():
            self.close(job_id, f"{aet} did not come back within {RESUME_WINDOW_S} s")

    def shutdown(self) -> None:
        """Stop listening; the jobs of live associations are closed as those end."""
        self._resume_timer.cancel()
        self.ae.shutdown()
