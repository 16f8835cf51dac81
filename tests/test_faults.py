"""Fault injection against real processes: Redis SIGKILLed and restarted from its append-only file, PostgreSQL
crashed and restarted, the web server SIGKILLed mid-upload, a poison image that gets the worker OOM-killed.

Each test ends with the same SQL check: every uploaded file has exactly one row, every image is finished, and
each finished image has exactly one prediction per model (0 lost, 0 doubled). Two stacks, started once per
module: SQLite (with a memory-capped worker) and a private PostgreSQL cluster, each with its own Redis.
Select them with `-m faults`.
"""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
import requests
from PIL import Image as PILImage
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from broker.inflight import UNACKED_KEY
from db.models import Image, ImageStatus, Job, Prediction
from db.session import make_engine, make_session_factory, session_scope
from db.setup import make_dirs, migrate
from db.users import add_token, create_user
from settings import Settings
from tests import services
from tests.conftest import PIPELINE_IMAGES, skip_or_fail
from tests.faults import AofRedis, MemoryCap, PrivatePostgres, start_worker

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

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


@pytest.fixture(scope="module")
def sqlite_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    home = tmp_path_factory.mktemp("faults-sqlite")
    stack = start_stack(home, f"sqlite:///{home / 'radbatch.db'}", MemoryCap())
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def postgresql_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FaultStack, PrivatePostgres]]:
    cluster = PrivatePostgres()
    problem = cluster.unavailable()
    if problem:
        skip_or_fail(problem)
    try:
        cluster.init()
        stack = start_stack(tmp_path_factory.mktemp("faults-postgresql"), cluster.url)
        yield stack, cluster
        stack.stop()
    finally:
        cluster.destroy()


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


def test_redis_killed_mid_job_and_restarted_from_its_aof_the_job_finishes_once(sqlite_stack: FaultStack) -> None:
    stack = sqlite_stack
    files = pipeline_files(96, "redis")
    job_id = upload_job(stack, files, "redis fault")
    with session_scope(stack.sessions) as session:
        ids = list(session.scalars(select(Image.id).where(Image.job_id == job_id).order_by(Image.id)))
    thumbnail = stack.home / "thumbnails" / f"{ids[BATCH_SIZE + 4]}.png"
    services.wait_for(thumbnail.exists, 240, "the worker to be inside the second batch")

    stack.redis.kill()  # mid-batch
    time.sleep(2)
    stack.redis.start()  # the same port and append-only file, as supervisord restarts it
    back = time.monotonic()
    os.kill(services.pool_children(stack.worker.pid)[0], signal.SIGKILL)  # and the batch's process dies too
    finished = wait_finished(stack, job_id, 240)
    assert_nothing_lost_or_doubled(stack, job_id, [path for path, _ in files])
    took = finished - back
    print(f"\nredis fault: job finished {took:.1f} s after Redis came back (visibility timeout 3600 s)")
    assert took < 120

    client = redis.Redis.from_url(stack.redis.url)  # nothing left to come back after the visibility timeout
    services.wait_for(lambda: client.hlen(UNACKED_KEY) == 0, 30, "kombu's unacked hash to empty")


def test_a_batch_past_its_soft_time_limit_is_retried_image_by_image_not_acknowledged_unfinished(
    sqlite_stack: FaultStack,
) -> None:
    stack = sqlite_stack
    files = pipeline_files(2 * BATCH_SIZE, "overrun")
    job_id = upload_job(stack, files, "overrun")
    with session_scope(stack.sessions) as session:
        ids = list(session.scalars(select(Image.id).where(Image.job_id == job_id).order_by(Image.id)))
    services.wait_for((stack.home / "thumbnails" / f"{ids[4]}.png").exists, 240, "the first batch to start")
    os.kill(services.pool_children(stack.worker.pid)[0], signal.SIGUSR1)  # how the pool signals a soft time limit
    wait_finished(stack, job_id, 240)
    assert_nothing_lost_or_doubled(stack, job_id, [path for path, _ in files])
    with session_scope(stack.sessions) as session:
        attempts = list(session.scalars(select(Image.attempts).where(Image.job_id == job_id).order_by(Image.id)))
    assert attempts == [2] * BATCH_SIZE + [1] * BATCH_SIZE  # the overrun batch, then each of its images alone
    assert "ran past" in (stack.home / "logs" / "worker.log").read_text(errors="replace")


def huge_png(side: int = 8000) -> bytes:
    """A valid RGBA PNG that compresses to a few hundred KB but takes about 300 MB to decode, even though the
    decoder reduces it band by band right after (a PNG cannot be decoded at a lower resolution)."""
    pixels = np.zeros((side, side, 4), np.uint8)
    pixels[::7, :, 0] = 200
    pixels[:, :, 3] = 255
    buffer = io.BytesIO()
    PILImage.fromarray(pixels, "RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_poison_image_that_gets_the_worker_oom_killed_fails_alone_and_its_batch_mates_finish(
    sqlite_stack: FaultStack,
) -> None:
    stack, memory = sqlite_stack, sqlite_stack.memory
    wait_finished(stack, upload_job(stack, pipeline_files(8, "warm-up"), "warm-up"), 240)
    memory.set_limit(memory.usage() + 120 * MB, stack.worker.pid)  # room for batches of small images, not for this
    try:
        files = pipeline_files(BATCH_SIZE - 1, "poison") + [("poison/huge.png", huge_png())]
        job_id = upload_job(stack, files, "poison")
        wait_finished(stack, job_id, 400)
    finally:
        memory.lift()
    assert_nothing_lost_or_doubled(stack, job_id, [path for path, _ in files], failed=1)
    with session_scope(stack.sessions) as session:
        images = {image.path: image for image in session.scalars(select(Image).where(Image.job_id == job_id))}
    huge = images.pop("poison/huge.png")
    assert huge.error.startswith(f"gave up after {MAX_ATTEMPTS} attempts: each time, the worker process stopped")
    assert huge.attempts == MAX_ATTEMPTS and {image.attempts for image in images.values()} == {2}
    print(f"\npoison: {memory.oom_kills()} kills by the {memory.enforced_by}; error: {huge.error}")
    assert memory.oom_kills() >= MAX_ATTEMPTS


def send_and_kill(stack: FaultStack, request: requests.PreparedRequest, cut: str | float) -> None:
    """Send `request` on a raw socket and SIGKILL the web server: mid-body, or `cut` seconds after the body."""
    path = request.url.split(str(stack.port), 1)[1]
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{stack.port}\r\nConnection: close\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in request.headers.items()) + "\r\n"
    body = request.body
    with socket.create_connection(("127.0.0.1", stack.port), timeout=30) as connection:
        if cut == "mid-body":
            connection.sendall(head.encode() + body[: len(body) // 2])
            time.sleep(0.2)
        else:
            connection.sendall(head.encode() + body)
            time.sleep(cut)
        stack.kill_web()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_web_server_killed_mid_upload_and_a_retry_with_the_same_key_stores_each_file_once(
    request: pytest.FixtureRequest, backend: str
) -> None:
    stack = request.getfixturevalue(f"{backend}_stack")
    stack = stack if isinstance(stack, FaultStack) else stack[0]
    job_id = open_job(stack, f"web fault {backend}")
    paths, replayed = [], []
    for n, cut in enumerate(("mid-body", 0.0, 0.3)):
        files = pipeline_files(24, f"web{n}")
        paths += [path for path, _ in files]
        chunk = multipart(stack, f"{stack.api}/jobs/{job_id}/files", files, str(uuid.uuid4()))
        send_and_kill(stack, chunk, cut)
        stack.start_web()
        response = requests.Session().send(chunk, timeout=60)
        assert response.ok and response.json()["added"] == len(files), response.text
        replayed.append(response.headers.get("Idempotent-Replayed") == "true")
    close_job(stack, job_id)
    wait_finished(stack, job_id, 300)
    assert_nothing_lost_or_doubled(stack, job_id, paths)
    print(f"\nweb fault ({backend}): retries answered from the stored response: {replayed}")


def test_postgresql_crashed_and_restarted_mid_job_loses_and_doubles_nothing(
    postgresql_stack: tuple[FaultStack, PrivatePostgres],
) -> None:
    stack, cluster = postgresql_stack
    first, second = pipeline_files(48, "pg-first"), pipeline_files(48, "pg-second")
    job_id = open_job(stack, "postgresql fault")
    post_until_ok(stack, multipart(stack, f"{stack.api}/jobs/{job_id}/files", first, str(uuid.uuid4())))
    services.wait_for(lambda: job_counts(stack, job_id).get(ImageStatus.done, 0) >= BATCH_SIZE, 240, "a batch")

    cluster.stop("immediate")  # a crash: the next start replays the WAL
    retried = threading.Thread(  # the client keeps retrying its next chunk, with one Idempotency-Key
        target=post_until_ok,
        args=(stack, multipart(stack, f"{stack.api}/jobs/{job_id}/files", second, str(uuid.uuid4()))),
    )
    retried.start()
    time.sleep(5)
    cluster.start()
    back = time.monotonic()
    retried.join(180)
    close_job(stack, job_id)
    finished = wait_finished(stack, job_id, 300)
    assert_nothing_lost_or_doubled(stack, job_id, [path for path, _ in first + second])
    print(f"\npostgresql fault: job finished {finished - back:.1f} s after PostgreSQL came back")
