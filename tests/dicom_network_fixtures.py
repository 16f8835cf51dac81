"""A stack of its own for the DICOM network tests: Redis, SQLite, a Celery worker that forwards SRs, the
forwarding worker, the DICOM listener, gunicorn, and the forwarding destination (a pynetdicom SCP).

It has its own Redis so that no other test's worker (configured without forwarding, on another database) takes
its batches.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db.session import make_engine, make_session_factory
from db.setup import make_dirs
from settings import Settings
from tests import services
from tests.dicom_network_helpers import Destination, start_listener
from tests.stack import migrated_database, stack_env, user_with_token, worker_and_web

ALLOWED_AETS = ("PROBE", "ECHOSCU", "STORESCU", "KILLTEST", "PYNETDICOM")


@dataclass
class NetworkStack:
    home: Path
    env: dict[str, str]
    sessions: sessionmaker[Session]
    api: services.Api
    base_url: str
    token: str
    dicom_port: int
    destination: Destination
    listener: subprocess.Popen
    listener_log: Path

    def restart_listener(self) -> None:
        services.stop_process(self.listener)
        self.listener = start_listener(self.env, self.listener_log)


@pytest.fixture(scope="module")
def network_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetworkStack]:
    home = tmp_path_factory.mktemp("dicom-network")
    redis_process, redis_url = services.start_redis(home / "redis")
    destination = Destination(home / "forwarded")
    dicom_port = services.free_port()
    logs = home / "logs"
    with ExitStack() as running:
        running.callback(services.stop_process, redis_process)
        running.callback(destination.stop)
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
            RADBATCH_DICOM_FORWARD=destination.address,
        )
        _, base_url = running.enter_context(worker_and_web(env, logs, redis_url))
        forwarder = [str(services.BIN / "celery"), "-A", "worker.forwarder", "worker", "-Q", "radbatch-forward"]
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
            destination=destination,
            listener=start_listener(env, listener_log),
            listener_log=listener_log,
        )
        running.callback(lambda: services.stop_process(stack.listener, 60))  # the listener of the moment
        yield stack
