"""A Celery worker app with radbatch's queue contract (broker.make_celery: the queues, lanes, transport options,
prefetch 1) whose predict task records what it was given instead of predicting, for tests/test_lanes.py:

    celery -A tests.lane_probe worker -Q <broker.WORKER_QUEUES> --pool prefork --concurrency 1

Each delivery appends {"ids", "queue", "priority", "retries"} to the Redis list ORDER_KEY and then takes STEP_S, so
the list is the order in which the worker took the messages. A batch whose first id is RETRY_ID retries once
(Celery's own `self.retry`), to show that a retry keeps its queue and lane.
"""

from __future__ import annotations

import json
import time

import redis
from celery.signals import worker_ready

from broker import PREDICT_TASK, make_celery
from settings import Settings

ORDER_KEY = "lane-probe:order"
READY_KEY = "lane-probe:ready"
STEP_S = 0.15
RETRY_ID = 999_999

settings = Settings.from_env()
app = make_celery(settings, include=())
_client = redis.Redis.from_url(settings.effective_redis_url)


@app.task(name=PREDICT_TASK, bind=True)
def record(self, image_ids: list[int]) -> None:
    delivery = self.request.delivery_info or {}
    entry = {
        "ids": image_ids,
        "queue": delivery.get("routing_key"),
        "priority": delivery.get("priority"),
        "retries": self.request.retries,
    }
    _client.rpush(ORDER_KEY, json.dumps(entry))
    time.sleep(STEP_S)
    if image_ids and image_ids[0] == RETRY_ID and self.request.retries == 0:
        raise self.retry(countdown=0.2)


@worker_ready.connect
def _ready(**_kwargs) -> None:
    _client.set(READY_KEY, "1")
