"""Services the fault-injection tests break on purpose: a Redis with an append-only file, a private PostgreSQL
cluster they can stop, and a memory limit for the worker (a kernel cgroup where the machine allows one).

Plain helpers; the fixtures live in tests/test_faults.py.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import redis
from sqlalchemy import create_engine, text

from broker import WORKER_QUEUES
from deploy.run import redis_server_binary
from tests import services


class AofRedis:
    """A redis-server with appendonly on (as `make run` starts it) on a free port; kill it and start it again."""

    def __init__(self, data_dir: Path):
        self.dir = data_dir
        self.port = services.free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> AofRedis:
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [redis_server_binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir)]
        argv += ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
        self.process = services.start_process(argv, dict(os.environ), self.dir / "redis.log")
        check = lambda: redis.Redis.from_url(self.url).ping()  # noqa: E731
        services.ready_or_stopped(self.process, check, 30, "redis", self.dir / "redis.log")
        return self

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            services.stop_process(self.process)


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PrivatePostgres:
    """A PostgreSQL cluster of our own (initdb + pg_ctl) on a free port, so a test can stop and restart it.

    PostgreSQL refuses to run as root, so as root it runs as the `postgres` user.
    """

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        self.port = services.free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="radbatch-pg-"))
        self.data = self.root / "data"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/radbatch"

    def unavailable(self) -> str | None:
        if self.bin is None:
            return "no initdb: install the PostgreSQL server package (postgresql)"
        if self.user is not None:
            try:
                pwd.getpwnam(self.user)
            except KeyError:
                return "running as root, and there is no 'postgres' user to run a private PostgreSQL cluster"
        return None

    def _run(self, *argv: str, timeout: float = 120) -> None:
        done = subprocess.run(
            [str(self.bin / argv[0]), *argv[1:]], user=self.user, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise services.ServiceError(f"{' '.join(argv[:2])} failed: {done.stderr or done.stdout}")

    def init(self) -> PrivatePostgres:
        if self.user is not None:
            shutil.chown(self.root, self.user)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        self.start()
        engine = create_engine(self.url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text("CREATE DATABASE radbatch"))
        engine.dispose()
        return self

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "postgres.log"), "-o", options, "-w", "start")

    def stop(self, mode: str = "immediate") -> None:
        """`immediate` is a crash: every server process quits at once, and the next start replays the WAL."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop("fast")
        except services.ServiceError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class MemoryCap:
    """A memory limit on a process and its children, as a container has.

    Enforced by the kernel where this machine lets a test create a cgroup (v1 memory controller): past the
    limit its OOM killer kills the biggest process. Elsewhere a watchdog thread does the same from /proc:
    SIGKILL to the biggest child once the tree's resident memory passes the limit.
    """

    def __init__(self) -> None:
        self.cgroup = self._make_cgroup()
        self.limit: int | None = None
        self.root_pid: int | None = None
        self.kills = 0
        self._stop = threading.Event()

    @staticmethod
    def _make_cgroup() -> Path | None:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                group = Path("/sys/fs/cgroup/memory") / path.lstrip("/") / f"radbatch-test-{os.getpid()}"
                try:
                    group.mkdir(exist_ok=True)
                    return group if (group / "memory.limit_in_bytes").exists() else None
                except OSError:
                    return None
        return None

    @property
    def enforced_by(self) -> str:
        return "kernel cgroup" if self.cgroup else "watchdog"

    def preexec(self):
        """For Popen(preexec_fn=...): the process joins the cgroup before it runs, so its children do too."""
        if self.cgroup is None:
            return None
        procs = self.cgroup / "cgroup.procs"
        return lambda: procs.write_text(str(os.getpid()))

    def usage(self) -> int:
        """Anonymous memory in use (the page cache the cgroup also counts is reclaimed before anything is killed)."""
        if self.cgroup is not None:
            stat = dict(line.split() for line in (self.cgroup / "memory.stat").read_text().splitlines())
            return int(stat["total_rss"])
        pids = [self.root_pid, *services.pool_children(self.root_pid)]
        return sum(_rss_bytes(pid) for pid in pids)

    def set_limit(self, limit: int, root_pid: int) -> None:
        self.limit, self.root_pid = limit, root_pid
        if self.cgroup is not None:
            (self.cgroup / "memory.limit_in_bytes").write_text(str(limit))
            return
        self._stop = threading.Event()
        threading.Thread(target=self._watch, name="memory-watchdog", daemon=True).start()

    def lift(self) -> None:
        if self.cgroup is not None:
            (self.cgroup / "memory.limit_in_bytes").write_text("-1")
        self.limit = None
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            if self.limit is not None and self.usage() > self.limit:
                children = services.pool_children(self.root_pid)
                if children:
                    os.kill(max(children, key=_rss_bytes), signal.SIGKILL)
                    self.kills += 1

    def oom_kills(self) -> int:
        if self.cgroup is not None:
            for line in (self.cgroup / "memory.oom_control").read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
            return 0
        return self.kills

    def close(self) -> None:
        self._stop.set()
        if self.cgroup is not None:
            for _ in range(50):
                try:
                    self.cgroup.rmdir()
                    return
                except OSError:  # its last processes are still exiting
                    time.sleep(0.1)


def start_worker(env: dict[str, str], log: Path, redis_url: str, memory: MemoryCap | None) -> subprocess.Popen:
    """A prefork Celery worker with one child, inside `memory`'s cgroup if it has one; returns once it is ready."""
    services.seed_onnx_cache(env)
    argv = [
        str(services.BIN / "celery"),
        "-A",
        "worker.celery_app",
        "worker",
        "-Q",
        WORKER_QUEUES,
        "--pool",
        "prefork",
    ]
    argv += ["--concurrency", "1", "--loglevel", "INFO", "--without-mingle", "--without-gossip", "-n", "faults@%h"]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            argv,
            cwd=services.REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=memory.preexec() if memory else None,
        )
    check = lambda: services.list_ready_workers(redis_url)  # noqa: E731
    services.ready_or_stopped(process, check, 180, "celery worker", log)
    return process
