"""`GET /metrics` for Prometheus: requests and their latency by endpoint, jobs by status and the drift figures.

It shows aggregate counts only (Flask endpoint names, never URLs, ids, users or file names: no patient data),
so it needs no login by default, like /healthz; set RADBATCH_METRICS_TOKEN to require `Authorization: Bearer
<token>` when even the volume of work is private. Under gunicorn
with several workers, set PROMETHEUS_MULTIPROC_DIR (`make run` does) so every worker's counts are summed.
"""

from __future__ import annotations

import hmac
import os
import time
from functools import cache
from types import SimpleNamespace

from flask import Flask, Response, current_app, g, request
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from db.models import Job, JobStatus
from web.drift import drift_collector
from web.extensions import get_settings

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


@cache
def _request_metrics() -> SimpleNamespace:
    """Created once per process; in multiprocess mode they write to PROMETHEUS_MULTIPROC_DIR."""
    from prometheus_client import CollectorRegistry, Counter, Histogram

    multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    registry = None if multiprocess else CollectorRegistry()
    return SimpleNamespace(
        registry=registry,
        requests=Counter(
            "radbatch_http_requests",
            "HTTP requests answered, by Flask endpoint, method and status code",
            ["endpoint", "method", "status"],
            registry=registry,
        ),
        latency=Histogram(
            "radbatch_http_request_duration_seconds",
            "Seconds to answer an HTTP request, by Flask endpoint and method",
            ["endpoint", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        ),
    )


class JobsByStatus:
    """Jobs per status, counted in the database at scrape time."""

    def __init__(self, app: Flask):
        self.sessions = app.extensions["radbatch_sessions"]

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        try:
            with self.sessions() as session:
                counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
        except SQLAlchemyError:
            return
        jobs = GaugeMetricFamily("radbatch_jobs", "Jobs in the database, by status", labels=["status"])
        for status in JobStatus:
            jobs.add_metric([status.value], counts.get(status, 0))
        yield jobs


def _started() -> None:
    g.metrics_started = time.perf_counter()


def _finished(response: Response) -> Response:
    started = g.pop("metrics_started", None)
    if started is not None and request.endpoint != "metrics":
        endpoint = request.endpoint or "unmatched"
        found = _request_metrics()
        found.requests.labels(endpoint, request.method, str(response.status_code)).inc()
        found.latency.labels(endpoint, request.method).observe(time.perf_counter() - started)
    return response


def _authorised() -> bool:
    """RADBATCH_METRICS_TOKEN, when set, must come as `Authorization: Bearer <token>` (Prometheus: `authorization`)."""
    expected = get_settings().metrics_token
    if not expected:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


def metrics_view() -> Response:
    if not _authorised():
        return Response(
            "GET /metrics needs Authorization: Bearer <RADBATCH_METRICS_TOKEN>\n",
            status=401,
            mimetype="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="radbatch metrics"'},
        )
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    found = _request_metrics()
    registry = CollectorRegistry()
    if found.registry is None:
        MultiProcessCollector(registry)
    else:
        registry.register(_Forward(found.registry))
    registry.register(JobsByStatus(current_app))
    registry.register(drift_collector(current_app))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


class _Forward:
    """This process's own registry inside the per-scrape one."""

    def __init__(self, source):
        self.source = source

    def collect(self):
        yield from self.source.collect()


def init_app(app: Flask) -> None:
    app.before_request(_started)
    app.after_request(_finished)
    app.add_url_rule("/metrics", "metrics", metrics_view)
