"""A bounded load run against a local radbatch: many uploaders and pollers at once, then an exactly-once check.

    RADBATCH_ADMIN_TOKEN=secret make run       # in one terminal
    .venv/bin/python -m benchmarks.load --token secret

1. Alone: one uploader sends a 200-image open job in chunks (each with its own Idempotency-Key), closes it
   and waits until it is predicted.
2. Under load: 20 uploaders do the same at once while 20 pollers each ask for one job's status and a page of
   its results every 0.5 s for a fixed number of rounds. Then it waits (bounded) until every job finished.
3. Prints errors (goal 0), p50/p95/p99 of the status, results and upload calls, and throughput alone and
   under load; then checks in SQL (RADBATCH_DATABASE_URL, as `make run` uses it) that every uploaded file has
   one row and every image exactly one prediction per model.

Only local addresses; every count and wait is bounded, so it stops by itself.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import requests
from sqlalchemy import func, select

from benchmarks.corpus import SHARED_DATA
from db.models import Image, ImageStatus, Prediction
from db.session import database_session
from settings import Settings

DEFAULT_IMAGES = SHARED_DATA / "nih-cxr14-subset" / "images"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
MODELS = 3  # cnn, unet, ensemble


class Recorder:
    """Latencies and errors by kind of call, from many threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, list[str]] = defaultdict(list)

    def call(self, kind: str, send, *args, **kwargs) -> requests.Response | None:
        started = time.perf_counter()
        try:
            response = send(*args, **kwargs)
        except requests.RequestException as error:
            with self.lock:
                self.errors[kind].append(f"{type(error).__name__}: {error}")
            return None
        with self.lock:
            self.latency[kind].append(time.perf_counter() - started)
            if not response.ok:
                self.errors[kind].append(f"{response.status_code}: {response.text[:200]}")
        return response if response.ok else None


class Client:
    def __init__(self, url: str, token: str, recorder: Recorder):
        self.api = f"{url}/api/v1"
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"
        self.record = recorder.call

    def upload_job(self, name: str, files: list[tuple[str, bytes]], chunk: int) -> int | None:
        created = self.record("create", self.http.post, f"{self.api}/jobs", data={"name": name, "open": "true"})
        if created is None:
            return None
        job_id = created.json()["id"]
        for start in range(0, len(files), chunk):
            parts = [("files", (path, data, "image/png")) for path, data in files[start : start + chunk]]
            key = {"Idempotency-Key": str(uuid.uuid4())}
            self.record(
                "upload chunk", self.http.post, f"{self.api}/jobs/{job_id}/files", files=parts, headers=key, timeout=300
            )
        self.record("close", self.http.post, f"{self.api}/jobs/{job_id}/close", timeout=60)
        return job_id

    def poll(self, job_id: int) -> None:
        self.record("status", self.http.get, f"{self.api}/jobs/{job_id}", timeout=60)
        self.record("results", self.http.get, f"{self.api}/jobs/{job_id}/results", params={"per_page": 100}, timeout=60)

    def wait_finished(self, job_ids: list[int], deadline: float) -> float:
        pending = set(job_ids)
        while pending and time.perf_counter() < deadline:
            for job_id in list(pending):
                response = self.http.get(f"{self.api}/jobs/{job_id}", timeout=60)
                if response.ok and response.json()["status"] in ("done", "failed", "cancelled"):
                    pending.discard(job_id)
            time.sleep(0.5)
        if pending:
            raise TimeoutError(f"jobs {sorted(pending)} not finished in time")
        return time.perf_counter()


def run_alone(url: str, token: str, files: list[tuple[str, bytes]], chunk: int, timeout: float) -> dict:
    recorder = Recorder()
    client = Client(url, token, recorder)
    started = time.perf_counter()
    job_id = client.upload_job("load: alone", files, chunk)
    uploaded = time.perf_counter()
    finished = client.wait_finished([job_id], started + timeout)
    return {"jobs": [job_id], "upload_s": uploaded - started, "total_s": finished - started, "recorder": recorder}


def run_loaded(url: str, token: str, files: list[tuple[str, bytes]], args: argparse.Namespace) -> dict:
    recorder = Recorder()
    jobs: list[int] = []
    started = time.perf_counter()

    def uploader(n: int) -> None:
        job_id = Client(url, token, recorder).upload_job(f"load: uploader {n}", files, args.chunk)
        if job_id is not None:
            jobs.append(job_id)

    def poller(seed: int) -> None:
        client, pick = Client(url, token, recorder), random.Random(seed)
        for _ in range(args.rounds):
            if jobs:
                client.poll(pick.choice(jobs))
            time.sleep(args.interval)

    uploaders = [threading.Thread(target=uploader, args=(n,)) for n in range(args.uploaders)]
    pollers = [threading.Thread(target=poller, args=(n,)) for n in range(args.pollers)]
    for thread in uploaders + pollers:
        thread.start()
    for thread in uploaders:
        thread.join()
    uploaded = time.perf_counter()
    for thread in pollers:
        thread.join()
    finished = Client(url, token, recorder).wait_finished(jobs, started + args.timeout)
    return {"jobs": jobs, "upload_s": uploaded - started, "total_s": finished - started, "recorder": recorder}


def exactly_once(job_ids: list[int], expected_paths: list[str]) -> tuple[bool, str]:
    """Every file one row, every image done with one prediction per model; in SQL."""
    with database_session(Settings.from_env().database_url) as session:
        rows = session.execute(select(Image.job_id, Image.path, Image.status).where(Image.job_id.in_(job_ids))).all()
        predictions = session.scalar(
            select(func.count(Prediction.id))
            .join(Image, Prediction.image_id == Image.id)
            .where(Image.job_id.in_(job_ids))
        )
    by_job: dict[int, list[str]] = defaultdict(list)
    for job_id, path, _status in rows:
        by_job[job_id].append(path)
    rows_ok = all(sorted(by_job[job_id]) == sorted(expected_paths) for job_id in job_ids)
    done = sum(status == ImageStatus.done for _, _, status in rows)
    ok = rows_ok and done == len(rows) == len(job_ids) * len(expected_paths) and predictions == MODELS * done
    return ok, f"{len(rows)} rows, {done} done, {predictions} predictions ({MODELS} per image expected)"


def percentiles(values: list[float]) -> str:
    if not values:
        return f"{'-':>8s} {'-':>8s} {'-':>8s}"
    p50, p95, p99 = np.percentile(np.array(values) * 1000, [50, 95, 99])
    return f"{p50:8.0f} {p95:8.0f} {p99:8.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:5000")
    parser.add_argument("--token", required=True, help="an API token (e.g. RADBATCH_ADMIN_TOKEN)")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="a folder of images")
    parser.add_argument("--per-job", type=int, default=200, help="images per uploader's job")
    parser.add_argument("--chunk", type=int, default=50, help="files per upload request")
    parser.add_argument("--uploaders", type=int, default=20)
    parser.add_argument("--pollers", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=120, help="status + results calls per poller")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between a poller's rounds")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds each phase may take in all")
    args = parser.parse_args(argv)
    url = args.url.rstrip("/")
    if urlparse(url).hostname not in LOCAL_HOSTS:
        parser.error("this benchmark only talks to a radbatch on this machine (127.0.0.1 or localhost)")

    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() == ".png")[: args.per_job]
    if len(paths) < args.per_job:
        parser.error(f"only {len(paths)} PNG images in {args.images}")
    files = [(f"load/{p.name}", p.read_bytes()) for p in paths]

    alone = run_alone(url, args.token, files, args.chunk, args.timeout)
    loaded = run_loaded(url, args.token, files, args)
    print(f"\n{args.uploaders} uploaders x {args.per_job} images (chunks of {args.chunk}), {args.pollers} pollers")
    print(f"x {args.rounds} rounds every {args.interval} s, against {url}\n")
    print(f"{'call':14s} {'calls':>6s} {'errors':>6s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s}")
    recorder = loaded["recorder"]
    for kind in ("status", "results", "upload chunk", "create", "close"):
        calls = len(recorder.latency[kind]) + sum("Error" in e for e in recorder.errors[kind])
        print(f"{kind:14s} {calls:6d} {len(recorder.errors[kind]):6d} {percentiles(recorder.latency[kind])}")
    n_alone, n_loaded = args.per_job, args.per_job * len(loaded["jobs"])
    print(
        f"\n{'run':28s} {'images':>7s} {'upload s':>9s} {'img/s up':>9s} {'total s':>8s} {'img/s':>7s} {'vs alone':>8s}"
    )
    rate_alone = n_alone / alone["total_s"]
    for label, run, n in (("one uploader alone", alone, n_alone), ("20 uploaders + 20 pollers", loaded, n_loaded)):
        rate = n / run["total_s"]
        print(
            f"{label:28s} {n:7d} {run['upload_s']:9.1f} {n / run['upload_s']:9.1f} {run['total_s']:8.1f}"
            f" {rate:7.1f} {rate / rate_alone:8.2f}"
        )
    ok, detail = exactly_once(alone["jobs"] + loaded["jobs"], [path for path, _ in files])
    errors = sum(len(e) for e in recorder.errors.values()) + sum(len(e) for e in alone["recorder"].errors.values())
    print(f"\nexactly once: {'yes' if ok else 'NO'} ({detail}); errors: {errors}")
    for kind, messages in recorder.errors.items():
        for message in messages[:3]:
            print(f"  {kind}: {message}")
    return 0 if ok and errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
