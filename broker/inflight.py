"""Which image ids ride on a live message right now, and which messages are orphaned.

kombu's Redis transport keeps a waiting message in the list named after the queue. When a worker takes one,
it moves it (BRPOP, then one pipeline) into the hash `unacked` (delivery tag -> [message, exchange, routing
key]) and records the time in the sorted set `unacked_index`; the acknowledgement deletes both. If the worker
that took it can no longer acknowledge it (its main process died, or Redis restarted under it and it
reconnected with a new channel), the entry stays in `unacked` and only comes back to the queue after the
visibility timeout (an hour by default).

So every worker main process publishes, about every second, the ids of the tasks it holds (received, waiting
for a pool process, running, or waiting for a retry countdown) under `radbatch:holding:<host>:<pid>` with a
short TTL. A message is live if it waits in the queue, or if it is unacknowledged and some live worker holds
it, or if it was taken less than ORPHAN_GRACE_S ago (its worker may not have published it yet). An
unacknowledged message that is none of those is orphaned.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import redis

from broker.app import PREDICT_TASK, predict_lists

log = logging.getLogger(__name__)

UNACKED_KEY = "unacked"
UNACKED_INDEX_KEY = "unacked_index"
HOLDER_PREFIX = "radbatch:holding:"
HOLDER_INTERVAL_S = 1.0
HOLDER_TTL_S = 10
ORPHAN_GRACE_S = 10.0  # > HOLDER_INTERVAL_S plus any delay in publishing; also how long a dead worker's hold lasts
READ_GAP_S = 0.5  # longer than the moment between kombu's BRPOP and its write to `unacked`
_PAGE = 1000


@dataclass(frozen=True)
class Carried:
    """One predict task message: its task id and the image ids it carries."""

    task_id: str
    image_ids: tuple[int, ...]


@dataclass
class BrokerView:
    live: set[int] = field(default_factory=set)  # image ids on a waiting or held message
    orphans: dict[str, Carried] = field(default_factory=dict)  # delivery tag -> an unacknowledged message nobody holds


def parse_message(raw: bytes | str) -> Carried | None:
    """The task id and image ids of a kombu message as stored in the queue; None for anything else."""
    try:
        return _carried(json.loads(raw))
    except ValueError as error:
        log.warning("ignoring a message that is not JSON: %s", error)
        return None


def _carried(payload: dict) -> Carried | None:
    try:
        headers = payload.get("headers") or {}
        if headers.get("task") != PREDICT_TASK:
            return None
        body = payload["body"]
        if (payload.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return Carried(task_id=str(headers["id"]), image_ids=tuple(int(i) for i in args[0]))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
        log.warning("ignoring a message that is not a readable predict task: %s", error)
        return None


def queued_messages(client: redis.Redis) -> list[Carried]:
    """The predict messages waiting in every user shard's queue, in every lane's priority list."""
    found: list[Carried] = []
    for queue in predict_lists():
        start = 0
        while True:
            page = client.lrange(queue, start, start + _PAGE - 1)
            found += [carried for raw in page if (carried := parse_message(raw)) is not None]
            if len(page) < _PAGE:
                break
            start += _PAGE
    return found


def unacked_messages(client: redis.Redis) -> dict[str, tuple[Carried, float]]:
    """Unacknowledged predict messages by delivery tag, with the time a worker took each one."""
    taken = {tag.decode(): score for tag, score in client.zrange(UNACKED_INDEX_KEY, 0, -1, withscores=True)}
    messages: dict[str, tuple[Carried, float]] = {}
    for tag, value in client.hgetall(UNACKED_KEY).items():
        try:
            carried = _carried(json.loads(value)[0])  # [message, exchange, routing key]
        except (ValueError, IndexError, TypeError):
            continue
        if carried is not None:
            messages[tag.decode()] = (carried, taken.get(tag.decode(), 0.0))
    return messages


def held_task_ids(client: redis.Redis) -> set[str]:
    """The task ids that live worker processes say they hold."""
    keys = list(client.scan_iter(match=f"{HOLDER_PREFIX}*", count=100))
    held: set[str] = set()
    for value in client.mget(keys) if keys else []:
        try:
            held.update(str(task_id) for task_id in json.loads(value or "[]"))
        except (ValueError, TypeError):
            log.warning("ignoring a malformed holding list: %r", value[:200])
    return held


def inspect(client: redis.Redis, gap: float = READ_GAP_S, grace: float = ORPHAN_GRACE_S) -> BrokerView:
    """Read the unacknowledged messages, the queue, and the unacknowledged messages again (`gap` apart).

    A message moving from the queue to `unacked` is in the queue at the first read or in `unacked` at the second;
    one restored from `unacked` to the queue (an atomic move) is in `unacked` at the first read or in the queue.
    """
    first = unacked_messages(client)
    time.sleep(gap)
    waiting = queued_messages(client)
    time.sleep(gap)
    second = unacked_messages(client)
    held = held_task_ids(client)
    now = time.time()
    view = BrokerView()
    for carried in waiting:
        view.live.update(carried.image_ids)
    for tag, (carried, taken_at) in (first | second).items():
        if tag in first and tag in second and carried.task_id not in held and now - taken_at > grace:
            view.orphans[tag] = carried
        else:
            view.live.update(carried.image_ids)
    return view


def forget(client: redis.Redis, tags: Iterable[str]) -> None:
    """Delete orphaned messages from `unacked` (after their images were sent again), so they never come back."""
    for tag in tags:
        client.pipeline(transaction=True).zrem(UNACKED_INDEX_KEY, tag).hdel(UNACKED_KEY, tag).execute()


class HolderBeacon:
    """In a worker's main process: publish the task ids it holds every HOLDER_INTERVAL_S seconds."""

    def __init__(self, redis_url: str, held: Callable[[], Iterable[str]], interval: float = HOLDER_INTERVAL_S):
        self.client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        self.held = held
        self.interval = interval
        self.key = f"{HOLDER_PREFIX}{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="radbatch-holding", daemon=True)

    def publish(self) -> None:
        self.client.set(self.key, json.dumps(sorted(self.held())), ex=HOLDER_TTL_S)

    def start(self) -> HolderBeacon:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.publish()
            except (redis.RedisError, RuntimeError) as error:  # Redis restarting; a set changing size while read
                log.debug("holding beacon: %s", error)
            self._stop.wait(self.interval)
