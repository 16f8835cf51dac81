"""End to end: uploads over HTTP to gunicorn, tasks on a real Redis, a real prefork Celery worker, results in SQL.

Every test runs on SQLite and on a fresh PostgreSQL database. Select them with `-m e2e`.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import requests
from sqlalchemy import func, select

from db.models import Image, ImageStatus, Job, JobStatus, Prediction
from db.session import session_scope
from models.findings import FindingHeads
from models.registry import read_card, read_ensemble
from tests import services
from tests.conftest import PIPELINE_IMAGES, Stack

pytestmark = pytest.mark.e2e

MODEL_NAMES = ("cnn", "unet", "ensemble")


def versions() -> dict[str, str]:
    return {
        "cnn": read_card("cnn")["version"],
        "unet": read_card("unet")["version"],
        "ensemble": read_ensemble()["version"],
    }


def worker_versions() -> dict[str, str]:
    """What a worker announces: the models' versions and, when trained, the findings heads'."""
    heads = FindingHeads.load()
    return versions() | ({"findings": heads.version} if heads else {})


def prediction_counts(stack: Stack, job_id: int) -> dict[str, int]:
    with session_scope(stack.sessions) as session:
        rows = session.execute(
            select(Prediction.model_name, func.count())
            .join(Image, Prediction.image_id == Image.id)
            .where(Image.job_id == job_id)
            .group_by(Prediction.model_name)
        ).all()
    return dict(rows)


def assert_predicted_once(stack: Stack, job_id: int, image_count: int) -> None:
    """Exactly one prediction per model (and the ensemble) per image, none more."""
    assert prediction_counts(stack, job_id) == {name: image_count for name in MODEL_NAMES}
    with session_scope(stack.sessions) as session:
        per_image = session.execute(
            select(Prediction.image_id, func.count())
            .join(Image, Prediction.image_id == Image.id)
            .where(Image.job_id == job_id)
            .group_by(Prediction.image_id)
        ).all()
    assert len(per_image) == image_count and {count for _, count in per_image} == {len(MODEL_NAMES)}


def assert_prediction_shape(row: dict) -> None:
    assert set(row["predictions"]) == set(MODEL_NAMES), row
    expected = versions()
    for name, prediction in row["predictions"].items():
        assert 0.0 <= prediction["probability"] <= 1.0
        assert prediction["label"] in ("healthy", "disease")
        assert prediction["label"] == ("disease" if prediction["probability"] >= prediction["threshold"] else "healthy")
        assert prediction["model_version"] == expected[name]


def test_readyz_lists_the_worker_and_its_models(e2e_stack: Stack) -> None:
    response = requests.get(f"{e2e_stack.base_url}/readyz", timeout=10)
    assert response.status_code == 200, response.text
    workers = response.json()["workers"]
    assert workers and workers[0]["models"] == worker_versions()


def test_a_200_image_job_gets_exactly_one_prediction_per_model_per_image(e2e_stack: Stack, shared_images) -> None:
    paths = sorted(shared_images.glob("*.png"))[:200]
    files = [(f"batch/{'left' if i % 3 else 'right'}/{p.name}", p.read_bytes()) for i, p in enumerate(paths)]
    api = e2e_stack.api
    created = api.create_job(files[:100], name="two hundred", is_open=True)
    api.add_files(created["id"], files[100:])
    api.close(created["id"])

    job = api.wait_finished(created["id"], timeout=400)
    assert (job["status"], job["total"], job["done"], job["failed"]) == ("done", 200, 200, 0)
    assert job["finished_at"] is not None
    assert_predicted_once(e2e_stack, job["id"], 200)

    results = api.results(job["id"], per_page=37)
    assert len(results) == 200
    assert sorted(row["path"] for row in results) == sorted(path for path, _ in files)
    for row in results:
        assert row["status"] == "done" and row["error"] is None
        assert_prediction_shape(row)
    with session_scope(e2e_stack.sessions) as session:
        ids = session.scalars(select(Image.id).where(Image.job_id == job["id"])).all()
    assert all((e2e_stack.settings.thumbnail_dir / f"{i}.png").exists() for i in ids)


def test_bad_files_fail_on_their_own_rows_and_good_ones_are_predicted(
    e2e_stack: Stack, pipeline_files, rgba_original
) -> None:
    good = pipeline_files[:4] + [rgba_original]
    truncated = pipeline_files[5][1][: len(pipeline_files[5][1]) // 2]
    bad = {
        "bad/truncated.png": truncated,
        "bad/empty.png": b"",
        "bad/notes.png": b"these are the radiologist's notes, not an image\n" * 20,
    }
    job = e2e_stack.api.create_job(good + list(bad.items()), name="mixed")
    job = e2e_stack.api.wait_finished(job["id"])
    assert (job["status"], job["total"], job["done"], job["failed"]) == ("done", 8, 5, 3)

    rows = {row["path"]: row for row in e2e_stack.api.results(job["id"])}
    assert rows["bad/truncated.png"]["status"] == "failed"
    assert rows["bad/truncated.png"]["error"].startswith("corrupt or truncated PNG file")
    assert rows["bad/empty.png"]["status"] == "failed" and "empty file" in rows["bad/empty.png"]["error"]
    assert rows["bad/notes.png"]["status"] == "failed" and "not a PNG" in rows["bad/notes.png"]["error"]
    for path in bad:
        assert rows[path]["predictions"] == {}
    for path, _ in good:
        assert rows[path]["status"] == "done" and rows[path]["error"] is None
        assert_prediction_shape(rows[path])

    with session_scope(e2e_stack.sessions) as session:
        rgba = session.scalar(select(Image).where(Image.job_id == job["id"], Image.path == rgba_original[0]))
        assert (rgba.width, rgba.height, rgba.mode) == (1024, 1024, "RGBA")
    from PIL import Image as PILImage

    with PILImage.open(e2e_stack.settings.thumbnail_dir / f"{rgba.id}.png") as thumbnail:
        assert thumbnail.mode == "L" and max(thumbnail.size) == 128


def insert_queued_job(stack: Stack, copy_to_uploads, count: int, created_at=None) -> tuple[int, list[int]]:
    """A closed job whose `count` images are stored and marked queued, as the web app leaves them."""
    sources = sorted(PIPELINE_IMAGES.glob("*.png"))
    with session_scope(stack.sessions) as session:
        job = Job(user_id=stack.user_id, name=f"direct {count}")
        session.add(job)
        session.flush()
        for i in range(count):
            source = sources[i % len(sources)]
            stored = copy_to_uploads(stack.settings, source, f"direct-{job.id}-{i}.png")
            image = Image(job_id=job.id, filename=source.name, path=source.name, stored_name=stored)
            image.status = ImageStatus.queued
            if created_at is not None:
                image.created_at = created_at
            session.add(image)
        session.flush()
        ids = list(session.scalars(select(Image.id).where(Image.job_id == job.id).order_by(Image.id)))
        return job.id, ids


def test_a_worker_killed_mid_batch_gets_the_batch_redelivered(e2e_stack: Stack, copy_to_uploads) -> None:
    from broker import PREDICT_TASK, make_celery

    job_id, ids = insert_queued_job(e2e_stack, copy_to_uploads, 48)
    make_celery(e2e_stack.settings).send_task(PREDICT_TASK, args=[ids])

    thumbnails = [e2e_stack.settings.thumbnail_dir / f"{i}.png" for i in ids]
    services.wait_for(lambda: thumbnails[12].exists(), 120, "the worker to start on the batch")
    children = services.pool_children(e2e_stack.worker.pid)
    assert len(children) == 1
    os.kill(children[0], signal.SIGKILL)
    with session_scope(e2e_stack.sessions) as session:
        assert session.get(Job, job_id).done == 0, "the batch finished before the kill; make it bigger"

    def finished():
        with session_scope(e2e_stack.sessions) as session:
            return session.get(Job, job_id).status == JobStatus.done

    services.wait_for(finished, 300, "the redelivered batch", e2e_stack.worker, e2e_stack.worker_log)
    assert_predicted_once(e2e_stack, job_id, len(ids))
    assert services.pool_children(e2e_stack.worker.pid) != children  # a fresh child took over
    assert "WorkerLostError" in e2e_stack.worker_log.read_text(errors="replace")
    with session_scope(e2e_stack.sessions) as session:  # the batch, then each image alone
        assert set(session.scalars(select(Image.attempts).where(Image.job_id == job_id))) == {2}


def test_the_recovery_sweep_requeues_images_whose_task_was_lost(e2e_stack: Stack, copy_to_uploads) -> None:
    import dataclasses

    import redis

    from broker import make_celery
    from worker.recovery import LOCK_KEY, sweep_once

    client = redis.Redis.from_url(e2e_stack.redis_url)
    job_id, ids = insert_queued_job(e2e_stack, copy_to_uploads, 20)  # queued, but no task was ever sent
    client.delete(LOCK_KEY)  # the worker's own sweeper may hold it
    settings = dataclasses.replace(e2e_stack.settings, stuck_after=0)
    app = make_celery(settings)
    time.sleep(0.05)
    report = sweep_once(settings, app, client)
    assert report is not None and report.sent[job_id] == ids
    assert sweep_once(settings, app, client) is None  # one sweeper per interval
    job = e2e_stack.api.wait_finished(job_id)
    assert (job["status"], job["done"]) == ("done", len(ids))
    assert_predicted_once(e2e_stack, job_id, len(ids))
