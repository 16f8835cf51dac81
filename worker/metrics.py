"""Prometheus metrics of a worker and all its pool processes (prometheus-client's multiprocess mode).

The Celery parent, before it forks, empties `$RADBATCH_HOME/metrics/worker` (or an operator's
PROMETHEUS_MULTIPROC_DIR) and points PROMETHEUS_MULTIPROC_DIR at it; every pool process then writes its
samples there, and the parent serves them all, plus the queue depth read from Redis at scrape time, on
RADBATCH_WORKER_METRICS_PORT. prometheus-client picks its multiprocess mode when it is first imported, so
this module imports it only inside functions, after `prepare_multiprocess_dir` has run.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import redis

from broker import predict_lists
from settings import Settings

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNACKED_KEY = "unacked"  # kombu's Redis transport keeps unacknowledged messages in this hash
IMAGE_STAGES = ("read", "decode", "preprocess", "thumbnail")  # per image, in a decoding thread
# Per batch, wall clock.
BATCH_STAGES = ("queue_wait", "read_all", "inference", "heatmaps", "db_write", "commit", "total")
_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def prepare_multiprocess_dir(settings: Settings) -> Path:
    """Empty the folder for the pool's metric files and export PROMETHEUS_MULTIPROC_DIR; call before forking."""
    folder = Path(os.environ.get(MULTIPROC_ENV) or settings.worker_metrics_dir)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


@cache
def metrics() -> SimpleNamespace:
    """The worker's metric objects, created on first use (in multiprocess mode when the worker set it up)."""
    from prometheus_client import Counter, Gauge, Histogram

    return SimpleNamespace(
        images=Counter("radbatch_worker_images", "Images a worker finished with, by outcome", ["outcome"]),
        image_stage=Histogram(
            "radbatch_worker_image_stage_seconds",
            "Seconds one image spent in a stage (read, decode, preprocess, thumbnail) in a decoding thread",
            ["stage"],
            buckets=_STAGE_BUCKETS,
        ),
        batch_stage=Histogram(
            "radbatch_worker_batch_stage_seconds",
            "Wall seconds of a batch in a stage (queue_wait: since its newest image was uploaded; read_all: every "
            "image read, decoded and preprocessed; inference: all served models; shadow: the shadow models (only when "
            "one is installed); heatmaps: Grad-CAM drawn and written; "
            "db_write: the SQL statements; "
            "commit: the transaction's commit; total: the whole task)",
            ["stage"],
            buckets=_STAGE_BUCKETS,
        ),
        stage_cpu=Counter(
            "radbatch_worker_stage_cpu_seconds",
            "CPU seconds spent in a stage: image stages the decoding thread's own CPU time, batch stages the worker "
            "process's CPU time (all its threads: decoding, ONNX Runtime, heat maps) while the stage ran",
            ["stage"],
        ),
        batch_images=Histogram("radbatch_worker_batch_images", "Images per batch", buckets=_SIZE_BUCKETS),
        model_info=Gauge(
            "radbatch_worker_model_info",
            "1 for each model a live worker process serves, with its version, runtime and device",
            ["model", "version", "runtime", "device"],
            multiprocess_mode="livemax",
        ),
    )


def observe_image_stage(stage: str, seconds: float, cpu_seconds: float) -> None:
    found = metrics()
    found.image_stage.labels(stage).observe(seconds)
    found.stage_cpu.labels(stage).inc(max(0.0, cpu_seconds))


def observe_batch_stage(stage: str, seconds: float, cpu_seconds: float | None = None) -> None:
    found = metrics()
    found.batch_stage.labels(stage).observe(seconds)
    if cpu_seconds is not None:
        found.stage_cpu.labels(stage).inc(max(0.0, cpu_seconds))


class Clock:
    """Wall and CPU time since it was made (CPU of this thread, or with `process=True` of the whole process)."""

    def __init__(self, process: bool = False):
        self.cpu = time.process_time if process else time.thread_time
        self.wall_started, self.cpu_started = time.perf_counter(), self.cpu()

    def lap(self) -> tuple[float, float]:
        """(wall s, CPU s) since the last lap (or the start)."""
        wall, cpu = time.perf_counter(), self.cpu()
        found = (wall - self.wall_started, cpu - self.cpu_started)
        self.wall_started, self.cpu_started = wall, cpu
        return found


def observe_queue_wait(uploaded_at: list[datetime]) -> None:
    """A batch's wait in the queue, from the upload of its newest image (when a full batch is sent) to now."""
    if uploaded_at:
        newest = max(t if t.tzinfo else t.replace(tzinfo=timezone.utc) for t in uploaded_at)  # SQLite drops the zone
        observe_batch_stage("queue_wait", max(0.0, (datetime.now(timezone.utc) - newest).total_seconds()))


@contextmanager
def batch_stage(stage: str) -> Iterator[None]:
    clock = Clock(process=True)
    try:
        yield
    finally:
        observe_batch_stage(stage, *clock.lap())


def count_batch(counts: dict[str, int]) -> None:
    found = metrics()
    found.batch_images.observe(sum(counts.values()))
    for outcome, n in counts.items():
        if n:
            found.images.labels(outcome).inc(n)


def announce_models(models: dict[str, tuple[str, str, str]]) -> None:
    """`models`: name -> (version, runtime, device) of what this process serves."""
    for name, (version, runtime, device) in models.items():
        metrics().model_info.labels(name, version, runtime, device).set(1)


def process_exited(pid: int) -> None:
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


class QueueDepthCollector:
    """Batches waiting in the Redis queue and batches taken but not yet acknowledged, read at scrape time."""

    def __init__(self, redis_url: str):
        self.client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        try:
            waiting = sum(self.client.llen(name) for name in predict_lists())
            unacked = self.client.hlen(UNACKED_KEY)
        except redis.RedisError as error:
            log.warning("metrics: cannot read the queue depth from Redis: %s", error)
            return
        depth = GaugeMetricFamily("radbatch_queue_batches", "Batches (tasks) in the Redis queue", labels=["state"])
        depth.add_metric(["waiting"], waiting)
        depth.add_metric(["unacknowledged"], unacked)
        yield depth


def serve(settings: Settings) -> None:
    """Serve every pool process's metrics and the queue depth on settings.worker_metrics_port (0: don't)."""
    if not settings.worker_metrics_port:
        return
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)
    registry.register(QueueDepthCollector(settings.effective_redis_url))
    try:
        start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host, registry=registry)
    except OSError as error:  # another worker on this host has the port; the work goes on without an endpoint
        log.warning("metrics: cannot listen on port %d: %s", settings.worker_metrics_port, error)
        return
    log.info("metrics on http://%s:%d/metrics", settings.worker_metrics_host, settings.worker_metrics_port)
