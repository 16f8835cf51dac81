"""Fair lanes: a job's priority (API, CLI, DICOM rule) is its messages' priority, and its owner picks one of the
user shard queues. The messages are read back from a real Redis, and a real Celery worker with radbatch's queue
contract (tests/lane_probe.py: the predict task only records what it was given) shows the order it takes them in:
urgent before a normal backlog, and another user's batches interleaved with a backlog in the same lane."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from broker import (
    LANES,
    NOTIFY_QUEUE,
    PREDICT_QUEUES,
    USER_SHARDS,
    WORKER_QUEUES,
    make_celery,
    predict_lists,
    send_batches,
)
from broker.inflight import queued_messages
from listener.jobs import aet_priority
from settings import Settings
from tests import lane_probe, services

LANE_REDIS_DB = 10  # apart from the other tests' databases (11-14) and db 0, where the end-to-end worker takes tasks


@pytest.fixture(scope="module")
def lane_redis_url(redis_url: str) -> str:
    return redis_url.rsplit("/", 1)[0] + f"/{LANE_REDIS_DB}"


def test_each_job_goes_to_its_owners_shard_with_its_lanes_priority(lane_redis_url: str) -> None:
    client = redis.Redis.from_url(lane_redis_url)
    client.delete(*predict_lists())
    app = make_celery(Settings(redis_url=lane_redis_url))
    options = app.conf.broker_transport_options
    assert options["queue_order_strategy"] == "round_robin"
    assert options["priority_steps"] == [LANES["urgent"], LANES["normal"], LANES["bulk"]] == [0, 3, 6]
    assert WORKER_QUEUES.split(",") == [*PREDICT_QUEUES, NOTIFY_QUEUE] and len(PREDICT_QUEUES) == USER_SHARDS
    sends = (("bulk", 1, [1, 2, 3]), ("urgent", 1, [4]), ("normal", 2, [5, 6]), ("normal", 1 + USER_SHARDS, [7]))
    for lane, user, ids in sends:
        assert send_batches(app, ids, batch_size=2, priority=lane, user_id=user) == len(ids)
    lengths = {name: client.llen(name) for name in predict_lists() if client.llen(name)}
    assert lengths == {  # kombu's own list names: the queue, and "\x06\x16<priority>" for priorities above 0
        "radbatch-u1": 1,
        "radbatch-u1\x06\x163": 1,  # user 9 shares user 1's shard
        "radbatch-u2\x06\x163": 1,
        "radbatch-u1\x06\x166": 2,
    }
    body = json.loads(client.lindex("radbatch-u1", 0))
    assert body["headers"]["task"] == "radbatch.predict_batch" and body["properties"]["priority"] == 0
    assert sorted(i for m in queued_messages(client) for i in m.image_ids) == [1, 2, 3, 4, 5, 6, 7]  # all seen
    client.delete(*predict_lists())


def test_a_predict_task_sent_without_a_queue_is_normal_on_the_first_shard(lane_redis_url: str) -> None:
    client = redis.Redis.from_url(lane_redis_url)
    client.delete(*predict_lists())
    make_celery(Settings(redis_url=lane_redis_url)).send_task("radbatch.predict_batch", args=[[8]])
    assert [name for name in predict_lists() if client.llen(name)] == ["radbatch-u0\x06\x163"]
    assert [m.image_ids for m in queued_messages(client)] == [(8,)]
    client.delete(*predict_lists())


@pytest.mark.parametrize("path", ["docker-compose.yml", "Dockerfile", "docs/hosts.md"])
def test_every_worker_command_line_names_every_shard(path: str) -> None:
    text = (services.REPO_ROOT / path).read_text()
    assert f"-Q {WORKER_QUEUES} " in text or f'"-Q", "{WORKER_QUEUES}"' in text


class Probe:
    def __init__(self, app: Celery, client: redis.Redis, process, log: Path) -> None:
        self.app, self.client, self.process, self.log = app, client, process, log

    def send(self, user: int, lane: str, first_id: int, batches: int) -> list[int]:
        ids = list(range(first_id, first_id + batches))
        assert send_batches(self.app, ids, batch_size=1, priority=lane, user_id=user) == batches
        return ids

    def taken(self) -> list[dict]:
        return [json.loads(raw) for raw in self.client.lrange(lane_probe.ORDER_KEY, 0, -1)]

    def wait_taken(self, count: int, timeout: float = 60) -> list[dict]:
        def enough() -> bool:
            return self.client.llen(lane_probe.ORDER_KEY) >= count

        services.wait_for(enough, timeout, f"the worker to take {count} messages", self.process, self.log)
        return self.taken()

    def reset(self) -> None:
        self.client.delete(lane_probe.ORDER_KEY, *predict_lists())


@pytest.fixture(scope="module")
def probe(lane_redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probe]:
    url = lane_redis_url
    client = redis.Redis.from_url(url)
    client.flushdb()
    home = tmp_path_factory.mktemp("lane-probe")
    env = services.service_env({"RADBATCH_REDIS_URL": url, "RADBATCH_HOME": str(home)})
    argv = [str(services.BIN / "celery"), "-A", "tests.lane_probe", "worker", "-Q", WORKER_QUEUES, "--pool", "prefork"]
    argv += ["--concurrency", "1", "--loglevel", "INFO", "--without-mingle", "--without-gossip", "-n", "probe@%h"]
    log = home / "worker.log"
    process = services.start_process(argv, env, log)
    services.ready_or_stopped(process, lambda: client.get(lane_probe.READY_KEY), 60, "the probe worker", log)
    try:
        yield Probe(make_celery(Settings(redis_url=url)), client, process, log)
    finally:
        services.stop_process(process)
        client.flushdb()


def test_an_urgent_batch_is_taken_before_a_waiting_normal_backlog(probe: Probe) -> None:
    probe.reset()
    backlog = probe.send(user=1, lane="normal", first_id=1000, batches=30)
    running = len(probe.wait_taken(2))  # the worker is busy with the backlog
    urgent = probe.send(user=1, lane="urgent", first_id=5000, batches=1)  # the same user's shard, another lane
    order = [entry["ids"][0] for entry in probe.wait_taken(len(backlog) + 1)]
    # Next, or after one or two more normal batches if this machine is slow to send it (not after the 30).
    assert order.index(urgent[0]) <= running + 3, f"urgent taken at {order.index(urgent[0])} of {order}"
    assert sorted(order) == backlog + urgent


def test_another_users_batches_take_turns_with_a_backlog_in_the_same_lane(probe: Probe) -> None:
    probe.reset()
    backlog = probe.send(user=1, lane="normal", first_id=1000, batches=40)
    running = len(probe.wait_taken(2))
    small = probe.send(user=2, lane="normal", first_id=2000, batches=5)  # sent after the whole backlog
    taken = probe.wait_taken(len(backlog) + len(small))
    order = [entry["ids"][0] for entry in taken]
    positions = [order.index(i) for i in small]
    # Round robin over the two busy shards: one backlog batch between two of the small job's batches (a little
    # more if this machine is slow to send them), where FIFO would put all five after the 40.
    assert positions[-1] <= running + 2 * len(small) + 3, f"the small job was taken at {positions} of {len(order)}"
    assert all(b - a <= 3 for a, b in zip(positions, positions[1:])), positions
    assert order[-1] == backlog[-1] and len(order) - positions[-1] > 20  # the backlog goes on long after
    queues = {(entry["ids"][0] >= 2000, entry["queue"], entry["priority"]) for entry in taken}
    assert queues == {(False, "radbatch-u1", LANES["normal"]), (True, "radbatch-u2", LANES["normal"])}


def test_a_celery_retry_keeps_its_shard_and_lane(probe: Probe) -> None:
    probe.reset()
    probe.send(user=5, lane="bulk", first_id=lane_probe.RETRY_ID, batches=1)
    taken = probe.wait_taken(2)
    assert [(e["queue"], e["priority"], e["retries"]) for e in taken] == [("radbatch-u5", 6, 0), ("radbatch-u5", 6, 1)]


@pytest.mark.parametrize(
    ("rules", "aet", "lane"),
    [
        (("CT1=urgent", "ARCHIVE=bulk"), "CT1", "urgent"),
        (("ARCHIVE=bulk",), "ARCHIVE", "bulk"),
        (("X=fast",), "X", "normal"),
        ((), "ANY", "normal"),
    ],
)
def test_a_dicom_rule_gives_a_calling_ae_title_its_lane(rules, aet, lane) -> None:
    assert aet_priority(rules, aet) == lane


def test_the_api_takes_shows_and_checks_a_priority(web_client, web_token) -> None:
    headers = web_token("alice")
    created = web_client.post("/api/v1/jobs", data={"open": "true", "priority": "urgent"}, headers=headers)
    assert created.status_code == 201 and created.get_json()["priority"] == "urgent"
    shown = web_client.get(f"/api/v1/jobs/{created.get_json()['id']}", headers=headers).get_json()
    assert shown["priority"] == "urgent"
    default = web_client.post("/api/v1/jobs", data={"open": "true"}, headers=headers).get_json()
    assert default["priority"] == "normal"
    refused = web_client.post("/api/v1/jobs", data={"open": "true", "priority": "asap"}, headers=headers)
    assert refused.status_code == 400 and "urgent, normal, bulk" in refused.get_json()["message"]
