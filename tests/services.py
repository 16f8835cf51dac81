"""Real services for the end-to-end tests: Redis, PostgreSQL databases, a Celery worker, gunicorn, an API client.

Plain helpers; the pytest fixtures that start them once per session live in tests/conftest.py.
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from broker import WORKER_QUEUES
from broker.heartbeat import list_ready_workers
from deploy.run import redis_server_binary

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
POSTGRES_ADMIN_URL = os.environ.get("RADBATCH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class ServiceError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def log_tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def wait_for(check, timeout: float, what: str, process: subprocess.Popen | None = None, log: Path | None = None):
    """Poll `check()` until it returns something truthy; fail early if `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServiceError(f"{what}: process exited with {process.returncode}\n{log_tail(log) if log else ''}")
        try:
            result = check()
        except (OSError, redis.RedisError, requests.RequestException):
            result = None
        if result:
            return result
        time.sleep(0.2)
    raise ServiceError(f"{what}: not ready after {timeout:.0f} s\n{log_tail(log) if log else ''}")


def start_process(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_process(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM the process group, then SIGKILL it if it does not exit in time."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    except ProcessLookupError:
        pass


def ready_or_stopped(process: subprocess.Popen, check, timeout: float, what: str, log: Path) -> None:
    """Wait for a started process to be ready; if it never is, stop it before raising."""
    try:
        wait_for(check, timeout, what, process, log)
    except BaseException:
        stop_process(process)
        raise


def start_redis(data_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [redis_server_binary(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir)]
    process = start_process(argv + ["--save", "", "--appendonly", "no"], dict(os.environ), data_dir / "redis.log")
    url = f"redis://127.0.0.1:{port}/0"
    ready_or_stopped(process, lambda: redis.Redis.from_url(url).ping(), 20, "redis", data_dir / "redis.log")
    return process, url


def postgres_reachable() -> str | None:
    """None if the test PostgreSQL answers, else why not."""
    engine = create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return None
    except OperationalError as error:
        return f"PostgreSQL at {make_url(POSTGRES_ADMIN_URL).render_as_string()} is unreachable: {error.orig}"
    finally:
        engine.dispose()


def create_postgres_database() -> str:
    """A fresh, uniquely named database; returns its URL."""
    name = f"radbatch_test_{os.getpid()}_{secrets.token_hex(4)}"
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(url: str) -> None:
    name = make_url(url).database
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


def service_env(overrides: dict[str, str]) -> dict[str, str]:
    """This environment without any RADBATCH_* variable, plus `overrides`; services import this checkout's code
    (not whichever checkout the virtual environment's editable install points at)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADBATCH_")}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO_ROOT)})
    env.update(overrides)
    return env


@functools.cache
def _exported_onnx_files() -> Path:
    """The served models' ONNX files, exported once per test session (the command a deployment runs ahead)."""
    folder = Path(tempfile.mkdtemp(prefix="radbatch-onnx-"))
    command = [sys.executable, "-m", "models.onnx_build", "--models", "cnn,unet", "--cache", str(folder)]
    subprocess.run(command, cwd=REPO_ROOT, env=service_env({}), check=True, capture_output=True, timeout=600)
    return folder


def seed_onnx_cache(env: dict[str, str]) -> None:
    """Give a worker's RADBATCH_HOME the exported ONNX files, so its processes never load TensorFlow to make them."""
    target = Path(env["RADBATCH_HOME"]) / "cache" / "onnx"
    shutil.copytree(_exported_onnx_files(), target, dirs_exist_ok=True)


def start_worker(env: dict[str, str], log: Path, redis_url: str, timeout: float = 180) -> subprocess.Popen:
    """A prefork Celery worker with one child; returns once that child has loaded its models."""
    seed_onnx_cache(env)
    queues = WORKER_QUEUES
    argv = [str(BIN / "celery"), "-A", "worker.celery_app", "worker", "-Q", queues, "--pool", "prefork"]
    argv += ["--concurrency", "1", "--loglevel", "INFO", "--without-mingle", "--without-gossip", "-n", "test@%h"]
    process = start_process(argv, env, log)
    ready_or_stopped(process, lambda: list_ready_workers(redis_url), timeout, "celery worker", log)
    return process


def pool_children(pid: int) -> list[int]:
    """The child processes of `pid` (the worker's pool processes), from /proc."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return children


def start_gunicorn(env: dict[str, str], log: Path, workers: int = 1) -> tuple[subprocess.Popen, str]:
    port = free_port()
    argv = [
        str(BIN / "gunicorn"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        "4",
        "--no-control-socket",
    ]
    process = start_process(argv + ["--timeout", "120", "web:create_app()"], env, log)
    base = f"http://127.0.0.1:{port}"
    ready_or_stopped(process, lambda: requests.get(f"{base}/healthz", timeout=2).ok, 60, "gunicorn", log)
    return process, base


class Api:
    """The radbatch REST API over HTTP with a Bearer token."""

    def __init__(self, base_url: str, token: str):
        self.base = f"{base_url}/api/v1"
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    def _check(self, response: requests.Response, *expected: int) -> dict:
        assert response.status_code in expected, f"{response.request.method} {response.url}: {response.text[:500]}"
        return response.json()

    @staticmethod
    def _parts(files: list[tuple[str, bytes]]) -> list[tuple[str, tuple[str, bytes, str]]]:
        return [("files", (path, data, "application/octet-stream")) for path, data in files]

    def create_job(self, files: list[tuple[str, bytes]], name: str = "", is_open: bool = False) -> dict:
        data = {"name": name, **({"open": "true"} if is_open else {})}
        return self._check(self.http.post(f"{self.base}/jobs", data=data, files=self._parts(files), timeout=120), 201)

    def add_files(self, job_id: int, files: list[tuple[str, bytes]]) -> dict:
        response = self.http.post(f"{self.base}/jobs/{job_id}/files", files=self._parts(files), timeout=120)
        return self._check(response, 200, 201)

    def close(self, job_id: int) -> dict:
        return self._check(self.http.post(f"{self.base}/jobs/{job_id}/close", timeout=30), 200)

    def job(self, job_id: int) -> dict:
        return self._check(self.http.get(f"{self.base}/jobs/{job_id}", timeout=30), 200)

    def results(self, job_id: int, per_page: int = 50) -> list[dict]:
        rows, page = [], 1
        while True:
            params = {"page": page, "per_page": per_page}
            body = self._check(self.http.get(f"{self.base}/jobs/{job_id}/results", params=params, timeout=30), 200)
            rows += body["results"]
            if page >= body["pages"]:
                return rows
            page += 1

    def wait_finished(self, job_id: int, timeout: float = 300) -> dict:
        def finished():
            job = self.job(job_id)
            return job if job["status"] in ("done", "failed", "cancelled") else None

        return wait_for(finished, timeout, f"job {job_id}")
