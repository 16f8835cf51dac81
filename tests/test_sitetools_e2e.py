"""End to end through gunicorn, Redis and a prefork Celery worker: evaluation on real predictions, a purge of files
the worker wrote, and webhooks: retried with backoff, signed, delivered once, never holding up predictions."""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import threading
import time
from datetime import timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from sklearn.metrics import recall_score, roc_auc_score
from sqlalchemy import func, select, update

from broker import make_celery
from db.models import Image, Job, utcnow
from db.session import session_scope
from db.webhooks import JobWebhook, retry_delay
from tests import services
from tests.conftest import TEST_DATA, Stack
from worker.housekeeping import run_housekeeping

pytestmark = pytest.mark.e2e


class Receiver:
    """A local HTTP endpoint that answers with `statuses` in turn (then 200) and records every request."""

    def __init__(self, statuses: list[int]):
        self.statuses, self.calls = list(statuses), []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.calls.append((dict(self.headers), body, status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", services.free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/radbatch"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _create(stack: Stack, files: list[tuple[str, bytes]], **form) -> dict:
    parts = [("files", (path, data, "application/octet-stream")) for path, data in files]
    response = stack.api.http.post(f"{stack.api.base}/jobs", data=form, files=parts, timeout=60)
    assert response.status_code == 201, response.text
    return response.json()


def _webhook(stack: Stack, job_id: int) -> JobWebhook:
    with session_scope(stack.sessions) as session:
        return session.get(JobWebhook, job_id)


def _retry_when_due(stack: Stack, job_id: int, attempts: int) -> None:
    """After `attempts` failed attempts, wait for the backoff, then run the housekeeping round the sweep runs."""
    services.wait_for(lambda: _webhook(stack, job_id).attempts == attempts, 60, f"attempt {attempts}")
    due = _webhook(stack, job_id).next_attempt_at.replace(tzinfo=timezone.utc)
    assert due - utcnow() <= timedelta(seconds=retry_delay(attempts) + 1)  # the backoff, stored in SQL
    time.sleep(max(0.0, (due - utcnow()).total_seconds()) + 0.2)
    assert job_id in run_housekeeping(stack.settings, make_celery(stack.settings))["webhooks_sent"]


def test_evaluation_against_labels_on_real_predictions(e2e_stack: Stack, pipeline_files) -> None:
    job = e2e_stack.api.wait_finished(_create(e2e_stack, pipeline_files, name="labelled")["id"])
    with open(TEST_DATA / "pipeline" / "labels.csv") as handle:
        nih = {row["Image Index"]: row["Finding Labels"] for row in csv.DictReader(handle)}
    labelled = sorted(nih)[:-2]  # two images left without a label
    rows = [f"{name},{'healthy' if nih[name] == 'No Finding' else 'disease'}\n" for name in labelled]
    body = "path,label\n" + "".join(rows) + "elsewhere/00000000_000.png,disease\n"  # file names only, and a stray row
    url = f"{e2e_stack.api.base}/jobs/{job['id']}/labels"
    posted = e2e_stack.api.http.post(url, data=body, headers={"Content-Type": "text/csv"}, timeout=60)
    assert posted.status_code == 201, posted.text
    summary = posted.json()
    assert (summary["rows"], summary["used"], summary["unused"]["count"]) == (23, 22, 1)
    assert summary["images_without_label"]["count"] == 2

    evaluation = e2e_stack.api.http.get(f"{e2e_stack.api.base}/jobs/{job['id']}/evaluation", timeout=120).json()
    results = {row["filename"]: row["predictions"] for row in e2e_stack.api.results(job["id"])}
    labels = np.array([int(nih[name] != "No Finding") for name in labelled])
    for model in ("cnn", "unet", "ensemble"):
        p = np.array([results[name][model]["probability"] for name in labelled])
        threshold = results[labelled[0]][model]["threshold"]
        got = evaluation["models"][model]
        assert (got["n"], got["threshold"]) == (22, threshold)
        assert got["auc"] == pytest.approx(roc_auc_score(labels, p))
        assert got["sensitivity"] == pytest.approx(recall_score(labels, p >= threshold))
        assert got["specificity"] == pytest.approx(recall_score(labels, p >= threshold, pos_label=0))
    roc = e2e_stack.api.http.get(evaluation["roc_url"].replace("/api/v1", e2e_stack.api.base, 1), timeout=60)
    assert roc.status_code == 200 and roc.headers["Content-Type"].startswith("image/svg+xml")


def test_purge_removes_what_the_worker_wrote(e2e_stack: Stack, pipeline_files) -> None:
    job = e2e_stack.api.wait_finished(_create(e2e_stack, pipeline_files[:3], name="to purge")["id"])
    with session_scope(e2e_stack.sessions) as session:
        images = session.execute(select(Image.id, Image.stored_name).where(Image.job_id == job["id"])).all()
    settings = e2e_stack.settings
    files = [settings.thumbnail_dir / f"{i}.png" for i, _ in images] + [settings.upload_dir / s for _, s in images]
    files += [settings.heatmap_dir / f"{i}-{model}.png" for i, _ in images for model in ("cnn", "unet")]
    assert len(files) == 12 and all(path.is_file() for path in files)
    response = e2e_stack.api.http.delete(f"{e2e_stack.api.base}/jobs/{job['id']}", params={"purge": "true"})
    assert response.status_code == 200 and response.json()["files"] == 12
    assert not any(path.exists() for path in files)
    with session_scope(e2e_stack.sessions) as session:
        assert session.scalar(select(func.count()).select_from(Job).where(Job.id == job["id"])) == 0
        assert session.scalar(select(func.count()).select_from(Image).where(Image.job_id == job["id"])) == 0


def test_a_webhook_is_retried_with_backoff_signed_and_delivered_once(e2e_stack: Stack, pipeline_files) -> None:
    receiver = Receiver([500])
    try:
        created = _create(e2e_stack, pipeline_files[:2], name="hooked", webhook_url=receiver.url)
        secret = created["webhook"]["secret"]
        job = e2e_stack.api.wait_finished(created["id"])
        _retry_when_due(e2e_stack, job["id"], attempts=1)
        services.wait_for(lambda: any(c[2] == 200 for c in receiver.calls), 60, "the webhook's second attempt")
        run_housekeeping(e2e_stack.settings, make_celery(e2e_stack.settings))  # nothing is due any more
        time.sleep(3)  # long enough for a third attempt, if anything sent one
    finally:
        receiver.close()
    assert [status for _, _, status in receiver.calls] == [500, 200]
    headers, body, _ = receiver.calls[1]
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Radbatch-Signature"], expected)
    assert headers["X-Radbatch-Delivery"] == str(job["id"]) and headers["Content-Type"] == "application/json"
    sent = json.loads(body)
    assert sent["event"] == "job.finished" and sent["job"] == e2e_stack.api.job(job["id"])
    assert (sent["job"]["status"], sent["job"]["done"]) == ("done", 2)
    state = _webhook(e2e_stack, job["id"])
    assert (state.state.value, state.attempts, state.last_error) == ("delivered", 2, None)
    assert e2e_stack.api.http.get(f"{e2e_stack.api.base}/jobs/{job['id']}/webhook").json()["state"] == "delivered"


def test_a_receiver_that_is_down_does_not_hold_up_predictions(e2e_stack: Stack, pipeline_files) -> None:
    dead = f"http://127.0.0.1:{services.free_port()}/nobody-listens"
    hooked = _create(e2e_stack, pipeline_files[:4], name="dead hook", webhook_url=dead)
    assert e2e_stack.api.wait_finished(hooked["id"])["status"] == "done"
    _retry_when_due(e2e_stack, hooked["id"], attempts=1)
    later = _create(e2e_stack, pipeline_files[4:12], name="after the dead hook")  # while the retries go on
    assert e2e_stack.api.wait_finished(later["id"])["done"] == 8
    services.wait_for(lambda: _webhook(e2e_stack, hooked["id"]).attempts == 2, 60, "the second failed attempt")
    state = _webhook(e2e_stack, hooked["id"])
    assert state.state.value == "due" and state.last_error.startswith("could not connect")
    with session_scope(e2e_stack.sessions) as session:  # stop the remaining retries for the rest of the session
        session.execute(update(JobWebhook).where(JobWebhook.job_id == hooked["id"]).values(state="failed"))
