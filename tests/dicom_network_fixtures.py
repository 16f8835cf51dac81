"""A stack of its own for the DICOM network tests: Redis, SQLite, a Celery worker that forwards SRs, the
forwarding worker, the DICOM listener, gunicorn, and the forwarding destination (a pynetdicom SCP).

It has its own Redis so that no other test's worker (configured without forwarding, on another database) takes
its batches.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db.session import make_engine, make_session_factory, session_scope
from db.setup import make_dirs, migrate
from db.users import add_token, create_user
from settings import Settings
from tests import services
from tests.dicom_network_helpers import Destination, start_listener

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
    database_url = f"sqlite:///{home / 'radbatch.db'}"
    migrate(database_url)
    make_dirs(Settings(home=home, database_url=database_url, secret_key="network"))
    destination = Destination(home / "forwarded")
    dicom_port = services.free_port()
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as session:
        user = create_user(session, "pacs-owner", "network password")
        token = add_token(session, user, name="network")
    env = services.service_env(
        {
            "RADBATCH_HOME": str(home),
            "RADBATCH_DATABASE_URL": database_url,
            "RADBATCH_REDIS_URL": redis_url,
            "RADBATCH_BATCH_SIZE": "16",
            "RADBATCH_SECRET_KEY": "network",
            "RADBATCH_WORKER_METRICS_PORT": str(services.free_port()),
            "RADBATCH_DICOM_PORT": str(dicom_port),
            "RADBATCH_DICOM_USER": "pacs-owner",
            "RADBATCH_DICOM_ALLOWED_AETS": ",".join(ALLOWED_AETS),
            "RADBATCH_DICOM_FORWARD": destination.address,
        }
    )
    logs = home / "logs"
    started: list[subprocess.Popen] = []
    try:
        started.append(services.start_worker(env, logs / "worker.log", redis_url))
        forwarder = [str(services.BIN / "celery"), "-A", "worker.forwarder", "worker", "-Q", "radbatch-forward"]
        forwarder += ["--pool", "threads", "--concurrency", "2", "--loglevel", "INFO", "-n", "fw@%h"]
        forwarder += ["--without-mingle", "--without-gossip"]
        started.append(services.start_process(forwarder, env, logs / "forwarder.log"))
        web, base_url = services.start_gunicorn(env, logs / "web.log")
        started.append(web)
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
        yield stack
        started.append(stack.listener)
    finally:
        for process in reversed(started):
            services.stop_process(process, timeout=60)
        destination.stop()
        engine.dispose()
        services.stop_process(redis_process)
