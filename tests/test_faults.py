"""Fault injection against real processes: Redis SIGKILLed and restarted from its append-only file, PostgreSQL
crashed and restarted, the web server SIGKILLed mid-upload, a poison image that gets the worker OOM-killed.

Each test ends with the same SQL check: every uploaded file has exactly one row, every image is finished, and
each finished image has exactly one prediction per model (0 lost, 0 doubled). Two stacks, started once per
module: SQLite (with a memory-capped worker) and a private PostgreSQL cluster, each with its own Redis.
Select them with `-m faults`.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import redis
import requests
from PIL import Image as PILImage
from sqlalchemy import select

from broker.inflight import UNACKED_KEY
from db.models import Image, ImageStatus
from db.session import session_scope
from tests import services
from tests.conftest import PIPELINE_ORIGINALS, skip_or_fail
from tests.fault_stack import (
    BATCH_SIZE,
    MAX_ATTEMPTS,
    MB,
    FaultStack,
    assert_nothing_lost_or_doubled,
    close_job,
    job_counts,
    multipart,
    open_job,
    pipeline_files,
    post_until_ok,
    start_stack,
    upload_job,
    wait_finished,
)
from tests.faults import MemoryCap, PrivatePostgres

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


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
    # Full-size originals make the first batch take a while (decoding 16 of them), so the signal finds it running.
    originals = sorted(PIPELINE_ORIGINALS.glob("*.png"))
    slow = [(f"overrun/{i:03d}-{originals[i % 2].name}", originals[i % 2].read_bytes()) for i in range(BATCH_SIZE)]
    files = slow + pipeline_files(BATCH_SIZE, "overrun-small")
    job_id = upload_job(stack, files, "overrun")
    with session_scope(stack.sessions) as session:
        ids = list(session.scalars(select(Image.id).where(Image.job_id == job_id).order_by(Image.id)))
    first_thumbnail, deadline = stack.home / "thumbnails" / f"{ids[0]}.png", time.monotonic() + 240
    while not first_thumbnail.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert first_thumbnail.exists(), "the first batch never started"
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
