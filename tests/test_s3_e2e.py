"""A whole job with RADBATCH_STORAGE_URL=s3://...: the web app and the worker keep every file in a real S3 server
process (moto's server mode over HTTP, as MinIO would be) and nothing under RADBATCH_HOME; and an object store
that goes away mid-job makes images wait and retry, never fail."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from db.session import make_engine, make_session_factory
from settings import Settings
from storage import storage_for
from tests import services
from tests.object_store import AWS_ENV, start_object_store
from tests.stack import migrated_database, stack_env, user_with_token, worker_and_web
from tests.tcp_gate import Gate

BUCKET = "radbatch-e2e"
OUTAGE_S = 30  # as long as issue 15 asks: several of the worker's retries (5, 10, 20 s) long


@pytest.fixture(scope="module")
def s3_stack(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("s3-stack")
    home = folder / "home"
    # its own Redis: a worker of another stack alive on the session's Redis would take this stack's batches
    redis_process, redis_url = services.start_redis(folder / "redis")
    server = start_object_store(folder / "moto.log")
    gate = Gate(server.port)
    gate.open()
    saved = {key: os.environ.get(key) for key in AWS_ENV}
    os.environ.update(AWS_ENV)  # this process reads the bucket too
    try:
        with migrated_database("sqlite", folder) as database_url:
            storage = {"RADBATCH_STORAGE_URL": f"s3://{BUCKET}/site", "RADBATCH_S3_ENDPOINT_URL": gate.url}
            env = stack_env(home, database_url, redis_url, "s3", **storage, **AWS_ENV)
            settings = Settings(home=home, storage_url=storage["RADBATCH_STORAGE_URL"], s3_endpoint_url=gate.url)
            storage_for(settings).prepare()
            engine = make_engine(database_url)
            token, _ = user_with_token(make_session_factory(engine), "s3user", "s3-password-long")
            with worker_and_web(env, home / "logs", redis_url) as (_, base_url):
                yield services.Api(base_url, token), storage_for(settings), home, gate
            engine.dispose()
    finally:
        gate.shut()
        server.stop()
        services.stop_process(redis_process)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _keys(store) -> set[str]:
    pages = store.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def _patient_files(home: Path) -> list[Path]:
    return [p for p in home.rglob("*") if p.is_file() and p.suffix.lower() in {".png", ".dcm", ".jpg", ".jpeg"}]


def test_a_job_keeps_every_file_in_the_object_store_and_none_under_home(s3_stack, pipeline_files) -> None:
    api, store, home, _ = s3_stack
    job = api.wait_finished(api.create_job(pipeline_files, name="on s3")["id"], timeout=300)
    assert (job["status"], job["done"], job["failed"]) == ("done", len(pipeline_files), 0)
    rows = api.results(job["id"])
    ids = [row["id"] for row in rows]
    keys = _keys(store)
    assert sum(key.startswith("site/uploads/") for key in keys) == len(pipeline_files)
    assert {f"site/thumbnails/{i}.png" for i in ids} <= keys
    assert any(key.startswith("site/heatmaps/") for key in keys)
    assert _patient_files(home) == [] and not (home / "uploads").exists()
    thumbnail = api.http.get(api.base.removesuffix("/api/v1") + f"/thumbnails/{ids[0]}.png", timeout=30)
    assert thumbnail.status_code == 200 and thumbnail.content.startswith(b"\x89PNG")
    shown = api.http.get(f"{api.base}/images/{ids[0]}/image.png", timeout=30)
    assert shown.status_code == 200 and shown.content.startswith(b"\x89PNG")

    purged = api.http.delete(f"{api.base}/jobs/{job['id']}", params={"purge": "true"}, timeout=60)
    assert purged.status_code == 200, purged.text
    assert not any(key.endswith((f"/{i}.png", f"/{i}-cnn.png", f"/{i}-unet.png")) for key in _keys(store) for i in ids)
    assert not any(key.startswith("site/uploads/") for key in _keys(store))


def test_an_object_store_outage_mid_job_makes_images_wait_not_fail(s3_stack, pipeline_files) -> None:
    api, _, home, gate = s3_stack
    job_id = api.create_job(pipeline_files, name="through an outage")["id"]
    gate.shut()  # the store's host is gone: connections refused, open ones cut
    try:
        time.sleep(OUTAGE_S)
        assert api.job(job_id)["failed"] == 0
    finally:
        gate.open()
    job = api.wait_finished(job_id, timeout=300)
    assert (job["status"], job["done"], job["failed"]) == ("done", len(pipeline_files), 0)
    assert "object store unavailable" in (home / "logs" / "worker.log").read_text()
