"""Two instances on one host: the worker's metrics port follows RADBATCH_PORT, `make run` says where it is and
refuses a taken one, and the benchmark says plainly when it cannot read the worker's metrics."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from benchmarks import throughput
from deploy import run
from settings import Settings
from tests.services import REPO_ROOT, free_port, service_env


def test_the_metrics_port_follows_the_web_port_unless_set(tmp_path: Path) -> None:
    assert Settings(home=tmp_path).worker_metrics_port == 9540  # the default web port 5000, as before
    first, second = (Settings.from_env({"RADBATCH_HOME": str(tmp_path), "RADBATCH_PORT": p}) for p in ("5300", "5301"))
    assert (first.worker_metrics_port, second.worker_metrics_port) == (9840, 9841)
    assert (
        Settings.from_env({"RADBATCH_PORT": "5300", "RADBATCH_WORKER_METRICS_PORT": "9999"}).worker_metrics_port == 9999
    )
    assert Settings.from_env({"RADBATCH_WORKER_METRICS_PORT": "0"}).worker_metrics_port == 0
    assert Settings(port=65000).worker_metrics_port == 60460  # no room above: below it


def test_make_run_names_the_metrics_endpoint(tmp_path: Path) -> None:
    assert ("worker metrics", "127.0.0.1", 9840) in run.listening_ports(Settings(home=tmp_path, port=5300))
    quiet = run.listening_ports(Settings(home=tmp_path, worker_metrics_port=0))
    assert "worker metrics" not in [service for service, _, _ in quiet]


def test_make_run_refuses_a_metrics_port_already_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        overrides = {
            "HOME": tmp_path / "home",
            "PORT": free_port(),
            "DICOM_PORT": free_port(),
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "WORKER_METRICS_PORT": port,
        }
        env = service_env({f"RADBATCH_{name}": str(value) for name, value in overrides.items()})
        ran = subprocess.run(
            [sys.executable, "-m", "deploy.run"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
        )
    assert ran.returncode == 2, ran.stderr
    assert f"port(s) {port} already in use" in ran.stderr and "RADBATCH_WORKER_METRICS_PORT" in ran.stderr


class _NotMetrics(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.send_error(404)

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def not_metrics() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotMetrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()
    server.server_close()


def test_the_benchmark_says_when_it_cannot_scrape_the_worker(not_metrics: str, capsys) -> None:
    nothing = f"http://127.0.0.1:{free_port()}/metrics"
    for url, reason in ((nothing, "nothing answers there;"), (not_metrics, "404;")):
        with pytest.raises(SystemExit) as stopped:
            throughput.main(["--token", "t", "--url", "http://127.0.0.1:1", "--worker-metrics", url])
        assert stopped.value.code == 2
        error = capsys.readouterr().err
        assert f"error: cannot scrape the worker's metrics at {url}: {reason}" in error
        assert "RADBATCH_WORKER_METRICS_PORT" in error and "Traceback" not in error


def test_the_benchmark_splits_uploads_by_files_and_bytes(tmp_path: Path) -> None:
    paths = []
    for number, size in enumerate((30, 30, 30, 100, 10, 10, 10, 10)):
        paths.append(tmp_path / f"{number}.bin")
        paths[-1].write_bytes(b"x" * size)
    sizes = [[p.stat().st_size for p in chunk] for chunk in throughput.chunks(paths, most_files=3, most_bytes=64)]
    assert sizes == [[30, 30], [30], [100], [10, 10, 10], [10]]
