"""A stack of its own for the DICOM network tests: Redis, SQLite, a Celery worker that forwards SRs, the
forwarding worker, the DICOM listener, gunicorn, and the forwarding destination (a pynetdicom SCP, or for
`pacs_stack` the session's Orthanc).

It has its own Redis so that no other test's worker (configured without forwarding, on another database) takes
its batches.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from broker import OUTBOUND_QUEUES
from db.session import make_engine, make_session_factory
from db.setup import make_dirs
from settings import Settings
from tests import services
from tests.dicom_network_helpers import Destination, start_listener
from tests.orthanc import AE_TITLE as ORTHANC_AET
from tests.orthanc import Orthanc, start_orthanc
from tests.orthanc import missing as orthanc_missing
from tests.outbound_receivers import FhirReceiver, Hl7Receiver
from tests.stack import migrated_database, skip_or_fail, stack_env, user_with_token, worker_and_web

ALLOWED_AETS = ("PROBE", "ECHOSCU", "STORESCU", "KILLTEST", "PYNETDICOM", ORTHANC_AET)


@dataclass
class NetworkStack:
    home: Path
    env: dict[str, str]
    sessions: sessionmaker[Session]
    api: services.Api
    base_url: str
    token: str
    dicom_port: int
    destination: Destination | None
    listener: subprocess.Popen
    listener_log: Path
    fhir: FhirReceiver | None = None
    hl7: Hl7Receiver | None = None

    def restart_listener(self) -> None:
        services.stop_process(self.listener)
        self.listener = start_listener(self.env, self.listener_log)


@contextmanager
def running_network_stack(home: Path, forward_to: str, **extra_env: str) -> Iterator[NetworkStack]:
    """Redis, SQLite, worker, web app, forwarding worker and listener in `home`, forwarding SRs to `forward_to`
    (AET@host:port); everything is stopped afterwards."""
    redis_process, redis_url = services.start_redis(home / "redis")
    dicom_port = services.free_port()
    logs = home / "logs"
    with ExitStack() as running:
        running.callback(services.stop_process, redis_process)
        database_url = running.enter_context(migrated_database("sqlite", home))
        make_dirs(Settings(home=home, database_url=database_url, secret_key="network"))
        engine = make_engine(database_url)
        running.callback(engine.dispose)
        sessions = make_session_factory(engine)
        token, _ = user_with_token(sessions, "pacs-owner", "network password")
        env = stack_env(
            home,
            database_url,
            redis_url,
            "network",
            RADBATCH_DICOM_PORT=str(dicom_port),
            RADBATCH_DICOM_USER="pacs-owner",
            RADBATCH_DICOM_ALLOWED_AETS=",".join(ALLOWED_AETS),
            RADBATCH_DICOM_FORWARD=forward_to,
            **extra_env,
        )
        _, base_url = running.enter_context(worker_and_web(env, logs, redis_url))
        forwarder = [str(services.BIN / "celery"), "-A", "worker.forwarder", "worker", "-Q", ",".join(OUTBOUND_QUEUES)]
        forwarder += ["--pool", "threads", "--concurrency", "2", "--loglevel", "INFO", "-n", "fw@%h"]
        forwarder += ["--without-mingle", "--without-gossip"]
        running.callback(services.stop_process, services.start_process(forwarder, env, logs / "forwarder.log"), 60)
        listener_log = logs / "listener.log"
        stack = NetworkStack(
            home=home,
            env=env,
            sessions=sessions,
            api=services.Api(base_url, token),
            base_url=base_url,
            token=token,
            dicom_port=dicom_port,
            destination=None,
            listener=start_listener(env, listener_log),
            listener_log=listener_log,
        )
        running.callback(lambda: services.stop_process(stack.listener, 60))  # the listener of the moment
        yield stack


@pytest.fixture(scope="module")
def network_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetworkStack]:
    home = tmp_path_factory.mktemp("dicom-network")
    destination = Destination(home / "forwarded")
    try:
        with running_network_stack(home, destination.address) as stack:
            stack.destination = destination
            yield stack
    finally:
        destination.stop()


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """Debian's Orthanc on free ports, with the DICOMweb plugin, once per test session."""
    problem = orthanc_missing()
    if problem:
        skip_or_fail(problem)
    pacs = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield pacs
    pacs.stop()


@pytest.fixture(scope="module")
def pacs_stack(orthanc: Orthanc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetworkStack]:
    """A network stack that forwards its SRs to the session's Orthanc, which knows it as modality `radbatch`, its
    FHIR Bundles to a FHIR endpoint and its ORU^R01 messages to an MLLP receiver (`stack.fhir`, `stack.hl7`), and
    pulls from Orthanc as source PACS (C-FIND/C-MOVE) and WEB (QIDO-RS/WADO-RS); DOWN answers nothing."""
    home = tmp_path_factory.mktemp("pacs-network")
    fhir, hl7 = FhirReceiver(), Hl7Receiver()
    try:
        sources = f"PACS={orthanc.address};WEB={orthanc.address},dicomweb={orthanc.dicomweb_url}"
        sources += f";DOWN=NOBODY@127.0.0.1:{services.free_port()}"
        extra = {"RADBATCH_FHIR_FORWARD": fhir.url, "RADBATCH_HL7_FORWARD": hl7.address}
        extra["RADBATCH_DICOM_SOURCES"] = sources
        with running_network_stack(home, orthanc.address, **extra) as stack:
            orthanc.add_modality("radbatch", "RADBATCH", stack.dicom_port)
            stack.fhir, stack.hl7 = fhir, hl7
            yield stack
    finally:
        fhir.stop()
        hl7.stop()
