"""Run supervisord quietly in the foreground: its programs write to $RADBATCH_HOME/logs, the terminal gets one
`ready: http://…` line once the web app answers and a worker has its models loaded (GET /api/v1/readyz), and
Ctrl-C or SIGTERM stops everything.
"""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.error
import urllib.request
import xmlrpc.client
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

from settings import Settings

POLL_S = 0.5
SLOW_START_S = 60  # after this long without a ready worker, say what is going on (once)
STOP_TIMEOUT_S = 180  # the worker may finish its current batch (stopwaitsecs=120) before it exits


def is_ready(port: int) -> bool:
    """Whether the web app answers its readiness probe: database, Redis, and a worker with its models loaded."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/readyz", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def failed_programs(socket_path: Path) -> list[str]:
    """The programs supervisord gave up starting (FATAL); empty while it is still starting them."""
    transport = SupervisorTransport(None, None, f"unix://{socket_path}")
    proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
    try:
        return [info["name"] for info in proxy.supervisor.getAllProcessInfo() if info["statename"] == "FATAL"]
    except (OSError, xmlrpc.client.Error):
        return []  # not listening yet
    finally:
        transport.close()


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"({path} does not exist)"


class Supervisor:
    """supervisord as a child in its own session, so that only this process decides when it stops."""

    def __init__(self, binary: Path, config: Path, settings: Settings):
        self.settings = settings
        self.log_dir = settings.log_dir
        self.socket_path = settings.home / "supervisor.sock"
        with open(self.log_dir / "supervisord.out", "ab") as out:  # what it says before its own log is open
            self.process = subprocess.Popen(
                [str(binary), "--nodaemon", "--configuration", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.stopping = False

    def request_stop(self, _signum: int, _frame: object) -> None:
        if not self.stopping:
            self.stopping = True
            print("radbatch: stopping (the worker finishes the batch it is on first)", flush=True)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait_until_ready(self) -> bool:
        """True once ready; False if stopping or supervisord or one of its programs gave up (after saying why)."""
        started, warned = time.monotonic(), False
        while not self.stopping:
            if self.process.poll() is not None:
                print(f"error: supervisord exited with {self.process.returncode}; see {self.log_dir}/supervisord.log")
                return False
            if is_ready(self.settings.port):
                return True
            failed = failed_programs(self.socket_path)
            if failed:
                for name in failed:
                    print(f"error: {name} could not start; the end of {self.log_dir / name}.log:")
                    print(log_tail(self.log_dir / f"{name}.log"))
                return False
            if not warned and time.monotonic() - started > SLOW_START_S:
                warned = True
                print(f"radbatch: still waiting for a worker to load its models (see {self.log_dir}/worker.log)")
            time.sleep(POLL_S)
        return False

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            print(f"error: supervisord did not stop within {STOP_TIMEOUT_S} s and was killed; its programs may remain")
            return self.process.wait()


def run_in_foreground(binary: Path, config: Path, settings: Settings) -> int:
    """Start supervisord, print `ready: <url>` once ready, and wait; returns supervisord's exit status."""
    supervisor = Supervisor(binary, config, settings)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, supervisor.request_stop)
    if not supervisor.wait_until_ready():
        code = supervisor.stop()
        return code if supervisor.stopping else 1
    print(f"ready: http://127.0.0.1:{settings.port}/", flush=True)
    supervisor.process.wait()  # a signal runs request_stop, then the wait goes on until supervisord has exited
    if not supervisor.stopping:
        print(f"error: supervisord exited with {supervisor.process.returncode}; see {settings.log_dir}/supervisord.log")
        return supervisor.process.returncode or 1
    code = supervisor.stop()
    print("radbatch: stopped", flush=True)
    return code
