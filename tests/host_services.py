"""radbatch on the many-host rig (tests/hosts.py): the services host runs Redis, PostgreSQL (its own initdb data
folder) and an S3 server process (moto's, over HTTP); the web host the portal and API (gunicorn) and the DICOM
listener; each worker host one Celery worker that knows only the Redis, database and storage URLs.

Used by tests/test_many_hosts.py and benchmarks/hosts.py.
"""

from __future__ import annotations

import io
import secrets
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import redis
import requests
from PIL import Image as PILImage
from sqlalchemy import create_engine, text

from broker import WORKER_QUEUES
from broker.heartbeat import list_ready_workers
from tests.hosts import Host, Rig
from tests.object_store import AWS_ENV
from tests.services import BIN, Api, seed_onnx_cache, service_env, wait_for

REDIS_PORT, POSTGRES_PORT, S3_PORT, WEB_PORT, DICOM_PORT = 6379, 5432, 9000, 8000, 11112
BUCKET = "radbatch-rig"
DICOM_SENDER = "RIGSCU"
# Quick to notice a vanished host: a sweep every 3 s, and an image without a live message is sent again after 15 s.
RIG_TUNING = {"RADBATCH_SWEEP_INTERVAL": "3", "RADBATCH_STUCK_AFTER": "15", "RADBATCH_BATCH_SIZE": "16"}


def png(seed: int, size: int = 128) -> bytes:
    """A distinct 8-bit grayscale picture (when no shared data is at hand)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, size, dtype=np.float32)[None, :] + rng.normal(0, 25, (size, size))
    out = io.BytesIO()
    PILImage.fromarray(np.clip(ramp, 0, 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def images(count: int, shared_data: Path | None, offset: int = 0) -> list[tuple[str, bytes]]:
    """`count` 128-px PNGs as (path, bytes): the shared NIH subset's if it is there (cycled), else made here."""
    folder = shared_data / "nih-cxr14-subset" / "images" if shared_data else None
    if folder is not None and folder.is_dir():
        files = sorted(folder.glob("*.png"))
        picked = [files[(offset + i) % len(files)] for i in range(count)]
        return [(f"rig/{offset + i:05d}-{path.name}", path.read_bytes()) for i, path in enumerate(picked)]
    return [(f"rig/{offset + i:05d}.png", png(offset + i)) for i in range(count)]


class Site:
    """radbatch on a rig; `start_worker` / `stop_worker` a worker host's worker at any time."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        services = rig["services"]
        self.redis_url = f"redis://{services.address}:{REDIS_PORT}/0"
        self.database_url = f"postgresql+psycopg://postgres@{services.address}:{POSTGRES_PORT}/radbatch"
        self.endpoint_url = f"http://{services.address}:{S3_PORT}"
        self.web_url = f"http://{rig['web'].address}:{WEB_PORT}"
        self.admin_token = secrets.token_urlsafe(24)

    def worker_env(self, host: Host, **extra: str) -> dict[str, str]:
        """All a worker host is told: the three URLs (and the store's endpoint and credentials), and its own home."""
        urls = {
            "RADBATCH_REDIS_URL": self.redis_url,
            "RADBATCH_DATABASE_URL": self.database_url,
            "RADBATCH_STORAGE_URL": f"s3://{BUCKET}/site",
            "RADBATCH_S3_ENDPOINT_URL": self.endpoint_url,
        }
        values = {**urls, "RADBATCH_HOME": str(host.home), "RADBATCH_WORKER_METRICS_PORT": "0", **RIG_TUNING}
        return service_env(values | extra) | AWS_ENV

    def web_env(self) -> dict[str, str]:
        web = self.rig["web"]
        extra = {
            "RADBATCH_SECRET_KEY": "rig",
            "RADBATCH_ADMIN_TOKEN": self.admin_token,
            "RADBATCH_ADMIN_PASSWORD": "rig admin password",
            "RADBATCH_HEATMAPS": "false",  # jobs' default: no Grad-CAM, the rig measures predicting
            "RADBATCH_DICOM_HOST": web.address,
            "RADBATCH_DICOM_PORT": str(DICOM_PORT),
            "RADBATCH_DICOM_ALLOWED_AETS": DICOM_SENDER,
            "RADBATCH_MAX_OPEN_JOBS_PER_USER": "0",
        }
        return self.worker_env(web, **extra)

    def start_services(self) -> None:
        host = self.rig["services"]
        data = host.folder / "pgdata"
        data.mkdir()
        shutil.chown(data, "postgres", "postgres")
        as_postgres = ["setpriv", "--reuid", "postgres", "--regid", "postgres", "--clear-groups"]
        env = service_env({})
        host.run([*as_postgres, "initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"], env)
        with open(data / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {self.rig.subnet}.0/24 trust\n")
        settings = [f"listen_addresses={host.address}", f"port={POSTGRES_PORT}", f"unix_socket_directories={data}"]
        settings += ["fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=200"]
        host.start("postgres", [*as_postgres, "postgres", "-D", str(data), *[f"-c{s}" for s in settings]], env)
        argv = ["redis-server", "--bind", host.address, "--port", str(REDIS_PORT), "--protected-mode", "no"]
        host.start("redis", [*argv, "--save", "", "--appendonly", "no", "--dir", str(host.home)], env)
        host.start("s3", [sys.executable, "-m", "moto.server", "-H", host.address, "-p", str(S3_PORT)], env | AWS_ENV)
        wait_for(lambda: redis.Redis.from_url(self.redis_url).ping(), 30, "redis on the services host")
        admin = self.database_url.replace("/radbatch", "/postgres")
        wait_for(lambda: _create_database(admin), 60, "PostgreSQL on the services host", log=host.logs / "postgres.log")
        wait_for(lambda: requests.get(f"{self.endpoint_url}/moto-api/", timeout=2).ok, 60, "the S3 server")

    def start_web(self) -> Api:
        web, env = self.rig["web"], self.web_env()
        web.run([sys.executable, "-m", "db.setup", "--quiet"], env)  # migrations, the bucket, the admin's token
        argv = [str(BIN / "gunicorn"), "--bind", f"{web.address}:{WEB_PORT}", "--workers", "2", "--threads", "4"]
        gunicorn = web.start("web", [*argv, "--no-control-socket", "--timeout", "120", "web:create_app()"], env)
        listener = web.start("listener", [sys.executable, "-m", "listener"], env)
        wait_for(
            lambda: requests.get(f"{self.web_url}/healthz", timeout=2).ok,
            90,
            "gunicorn",
            gunicorn,
            web.logs / "web.log",
        )
        wait_for(lambda: _answers_echo(web.address), 60, "DICOM listener", listener, web.logs / "listener.log")
        return Api(self.web_url, self.admin_token)

    def start_worker(self, name: str, cpus: str | None = None, **extra: str) -> None:
        host = self.rig[name]
        env = self.worker_env(host, **extra)
        seed_onnx_cache(env)
        argv = [str(BIN / "celery"), "-A", "worker.celery_app", "worker", "-Q", WORKER_QUEUES, "--pool", "prefork"]
        argv += ["--concurrency", "1", "--loglevel", "INFO", "--without-mingle", "--without-gossip", "-n", f"{name}@%h"]
        since = datetime.now(timezone.utc).isoformat()
        process = host.start("worker", argv, env, cpus)
        log = host.logs / "worker.log"
        wait_for(lambda: self.ready(name, since), 180, f"worker on {name}", process, log)

    def ready(self, name: str, since: str = "") -> bool:
        """Whether a worker process on that host has its models loaded (since `since`, an ISO time)."""
        beats = list_ready_workers(self.redis_url)
        return any(beat["hostname"] == self.rig[name].hostname and beat["loaded_at"] >= since for beat in beats)

    def ensure_workers(self, *names: str) -> None:
        for name in names:
            worker = self.rig[name].processes.get("worker")
            if worker is None or worker.poll() is not None:
                self.rig[name].kill_all()
                self.start_worker(name)

    def holds_work(self, name: str) -> bool:
        """Whether a worker host's worker holds a task right now (its published holding list, broker.inflight)."""
        client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
        keys = client.keys(f"radbatch:holding:{self.rig[name].hostname}:*")
        return any(client.get(key) not in (None, b"[]", b"") for key in keys)

    def listener_job(self, calling_aet: str) -> int | None:
        """The newest job the DICOM listener opened for `calling_aet`, if any."""
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                sql = "SELECT max(id) FROM jobs WHERE name LIKE :name"
                return connection.execute(text(sql), {"name": f"DICOM from {calling_aet} at %"}).scalar()
        finally:
            engine.dispose()

    def counts(self, job_id: int) -> dict[str, int]:
        """What the database holds for a job: images, images done or failed, distinct files, predictions, and the
        largest number of rows one (image, model) pair or one uploaded path has, the models (served ones and the
        ensemble), and the fewest and most predictions one image has."""
        sql = """
            SELECT
              (SELECT count(*) FROM images WHERE job_id = :j) AS images,
              (SELECT count(*) FROM images WHERE job_id = :j AND status = 'done') AS done,
              (SELECT count(*) FROM images WHERE job_id = :j AND status = 'failed') AS failed,
              (SELECT count(DISTINCT path) FROM images WHERE job_id = :j) AS paths,
              (SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM images WHERE job_id = :j GROUP BY path) a)
                AS most_per_path,
              (SELECT count(*) FROM predictions p JOIN images i ON i.id = p.image_id WHERE i.job_id = :j)
                AS predictions,
              (SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM predictions p JOIN images i
                ON i.id = p.image_id WHERE i.job_id = :j GROUP BY p.image_id, p.model_name) b) AS most_per_pair,
              (SELECT count(DISTINCT p.model_name) FROM predictions p JOIN images i ON i.id = p.image_id
                WHERE i.job_id = :j) AS models,
              (SELECT coalesce(max(n), 0) FROM (SELECT count(p.id) AS n FROM images i LEFT JOIN predictions p
                ON i.id = p.image_id WHERE i.job_id = :j GROUP BY i.id) d) AS most_per_image,
              (SELECT coalesce(min(n), 0) FROM (SELECT count(p.id) AS n FROM images i LEFT JOIN predictions p
                ON i.id = p.image_id WHERE i.job_id = :j GROUP BY i.id) c) AS fewest_per_image
        """
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                return dict(connection.execute(text(sql), {"j": job_id}).mappings().one())
        finally:
            engine.dispose()


def _create_database(admin_url: str) -> bool:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            if not connection.execute(text("SELECT 1 FROM pg_database WHERE datname = 'radbatch'")).first():
                connection.execute(text("CREATE DATABASE radbatch"))
        return True
    finally:
        engine.dispose()


def _answers_echo(address: str) -> bool:
    from pynetdicom import AE

    ae = AE(ae_title=DICOM_SENDER)
    ae.add_requested_context("1.2.840.10008.1.1")
    association = ae.associate(address, DICOM_PORT, ae_title="RADBATCH")
    if not association.is_established:
        return False
    status = association.send_c_echo()
    association.release()
    return bool(status) and status.Status == 0


@contextmanager
def site(workers: tuple[str, ...] = ("w1", "w2"), cpus: dict[str, str] | None = None) -> Iterator[tuple[Site, Api]]:
    """A rig with the services, the web host and `workers` running; everything torn down afterwards."""
    with Rig() as rig:
        running = Site(rig)
        running.start_services()
        api = running.start_web()
        for name in workers:
            running.start_worker(name, (cpus or {}).get(name))
        yield running, api


def upload(api: Api, files: list[tuple[str, bytes]], name: str, chunk: int = 250, **form: str) -> int:
    """An open job, its files sent in chunks, closed; returns its id."""
    data = {"name": name, "open": "true", **form}
    response = api.http.post(f"{api.base}/jobs", data=data, timeout=120)
    assert response.status_code == 201, response.text[:500]
    job_id = response.json()["id"]
    for start in range(0, len(files), chunk):
        api.add_files(job_id, files[start : start + chunk])
    api.close(job_id)
    return job_id
