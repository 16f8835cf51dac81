"""Readiness heartbeats: each worker process that has loaded its models says so in Redis.

Key `radbatch:worker:<hostname>:<pid>` holds JSON {"hostname", "pid", "models": {name: version}, "loaded_at"}
with a TTL, refreshed by a daemon thread; a process that dies simply expires. No TensorFlow here.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from datetime import datetime, timezone

import redis

log = logging.getLogger(__name__)

KEY_PREFIX = "radbatch:worker:"
TTL_S = 60
INTERVAL_S = 20


def heartbeat_key(hostname: str, pid: int) -> str:
    return f"{KEY_PREFIX}{hostname}:{pid}"


def _client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)


class Heartbeat:
    """Publishes this process's readiness every `interval` seconds until `stop()`."""

    def __init__(self, redis_url: str, models: dict[str, str], interval: float = INTERVAL_S, ttl: int = TTL_S):
        self.client = _client(redis_url)
        self.interval = interval
        self.ttl = ttl
        self.key = heartbeat_key(socket.gethostname(), os.getpid())
        self.info = {
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "models": dict(models),
            "loaded_at": datetime.now(timezone.utc).isoformat(),
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="radbatch-heartbeat", daemon=True)

    def beat(self) -> None:
        self.client.set(self.key, json.dumps(self.info), ex=self.ttl)

    def start(self) -> Heartbeat:
        try:
            self.beat()
        except redis.RedisError as error:  # Redis may be restarting; the thread keeps trying
            log.warning("heartbeat: cannot reach Redis yet: %s", error)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        try:
            self.client.delete(self.key)
        except redis.RedisError as error:
            log.warning("heartbeat: could not remove %s: %s", self.key, error)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except redis.RedisError as error:
                log.warning("heartbeat: cannot reach Redis: %s", error)


def list_ready_workers(redis_url: str) -> list[dict]:
    """The heartbeats of worker processes with models loaded; raises redis.RedisError if Redis is unreachable."""
    client = _client(redis_url)
    try:
        keys = sorted(client.scan_iter(match=f"{KEY_PREFIX}*", count=100))
        values = client.mget(keys) if keys else []
    finally:
        client.close()
    workers = []
    for value in values:
        if value is None:  # expired between SCAN and MGET
            continue
        try:
            workers.append(json.loads(value))
        except json.JSONDecodeError:
            log.warning("ignoring a malformed worker heartbeat: %r", value[:200])
    return workers
