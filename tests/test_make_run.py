"""`make run` as a user sees it: `python -m deploy.run` (after `python -m db.setup --quiet`, as the Makefile does) on
free ports and a fresh RADBATCH_HOME prints a few lines and `ready: http://…` once a worker has its models, keeps
service output in log files, leaves polls out of the access log, and stops everything on SIGTERM."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from deploy.access_log import is_poll
from deploy.run import port_in_use
from tests.conftest import PIPELINE_IMAGES
from tests.dicom_network_helpers import scu_association
from tests.services import REPO_ROOT, Api, free_port, seed_onnx_cache, service_env, wait_for

READY_TIMEOUT_S = 180
ADMIN_TOKEN = "make-run-test-token"


@pytest.mark.parametrize(
    ("method", "path", "quiet"),
    [
        ("GET", "/healthz", True),
        ("GET", "/api/v1/healthz", True),
        ("GET", "/api/v1/readyz", True),
        ("GET", "/api/v1/jobs/12", True),
        ("GET", "/api/v1/jobs/12?ignored=1", True),
        ("GET", "/jobs/12/rows", True),
        ("GET", "/metrics", True),
        ("HEAD", "/healthz", True),
        ("DELETE", "/api/v1/jobs/12", False),
        ("POST", "/api/v1/jobs/12/files", False),
        ("GET", "/api/v1/jobs", False),
        ("GET", "/api/v1/jobs/12/results", False),
        ("GET", "/jobs/12", False),
        ("GET", "/jobs/12/results.csv", False),
        ("GET", "/api/v1/jobs/abc", False),
        ("GET", "/metrics/../login", False),
        ("GET", "/login", False),
    ],
)
def test_is_poll(method: str, path: str, quiet: bool) -> None:
    assert is_poll(method, path) is quiet


class LineReader:
    """A child's stdout, line by line, with a deadline (a thread reads, so a silent child cannot hang the test)."""

    def __init__(self, process: subprocess.Popen):
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(process.stdout,), daemon=True).start()

    def _read(self, stream) -> None:
        with stream:  # closed at the end of the output: the pipe is not left to the garbage collector
            for line in stream:
                self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def until(self, prefix: str, timeout: float) -> list[str]:
        """Lines up to and including the first that starts with `prefix`."""
        seen, deadline = [], time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line starting {prefix!r} within {timeout:.0f} s; got {seen}") from None
            if line is None:
                raise AssertionError(f"output ended before a line starting {prefix!r}; got {seen}")
            seen.append(line)
            if line.startswith(prefix):
                return seen


def _stop(process: subprocess.Popen, home: Path) -> None:
    """What a failed test leaves running: SIGTERM (deploy.run passes it on), else kill supervisord and its children."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(150)
            return
        except subprocess.TimeoutExpired:
            process.kill()
    pid_file = home / "supervisord.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass


def _dicom_echo(port: int):
    """The listener's C-ECHO answer, or None while it does not answer."""
    assoc = scu_association(port, "PROBE")
    if not assoc.is_established:
        return None
    status = assoc.send_c_echo()
    assoc.release()
    return status


def _access_lines(log: Path) -> list[str]:
    """`METHOD /path` of each access-log line in gunicorn's log."""
    return re.findall(r'"([A-Z]+ \S+) HTTP/1\.1"', log.read_text(errors="replace"))


def _make_run(home: Path, **settings: str) -> tuple[subprocess.Popen, dict[str, str]]:
    """`make run` on free ports: `db.setup --quiet` (checked silent), then `deploy.run` with its stdout piped."""
    env = service_env(
        {
            "RADBATCH_HOME": str(home),
            "RADBATCH_PORT": str(free_port()),
            "RADBATCH_REDIS_PORT": str(free_port()),
            "RADBATCH_WORKER_METRICS_PORT": str(free_port()),
            "RADBATCH_DICOM_PORT": str(free_port()),
            "RADBATCH_ADMIN_TOKEN": ADMIN_TOKEN,
            **{f"RADBATCH_{name.upper()}": value for name, value in settings.items()},
        }
    )
    seed_onnx_cache(env)  # the worker loads ONNX files; a first real run exports them (minutes with TensorFlow)
    setup = subprocess.run(
        [sys.executable, "-m", "db.setup", "--quiet"], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert (setup.returncode, setup.stdout, setup.stderr) == (0, "", "")
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy.run"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    return process, env


@pytest.mark.e2e
def test_make_run_is_quiet_says_ready_and_stops_cleanly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    started = time.monotonic()
    process, env = _make_run(home)
    port, redis_port = int(env["RADBATCH_PORT"]), int(env["RADBATCH_REDIS_PORT"])
    dicom_port = int(env["RADBATCH_DICOM_PORT"])
    try:
        output = LineReader(process)
        lines = output.until("ready: ", READY_TIMEOUT_S)
        print(f"ready after {time.monotonic() - started:.1f} s")
        logs = home / "logs"
        assert lines[0] == (
            f"radbatch: starting redis, worker, web, dicom; logs in {logs}/ (redis.log, worker.log, web.log,"
            " dicom.log); Ctrl-C stops everything"
        )
        metrics_port = env["RADBATCH_WORKER_METRICS_PORT"]
        assert lines[1] == (
            f"radbatch: listening on web 127.0.0.1:{port}, dicom 127.0.0.1:{dicom_port}, redis 127.0.0.1:{redis_port},"
            f" worker metrics 127.0.0.1:{metrics_port}"
        )
        assert (
            lines[2]
            == f"radbatch: log in at http://127.0.0.1:{port}/ as 'admin' with the password in {home}/admin_password"
        )
        assert lines[3:] == [
            "radbatch: API: send 'Authorization: Bearer $RADBATCH_ADMIN_TOKEN'",
            f"ready: http://127.0.0.1:{port}/",
        ]
        ready = requests.get(f"http://127.0.0.1:{port}/api/v1/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["workers"][0]["models"].keys() >= {"cnn", "unet"}
        assert "[queues]" in (logs / "worker.log").read_text()  # Celery's banner went to the log, not the terminal
        assert "Ready to accept connections" in (logs / "redis.log").read_text()
        echo = wait_for(lambda: _dicom_echo(dicom_port), 30, "the DICOM listener")  # supervised like the others
        assert echo.Status == 0

        api = Api(f"http://127.0.0.1:{port}", ADMIN_TOKEN)
        image = sorted(PIPELINE_IMAGES.glob("*.png"))[0]
        job = api.create_job([(image.name, image.read_bytes())], name="make run")
        assert api.wait_finished(job["id"], timeout=120)["done"] == 1  # polls GET /api/v1/jobs/<id>
        assert len(api.results(job["id"])) == 1
        base = f"http://127.0.0.1:{port}"
        for path in ("/healthz", "/api/v1/healthz", "/metrics", f"/jobs/{job['id']}/rows", "/login"):
            requests.get(f"{base}{path}", timeout=10, allow_redirects=False)
        time.sleep(1)  # gunicorn writes, supervisord copies into web.log
        assert _access_lines(logs / "web.log") == [
            "POST /api/v1/jobs",
            f"GET /api/v1/jobs/{job['id']}/results?page=1&per_page=50",
            "GET /login",
        ]

        process.send_signal(signal.SIGTERM)
        assert process.wait(150) == 0
        assert output.until("radbatch: stopped", 5) == [
            "radbatch: stopping (the worker finishes the batch it is on first)",
            "radbatch: stopped",
        ]
        assert not port_in_use(port) and not port_in_use(redis_port) and not port_in_use(dicom_port)
        assert not (home / "supervisord.pid").exists()
    finally:
        _stop(process, home)


@pytest.mark.e2e
def test_make_run_names_a_service_that_cannot_start_and_stops_the_others(tmp_path: Path) -> None:
    home = tmp_path / "home"
    process, env = _make_run(home, web_workers="-1")  # gunicorn refuses it: supervisord marks `web` FATAL
    try:
        output = LineReader(process)
        lines = output.until("error: ", READY_TIMEOUT_S)
        assert lines[-1] == f"error: web could not start; the end of {home / 'logs' / 'web.log'}:"
        assert process.wait(150) == 1
        assert "Error: Value must be positive: -1" in "\n".join(output.until("Error: Value must be positive", 5))
        assert not any(port_in_use(int(env[name])) for name in ("RADBATCH_PORT", "RADBATCH_REDIS_PORT"))
        assert not (home / "supervisord.pid").exists()
    finally:
        _stop(process, home)
