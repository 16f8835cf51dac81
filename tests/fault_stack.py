"""The fault tests' stacks: Redis with an append-only file, a database, a (memory-capped) worker and gunicorn,
all started for one test module, and the uploads and SQL checks the tests share."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import requests
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Image, ImageStatus, Job, Prediction
from db.session import make_engine, make_session_factory, session_scope
from db.setup import make_dirs, migrate
from db.users import add_token, create_user
from settings import Settings
from tests import services
from tests.conftest import PIPELINE_IMAGES
from tests.faults import AofRedis, MemoryCap, start_worker

STUCK_AFTER, SWEEP_INTERVAL, MAX_ATTEMPTS, BATCH_SIZE = 5, 2, 2, 16
MODELS = ("cnn", "unet", "ensemble")
MB = 2**20


@dataclasses.dataclass
class FaultStack:
    home: Path
    env: dict[str, str]
    sessions: sessionmaker[Session]
    redis: AofRedis
    token: str
    port: int
    memory: MemoryCap | None = None
    worker: subprocess.Popen | None = None
    web: subprocess.Popen | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def start_web(self) -> None:
        argv = [str(services.BIN / "gunicorn"), "--bind", f"127.0.0.1:{self.port}", "--workers", "1", "--threads", "4"]
        argv += ["--no-control-socket", "--timeout", "120", "web:create_app()"]
        log = self.home / "logs" / "web.log"
        self.web = services.start_process(argv, self.env, log)
        check = lambda: requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).ok  # noqa: E731
        services.ready_or_stopped(self.web, check, 60, "gunicorn", log)

    def kill_web(self) -> None:
        os.killpg(self.web.pid, signal.SIGKILL)
        self.web.wait(10)

    def stop(self) -> None:
        for process in (self.web, self.worker):
            if process is not None:
                services.stop_process(process, timeout=60)
        self.redis.stop()
        self.sessions.kw["bind"].dispose()  # this process's pooled connections, closed rather than garbage-collected
        if self.memory is not None:
            self.memory.close()


def start_stack(home: Path, database_url: str, memory: MemoryCap | None = None) -> FaultStack:
    redis_server = AofRedis(home / "redis").start()
    migrate(database_url)
    env = services.service_env(
        {
            "RADBATCH_HOME": str(home),
            "RADBATCH_DATABASE_URL": database_url,
            "RADBATCH_REDIS_URL": redis_server.url,
            "RADBATCH_BATCH_SIZE": str(BATCH_SIZE),
            "RADBATCH_SECRET_KEY": "faults",
            "RADBATCH_STUCK_AFTER": str(STUCK_AFTER),
            "RADBATCH_SWEEP_INTERVAL": str(SWEEP_INTERVAL),
            "RADBATCH_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        }
    )
    make_dirs(Settings(home=home, database_url=database_url, secret_key="faults"))
    sessions = make_session_factory(make_engine(database_url))
    with session_scope(sessions) as session:
        token = add_token(session, create_user(session, "faults", "faults password"), name="faults")
    stack = FaultStack(home, env, sessions, redis_server, token, services.free_port(), memory)
    try:
        stack.worker = start_worker(env, home / "logs" / "worker.log", redis_server.url, memory)
        stack.start_web()
    except BaseException:
        stack.stop()
        raise
    return stack


def pipeline_files(count: int, prefix: str) -> list[tuple[str, bytes]]:
    sources = sorted(PIPELINE_IMAGES.glob("*.png"))
    return [
        (f"{prefix}/{i:03d}-{sources[i % len(sources)].name}", sources[i % len(sources)].read_bytes())
        for i in range(count)
    ]


def multipart(stack: FaultStack, url: str, files: list[tuple[str, bytes]], key: str) -> requests.PreparedRequest:
    parts = [("files", (path, data, "application/octet-stream")) for path, data in files]
    headers = stack.auth | {"Idempotency-Key": key}
    return requests.Request("POST", url, files=parts, headers=headers).prepare()


def post_until_ok(stack: FaultStack, request: requests.PreparedRequest, timeout: float = 120) -> dict:
    """Send `request` until it succeeds, as a client with an Idempotency-Key does; returns the JSON body."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = requests.Session().send(request, timeout=60)
            if response.ok:
                return response.json()
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"{request.url} never succeeded"
        time.sleep(0.5)


def open_job(stack: FaultStack, name: str) -> int:
    request = requests.Request("POST", f"{stack.api}/jobs", data={"open": "true", "name": name}, headers=stack.auth)
    return post_until_ok(stack, request.prepare())["id"]


def close_job(stack: FaultStack, job_id: int) -> None:
    post_until_ok(stack, requests.Request("POST", f"{stack.api}/jobs/{job_id}/close", headers=stack.auth).prepare())


def job_counts(stack: FaultStack, job_id: int) -> dict[ImageStatus, int]:
    with session_scope(stack.sessions) as session:
        query = select(Image.status, func.count()).where(Image.job_id == job_id).group_by(Image.status)
        return dict(session.execute(query).all())


def wait_finished(stack: FaultStack, job_id: int, timeout: float) -> float:
    def finished():
        with session_scope(stack.sessions) as session:
            return session.get(Job, job_id).status.is_finished

    services.wait_for(finished, timeout, f"job {job_id}", stack.worker, stack.home / "logs" / "worker.log")
    return time.monotonic()


def assert_nothing_lost_or_doubled(stack: FaultStack, job_id: int, paths: list[str], failed: int = 0) -> None:
    with session_scope(stack.sessions) as session:
        rows = session.execute(select(Image.path, Image.status).where(Image.job_id == job_id)).all()
        per_image = session.execute(
            select(Image.id, func.count(Prediction.id))
            .outerjoin(Prediction, Prediction.image_id == Image.id)
            .where(Image.job_id == job_id, Image.status == ImageStatus.done)
            .group_by(Image.id)
        ).all()
    assert sorted(path for path, _ in rows) == sorted(paths), "an uploaded file is missing or has two rows"
    statuses = [status for _, status in rows]
    assert (statuses.count(ImageStatus.done), statuses.count(ImageStatus.failed)) == (len(paths) - failed, failed)
    assert {count for _, count in per_image} == {len(MODELS)} and len(per_image) == len(paths) - failed


def upload_job(stack: FaultStack, files: list[tuple[str, bytes]], name: str) -> int:
    job_id = open_job(stack, name)
    post_until_ok(stack, multipart(stack, f"{stack.api}/jobs/{job_id}/files", files, str(uuid.uuid4())))
    close_job(stack, job_id)
    return job_id
