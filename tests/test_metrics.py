"""Prometheus metrics: the worker's endpoint (every pool process's samples through the multiprocess folder, plus
the queue depth from Redis) and the web app's /metrics, scraped over HTTP after a real job."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from settings import Settings
from tests.conftest import PIPELINE_IMAGES, Stack
from tests.services import REPO_ROOT
from worker import metrics

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "radbatch-dashboard.json"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a Prometheus text exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(url: str) -> dict:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["Content-Type"].startswith("text/plain")
    return samples(response.text)


@pytest.mark.e2e
def test_both_endpoints_count_a_real_job(e2e_stack: Stack) -> None:
    worker_url = f"http://127.0.0.1:{e2e_stack.env['RADBATCH_WORKER_METRICS_PORT']}/metrics"
    web_url = f"{e2e_stack.base_url}/metrics"
    worker_before, web_before = scrape(worker_url), scrape(web_url)

    files = [(p.name, p.read_bytes()) for p in sorted(PIPELINE_IMAGES.glob("*.png"))[:5]]
    job = e2e_stack.api.create_job(files + [("broken.png", b"\x89PNG\r\n\x1a\n not really")], name="metrics")
    assert e2e_stack.api.wait_finished(job["id"])["done"] == 5

    worker = scrape(worker_url)
    for outcome, n in (("done", 5), ("failed", 1)):
        gained = value(worker, "radbatch_worker_images_total", outcome=outcome)
        assert gained - value(worker_before, "radbatch_worker_images_total", outcome=outcome) == n
    for stage in ("read", "decode", "preprocess", "thumbnail"):
        name = "radbatch_worker_image_stage_seconds_count"
        assert value(worker, name, stage=stage) - value(worker_before, name, stage=stage) >= 5, stage
    for stage in metrics.BATCH_STAGES:
        name = "radbatch_worker_batch_stage_seconds_count"
        assert value(worker, name, stage=stage) > value(worker_before, name, stage=stage), stage
    cpu = "radbatch_worker_stage_cpu_seconds_total"
    for stage in ("decode", "read_all", "inference", "db_write", "total"):  # CPU time, not only wall time
        assert value(worker, cpu, stage=stage) > value(worker_before, cpu, stage=stage), stage
    assert value(worker, "radbatch_worker_batch_images_count") > value(
        worker_before, "radbatch_worker_batch_images_count"
    )
    runtime = Settings.from_env(e2e_stack.env).runtime
    served = {labels for (name, labels), v in worker.items() if name == "radbatch_worker_model_info" and v == 1}
    assert {dict(labels)["model"] for labels in served} == {"cnn", "unet"}
    assert {dict(labels)["runtime"] for labels in served} == {runtime}
    assert ("radbatch_queue_batches", (("state", "waiting"),)) in worker  # read from Redis at scrape time

    web = scrape(web_url)
    created = dict(endpoint="api.create", method="POST", status="201")
    assert (
        value(web, "radbatch_http_requests_total", **created)
        - value(web_before, "radbatch_http_requests_total", **created)
        == 1
    )
    polled = dict(endpoint="api.get_job", method="GET")
    assert value(web, "radbatch_http_request_duration_seconds_count", **polled) > 0
    assert value(web, "radbatch_jobs", status="done") >= 1
    assert not any(
        name.startswith("radbatch_http") and dict(labels).get("endpoint") == "metrics" for name, labels in web
    )

    # Every series the Grafana dashboard plots is one that the two endpoints really export.
    exported = {name for name, _ in [*worker, *web]}
    assert set(re.findall(r"radbatch_[a-z_]+", DASHBOARD.read_text())) - {"radbatch"} <= exported


def test_the_worker_empties_its_metrics_folder_before_forking(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "")  # so that monkeypatch removes what the worker sets
    settings = Settings(home=tmp_path)
    stale = settings.worker_metrics_dir / "counter_12345.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left by a worker that died")
    assert metrics.prepare_multiprocess_dir(settings) == settings.worker_metrics_dir
    assert os.environ[metrics.MULTIPROC_ENV] == str(settings.worker_metrics_dir)
    assert list(settings.worker_metrics_dir.iterdir()) == []


def test_the_web_app_counts_requests_by_endpoint(web_client) -> None:
    before = samples(web_client.get("/metrics").get_data(as_text=True))
    assert web_client.get("/healthz").status_code == 200
    assert web_client.get("/no/such/page").status_code == 404
    after = samples(web_client.get("/metrics").get_data(as_text=True))
    for labels in (
        dict(endpoint="healthz", method="GET", status="200"),
        dict(endpoint="unmatched", method="GET", status="404"),
    ):
        assert (
            value(after, "radbatch_http_requests_total", **labels)
            - value(before, "radbatch_http_requests_total", **labels)
            == 1
        )
    assert value(after, "radbatch_jobs", status="queued") == 0  # counted in the (empty) database
