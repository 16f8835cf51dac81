"""The recovery sweep and delivery accounting against a real Redis (kombu's own messages) and a real database.

No worker runs here: messages are sent with the Celery client and taken by a process that dies holding them,
as a worker killed mid-batch (or one whose Redis restarted under it) leaves them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
import redis
from sqlalchemy import select

from broker import LANES, PREDICT_TASK, QUEUE, make_celery, shard_queue
from broker.app import redis_list
from broker.inflight import UNACKED_INDEX_KEY, HolderBeacon, inspect, parse_message, queued_messages, unacked_messages
from db.idempotency import remember_key
from db.models import IdempotencyKey, Image, ImageStatus, Job, JobStatus, utcnow
from db.session import make_engine, make_session_factory, session_scope
from db.setup import migrate
from db.users import create_user
from settings import Settings
from worker.delivery import claim
from worker.recovery import sweep_once

RECOVERY_REDIS_DB = 13
TAKE_AND_DIE = """
import os, sys
from kombu import Connection
with Connection(sys.argv[1]) as connection:
    message = connection.default_channel.basic_get(sys.argv[2], no_ack=False)
    print(message.delivery_tag, flush=True)
    os._exit(0)  # dies holding it, like a worker killed mid-batch
"""


def take_and_die(url: str) -> str:
    """Take the oldest message off the queue into kombu's `unacked`, and exit without acknowledging it."""
    done = subprocess.run([sys.executable, "-c", TAKE_AND_DIE, url, QUEUE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def sweep_env(tmp_path, redis_url: str):
    url = redis_url.rsplit("/", 1)[0] + f"/{RECOVERY_REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    database_url = f"sqlite:///{tmp_path / 'sweep.db'}"
    migrate(database_url)
    settings = Settings(home=tmp_path, database_url=database_url, redis_url=url, stuck_after=60, batch_size=4)
    engine = make_engine(database_url)
    yield settings, make_session_factory(engine), client
    client.flushdb()
    engine.dispose()


def add_job(session, user, count: int, status=ImageStatus.queued, age_s: float = 0, **job_fields) -> list[int]:
    then = utcnow() - timedelta(seconds=age_s)
    job = Job(user_id=user.id, name="sweep", created_at=then, **job_fields)
    session.add(job)
    session.flush()
    images = [
        Image(job_id=job.id, filename=f"{i}.png", path=f"{i}.png", stored_name=f"{job.id}-{i}.png", status=status)
        for i in range(count)
    ]
    for image in images:
        image.created_at = then
        image.queued_at = then if status == ImageStatus.queued else None
    session.add_all(images)
    session.flush()
    return [image.id for image in images]


def test_the_sweep_sends_again_exactly_the_images_without_a_live_message(sweep_env) -> None:
    settings, sessions, client = sweep_env
    app = make_celery(settings)
    with session_scope(sessions) as session:
        user = create_user(session, "sweeper", "pw")
        waiting = add_job(session, user, 4, age_s=600)  # old, but its message waits in the queue: a backlog
        lost = add_job(session, user, 3, age_s=600)  # no message at all (lost in a crash or a Redis restart)
        recent = add_job(session, user, 2)  # no message yet: the sender may be about to send it
        orphaned = add_job(session, user, 2)  # on a message taken by a worker that is gone
        held = add_job(session, user, 2)  # on a message a live worker holds
        cancelled = add_job(session, user, 2, age_s=600)
        session.get(Job, session.get(Image, cancelled[0]).job_id).status = JobStatus.cancelled  # being cancelled
        abandoned = add_job(session, user, 2, status=ImageStatus.pending, age_s=7200, is_open=True)
        filling = add_job(session, user, 1, status=ImageStatus.pending, age_s=60, is_open=True)
        remember_key(session, user, "old", "f" * 64, 200, "{}", None).created_at = utcnow() - timedelta(days=2)
        remember_key(session, user, "new", "f" * 64, 200, "{}", None)
        job_of = {ids[0]: session.get(Image, ids[0]).job_id for ids in (lost, orphaned, held, abandoned, filling)}
        owner = user.id

    orphaned_task = app.send_task(PREDICT_TASK, args=[orphaned]).id
    orphan_tag = take_and_die(settings.effective_redis_url)
    client.zadd(UNACKED_INDEX_KEY, {orphan_tag: time.time() - 60})  # taken a minute ago
    held_task = app.send_task(PREDICT_TASK, args=[held]).id
    held_tag = take_and_die(settings.effective_redis_url)
    client.zadd(UNACKED_INDEX_KEY, {held_tag: time.time() - 60})
    HolderBeacon(settings.effective_redis_url, lambda: [held_task]).publish()
    app.send_task(PREDICT_TASK, args=[waiting])
    assert {carried.task_id for carried, _ in unacked_messages(client).values()} == {orphaned_task, held_task}

    report = sweep_once(settings, app, client)
    assert report is not None and report.orphans == 1
    assert report.closed_jobs == [job_of[abandoned[0]]]
    assert report.sent == {job_of[lost[0]]: lost, job_of[orphaned[0]]: orphaned, job_of[abandoned[0]]: abandoned}
    assert sweep_once(settings, app, client) is None  # one sweep per interval, whoever runs it

    on_queue = {i for carried in queued_messages(client) for i in carried.image_ids}
    resent = client.lrange(redis_list(shard_queue(owner), LANES["normal"]), 0, -1)  # the owner's shard, its lane
    assert sorted(i for raw in resent for i in parse_message(raw).image_ids) == sorted(lost + orphaned + abandoned)
    assert on_queue == set(waiting + lost + orphaned + abandoned)
    assert [carried.task_id for carried, _ in unacked_messages(client).values()] == [held_task]
    with session_scope(sessions) as session:
        statuses = dict(session.execute(select(Image.id, Image.status)).all())
        assert {statuses[i] for i in abandoned + recent} == {ImageStatus.queued}
        assert statuses[filling[0]] == ImageStatus.pending
        assert session.get(Job, job_of[filling[0]]).is_open and not session.get(Job, job_of[abandoned[0]]).is_open
        assert list(session.scalars(select(IdempotencyKey.key))) == ["new"]


def test_an_unacknowledged_message_is_live_while_young_or_held(sweep_env) -> None:
    settings, _sessions, client = sweep_env
    app = make_celery(settings)
    task = app.send_task(PREDICT_TASK, args=[[7, 8]]).id
    take_and_die(settings.effective_redis_url)
    assert inspect(client, gap=0.01).live == {7, 8}  # just taken: its worker may not have said so yet
    assert inspect(client, gap=0.01, grace=0).orphans and not inspect(client, gap=0.01, grace=0).live
    HolderBeacon(settings.effective_redis_url, lambda: [task]).publish()
    assert inspect(client, gap=0.01, grace=0).live == {7, 8}


def test_a_delivery_counts_attempts_first_retries_the_attempted_alone_and_gives_up_at_the_cap(
    e2e_database_url: str,
) -> None:
    engine = make_engine(e2e_database_url)
    sessions = make_session_factory(engine)
    try:
        with session_scope(sessions) as session:
            user = create_user(session, f"claims-{time.time_ns()}", "pw")
            ids = add_job(session, user, 4)
            for image_id, attempts in zip(ids, (0, 1, 3, 0)):
                session.get(Image, image_id).attempts = attempts
        with session_scope(sessions) as session:
            first = claim(session, ids, max_attempts=3)
        assert (first.run, first.alone, first.given_up) == ([ids[0], ids[3]], [ids[1]], [ids[2]])
        with session_scope(sessions) as session:
            images = {image.id: image for image in session.scalars(select(Image).where(Image.id.in_(ids)))}
            assert [images[i].attempts for i in ids] == [1, 1, 3, 1]
            assert images[ids[2]].status == ImageStatus.failed
            assert images[ids[2]].error.startswith("gave up after 3 attempts: each time, the worker process stopped")
            assert session.get(Job, images[ids[2]].job_id).failed == 1
        with session_scope(sessions) as session:
            alone = claim(session, [ids[1]], max_attempts=3)  # on its own, an attempted image runs again
        assert alone.run == [ids[1]]
        with session_scope(sessions) as session:
            assert session.get(Image, ids[1]).attempts == 2
    finally:
        engine.dispose()


def test_the_worker_does_not_fork_a_pool_process_in_the_middle_of_a_sweep() -> None:
    """A child forked while the sweep thread is inside SQLite or libpq may inherit one of their locks held and hang
    on its first query (about 2 children in 100 did, forking while a thread ran SQLAlchemy on SQLite)."""
    from worker.recovery import _NO_FORK, hold_forks_during_sweeps

    hold_forks_during_sweeps()
    sweeping = threading.Thread(target=lambda: (_NO_FORK.acquire(), time.sleep(0.5), _NO_FORK.release()))
    sweeping.start()
    time.sleep(0.05)
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os._exit(0 if _NO_FORK.acquire(timeout=1) else 1)  # the child's copy of the lock is free
    waited = time.monotonic() - started
    _, status = os.waitpid(pid, 0)
    sweeping.join()
    assert waited >= 0.3 and os.WEXITSTATUS(status) == 0
