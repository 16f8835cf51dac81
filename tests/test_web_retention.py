"""Purging jobs (API, button, retention schedule) and the audit trail it leaves. Flask test client, real SQLite
database and Redis, files checked on disk and rows in SQL."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import timedelta

import redis
from sqlalchemy import func, select, update

from broker import NOTIFY_QUEUE, make_celery
from db.audit import AuditEvent
from db.labels import JobLabel, LabelSet
from db.models import Image, Job, JobStatus, Prediction, utcnow
from db.purge import DeferredDeletion, delete_due_files
from db.session import session_scope
from db.webhooks import JobWebhook
from tests.sitetools_helpers import create_job, image_ids, predict
from worker.housekeeping import LOCK_KEY, housekeeping, run_housekeeping

PER_IMAGE = ("thumbnails/{id}.png", "heatmaps/{id}-cnn.png", "heatmaps/{id}-unet.png")


def _derived_files(settings, ids) -> list:
    files = []
    for image_id in ids:
        for pattern in PER_IMAGE:
            path = settings.home / pattern.format(id=image_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"derived")
            files.append(path)
    return files


def _rows(sessions, job_id: int) -> dict[str, int]:
    counts = {}
    with session_scope(sessions) as session:
        for name, query in {
            "jobs": select(func.count()).select_from(Job).where(Job.id == job_id),
            "images": select(func.count()).select_from(Image).where(Image.job_id == job_id),
            "predictions": select(func.count()).select_from(Prediction).join(Image).where(Image.job_id == job_id),
            "labels": select(func.count()).select_from(JobLabel).where(JobLabel.job_id == job_id),
            "label_sets": select(func.count()).select_from(LabelSet).where(LabelSet.job_id == job_id),
            "webhooks": select(func.count()).select_from(JobWebhook).where(JobWebhook.job_id == job_id),
        }.items():
            counts[name] = session.scalar(query)
    return counts


def test_purge_removes_files_and_rows_and_leaves_an_audit_row(web_client, web_token, web_settings, web_db):
    headers = web_token("alice")
    paths = ["ward/a.png", "ward/b.png", "ward/c.png"]
    job_id = create_job(web_client, headers, paths, webhook_url="https://hooks.example.org/hook")
    keep_id = create_job(web_client, headers, ["other/a.png"])
    predict(web_db, job_id, {path: (0.2, 0.7) for path in paths})
    labels = {"file": (io.BytesIO(b"path,label\na.png,healthy\nb.png,disease\n"), "labels.csv")}
    assert web_client.post(f"/api/v1/jobs/{job_id}/labels", data=labels, headers=headers).status_code == 201
    ids, kept = image_ids(web_db, job_id), image_ids(web_db, keep_id)
    uploads = sorted(web_settings.upload_dir.iterdir())
    assert len(uploads) == 4
    doomed = _derived_files(web_settings, ids.values())
    survivors = _derived_files(web_settings, kept.values()) + [web_settings.home / "heatmaps" / "README.txt"]
    survivors[-1].write_text("not a per-image file")
    assert _rows(web_db, job_id) == {
        "jobs": 1, "images": 3, "predictions": 9, "labels": 2, "label_sets": 1, "webhooks": 1,
    }  # fmt: skip

    assert web_client.delete(f"/api/v1/jobs/{job_id}?purge=true", headers=web_token("bob")).status_code == 404
    response = web_client.delete(f"/api/v1/jobs/{job_id}?purge=true", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"id": job_id, "purged": True, "images": 3, "files": 12, "cancelled_first": False}
    assert not any(path.exists() for path in doomed)
    assert all(path.exists() for path in survivors)
    assert len(list(web_settings.upload_dir.iterdir())) == 1  # the other job's upload
    assert set(_rows(web_db, job_id).values()) == {0}
    assert _rows(web_db, keep_id)["images"] == 1
    with session_scope(web_db) as session:
        # it finished moments ago, so a duplicate delivery of its last batch might still write: checked again later
        assert session.scalar(select(func.count()).select_from(DeferredDeletion)) == 3
        events = session.scalars(select(AuditEvent).where(AuditEvent.job_id == job_id).order_by(AuditEvent.id)).all()
        assert [e.action for e in events] == ["job.create", "labels.upload", "job.purge"]
        assert events[-1].username == "alice" and events[-1].detail == {
            "images": 3,
            "files": 12,
            "cancelled_first": False,
        }
    assert web_client.get(f"/api/v1/jobs/{job_id}", headers=headers).status_code == 404
    assert web_client.delete(f"/api/v1/jobs/{job_id}?purge=true", headers=headers).status_code == 404


def test_purging_a_running_job_cancels_it_and_deletes_late_files_again(web_client, web_token, web_settings, web_db):
    headers = web_token("alice")
    job_id = create_job(web_client, headers, ["run/a.png", "run/b.png"], open="true")
    ids = sorted(image_ids(web_db, job_id).values())
    response = web_client.delete(f"/api/v1/jobs/{job_id}?purge=true", headers=headers)
    assert response.status_code == 200 and response.get_json()["cancelled_first"] is True
    late = _derived_files(web_settings, ids)  # a batch that was already running writes its files afterwards
    with session_scope(web_db) as session:
        due = dict(session.execute(select(DeferredDeletion.image_id, DeferredDeletion.due_at)).all())
        assert sorted(due) == ids
        later = max(due.values()) + timedelta(seconds=1)
        assert delete_due_files(session, web_settings, later - timedelta(seconds=60)) == 0  # not yet
        assert delete_due_files(session, web_settings, later) == 2
    assert not any(path.exists() for path in late)
    with session_scope(web_db) as session:
        assert session.scalar(select(func.count()).select_from(DeferredDeletion)) == 0


def test_the_purge_button_asks_first_and_needs_csrf(web_client, web_auth, web_token, web_db):
    job_id = create_job(web_client, web_token("alice"), ["b/a.png"])
    web_auth.login("bob")
    assert web_client.post(f"/jobs/{job_id}/purge", data={"csrf_token": web_auth.csrf_token()}).status_code == 404
    web_auth.logout()
    web_auth.login("alice")
    page = web_client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert f'action="/jobs/{job_id}/purge"' in page and f'data-confirm="Delete job {job_id} for good?' in page
    assert web_client.post(f"/jobs/{job_id}/purge").status_code == 400
    done = web_client.post(f"/jobs/{job_id}/purge", data={"csrf_token": web_auth.csrf_token()}, follow_redirects=True)
    assert f"Job {job_id} deleted for good: 1 images" in done.get_data(as_text=True)
    assert _rows(web_db, job_id)["jobs"] == 0


def _finish(sessions, job_id: int, days_ago: float, status: JobStatus = JobStatus.done) -> None:
    with session_scope(sessions) as session:
        finished = utcnow() - timedelta(days=days_ago)
        session.execute(update(Job).where(Job.id == job_id).values(status=status, finished_at=finished, is_open=False))


def test_retention_purges_only_jobs_finished_longer_ago(web_client, web_token, web_settings, web_db, web_redis):
    headers = web_token("alice")
    old, recent, running, old_cancelled = (create_job(web_client, headers, [f"r{i}/a.png"]) for i in range(4))
    _finish(web_db, old, 40)
    _finish(web_db, recent, 5)
    _finish(web_db, old_cancelled, 31, JobStatus.cancelled)
    with session_scope(web_db) as session:
        session.execute(update(Job).where(Job.id == running).values(status=JobStatus.running, finished_at=None))
    thumbnails = _derived_files(web_settings, [i for job in (old, recent) for i in image_ids(web_db, job).values()])
    app = make_celery(web_settings)

    assert run_housekeeping(web_settings, app)["purged"] == []  # RADBATCH_RETENTION_DAYS unset: keep everything
    done = run_housekeeping(replace(web_settings, retention_days=30), app)
    assert sorted(done["purged"]) == sorted([old, old_cancelled])
    assert [_rows(web_db, job)["jobs"] for job in (old, recent, running, old_cancelled)] == [0, 1, 1, 0]
    assert [path.exists() for path in thumbnails] == [False] * 3 + [True] * 3
    with session_scope(web_db) as session:
        event = session.scalar(select(AuditEvent).where(AuditEvent.job_id == old, AuditEvent.action == "job.purge"))
        assert (event.username, event.user_id, event.ip) == ("system", None, None)
        assert event.detail == {"images": 1, "files": 4, "retention_days": 30}


def test_housekeeping_sends_due_webhooks_and_never_raises(web_client, web_token, web_settings, web_db, web_redis):
    job_id = create_job(web_client, web_token("alice"), ["w/a.png"], webhook_url="https://example.org/hook")
    later_id = create_job(web_client, web_token("alice"), ["w/b.png"], webhook_url="https://example.org/hook")
    with session_scope(web_db) as session:
        for job, when in ((job_id, -timedelta(seconds=1)), (later_id, timedelta(minutes=10))):
            values = {"state": "due", "next_attempt_at": utcnow() + when}
            session.execute(update(JobWebhook).where(JobWebhook.job_id == job).values(**values))
    web_redis.delete(NOTIFY_QUEUE, LOCK_KEY)
    assert run_housekeeping(web_settings, make_celery(web_settings))["webhooks_sent"] == [job_id]
    message = json.loads(web_redis.lpop(NOTIFY_QUEUE))
    assert message["headers"]["task"] == "radbatch.notify_job" and message["headers"]["argsrepr"] == f"[{job_id}]"

    broken = replace(web_settings, database_url=f"sqlite:///{web_settings.home}/missing/dir/x.db")
    client = redis.Redis.from_url(web_settings.effective_redis_url)
    housekeeping(broken, make_celery(web_settings), client)  # logs the error, raises nothing
    assert client.get(LOCK_KEY) is not None  # one worker at a time: the lock is held until the next sweep
    client.delete(LOCK_KEY)
