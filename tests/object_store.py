"""A real S3-compatible server for tests: moto's server mode (`moto[server]`), a separate process that boto3
talks to over HTTP exactly as it would to MinIO or AWS. Its objects live in that process's memory."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.services import free_port, ready_or_stopped, start_process, stop_process

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "radbatch-test",
    "AWS_SECRET_ACCESS_KEY": "radbatch-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class ObjectStore:
    """One S3 server process on `port`; `stop` and `start` again on the same port (its objects are then gone)."""

    log: Path
    port: int
    host: str = "127.0.0.1"
    process: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ObjectStore:
        argv = [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)]
        self.process = start_process(argv, {**_clean_env(), **AWS_ENV}, self.log)
        ready_or_stopped(self.process, self._answers, 30, "S3 server (moto)", self.log)
        return self

    def _answers(self) -> bool:
        return requests.get(f"{self.endpoint_url}/moto-api/", timeout=2).ok

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


def start_object_store(log: Path) -> ObjectStore:
    return ObjectStore(log=log, port=free_port()).start()
