"""Priority lanes: a job's priority (API, CLI, DICOM rule) picks the Celery queue its batches are sent to, and
the worker is told to take from the queues in lane order. The queues are read back from a real Redis."""

from __future__ import annotations

import json

import pytest

from broker import LANES, WORKER_QUEUES, make_celery, send_batches
from broker.inflight import queued_messages
from listener.jobs import aet_priority
from settings import Settings


def test_each_lane_has_its_queue_and_workers_take_them_in_order(redis_url: str) -> None:
    import redis

    redis_url = redis_url.rsplit("/", 1)[0] + "/7"  # a database no session worker consumes (they use /0)
    client = redis.Redis.from_url(redis_url)
    client.delete(*LANES.values())
    app = make_celery(Settings(redis_url=redis_url))
    assert app.conf.broker_transport_options["queue_order_strategy"] == "priority"
    assert WORKER_QUEUES.split(",")[:3] == ["radbatch-urgent", "radbatch", "radbatch-bulk"]
    for priority, ids in (("bulk", [1, 2, 3]), ("urgent", [4]), ("normal", [5, 6])):
        assert send_batches(app, ids, batch_size=2, priority=priority) == len(ids)
    lengths = {lane: client.llen(queue) for lane, queue in LANES.items()}
    assert lengths == {"urgent": 1, "normal": 1, "bulk": 2}
    body = json.loads(client.lindex(LANES["urgent"], 0))
    assert body["headers"]["task"] == "radbatch.predict_batch"
    assert sorted(i for m in queued_messages(client) for i in m.image_ids) == [1, 2, 3, 4, 5, 6]  # all lanes seen
    client.delete(*LANES.values())


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
