"""Many hosts on one machine: network namespaces that the test makes itself, joined by a bridge.

Each host is a network namespace `rbh-<random>-<host>` with one veth (`eth0`, 10.231.<n>.<i>/24) on a bridge that
lives in a namespace of its own (`rbh-<random>-lan`), so the machine's firewall and routes never see the hosts'
traffic; one more veth gives this (the test's) process 10.231.<n>.1. Every process a host runs starts inside its
namespace and, through `unshare --mount --uts`, in its own mount namespace (the other hosts' folders covered by
empty tmpfs mounts) under its own host name. `Rig.close` kills every process in every namespace (`ip netns pids`)
and deletes the namespaces, and with them the veths and the bridge.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.services import ServiceError, start_process

HOSTS = ("services", "web", "w1", "w2")
# In the host's own mount and UTS namespace: take its host name, cover the other hosts' folders, run the command.
_ENTER = 'hostname "$0" && for d in $RBH_HIDE; do mount -t tmpfs -o size=64k,mode=000 rbh "$d"; done && exec "$@"'


class RigUnavailable(RuntimeError):
    """This machine cannot make network namespaces (not root, or no `ip netns`)."""


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise ServiceError(f"{' '.join(argv)}: {result.stderr.strip()}")
    return result


def _free_subnet() -> str:
    """A 10.231.<n>.0/24 that no interface of this machine's namespace already routes."""
    routes = _ip("-4", "route", "show").stdout
    for _ in range(50):
        subnet = f"10.231.{secrets.randbelow(254) + 1}"
        if f"{subnet}." not in routes:
            return subnet
    raise ServiceError("no free 10.231.x.0/24 subnet")


@dataclass
class Host:
    name: str
    netns: str
    address: str
    folder: Path  # its own: `home`, `logs` and whatever its services keep
    hidden: list[Path]  # the other hosts' folders, covered in its mount namespace
    hostname: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.folder / "home"

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    def command(self, argv: list[str], cpus: str | None = None) -> list[str]:
        pinned = ["taskset", "-c", cpus] if cpus else []
        enter = ["unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", _ENTER, self.hostname]
        return ["ip", "netns", "exec", self.netns, *enter, *pinned, *argv]

    def start(self, name: str, argv: list[str], env: dict[str, str], cpus: str | None = None) -> subprocess.Popen:
        """Start `argv` on this host (its log: logs/<name>.log)."""
        hide = " ".join(str(path) for path in self.hidden)
        process = start_process(self.command(argv, cpus), {**env, "RBH_HIDE": hide}, self.logs / f"{name}.log")
        self.processes[name] = process
        return process

    def run(self, argv: list[str], env: dict[str, str], timeout: float = 300) -> str:
        hide = " ".join(str(path) for path in self.hidden)
        result = subprocess.run(
            self.command(argv), env={**env, "RBH_HIDE": hide}, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise ServiceError(f"{self.name}: {' '.join(argv)} exited {result.returncode}:\n{result.stderr[-3000:]}")
        return result.stdout

    def pids(self) -> list[int]:
        return [int(pid) for pid in _ip("netns", "pids", self.netns, check=False).stdout.split()]

    def kill_all(self, sig: signal.Signals = signal.SIGKILL, timeout: float = 20) -> None:
        """Send `sig` to every process in this host's network namespace until none is left (the host dies whole)."""
        deadline = time.monotonic() + timeout
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
            sig = signal.SIGKILL
        for process in self.processes.values():
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.processes.clear()
        if self.pids():
            raise ServiceError(f"{self.name}: processes {self.pids()} outlived SIGKILL")

    def signal_process(self, name: str, sig: signal.Signals) -> None:
        """`sig` to every process of the command started as `name` (its whole session)."""
        os.killpg(self.processes[name].pid, sig)

    def link(self, up: bool) -> None:
        """This host's network cable: `ip link set eth0 up|down` inside its namespace."""
        _ip("link", "set", "eth0", "up" if up else "down", netns=self.netns)


class Rig:
    """The namespaces, the bridge and the hosts; use as a context manager (it always cleans up)."""

    def __init__(self, names: tuple[str, ...] = HOSTS) -> None:
        if os.geteuid() != 0:
            raise RigUnavailable("network namespaces need root (CI runs as root)")
        if shutil.which("ip") is None or shutil.which("unshare") is None:
            raise RigUnavailable("`ip` (iproute2) and `unshare` (util-linux) are needed")
        self.prefix = f"rbh-{secrets.token_hex(3)}"
        self.root = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self.root.chmod(0o755)  # PostgreSQL runs as its own user on the services host
        self.names = names
        self.lan = f"{self.prefix}-lan"
        self.uplink = f"{self.prefix}-up"  # this process's end
        self.subnet = ""
        self.hosts: dict[str, Host] = {}
        self._made: list[str] = []

    def __enter__(self) -> Rig:
        try:
            self._add_netns(self.lan)
        except ServiceError as error:
            shutil.rmtree(self.root, ignore_errors=True)
            raise RigUnavailable(f"`ip netns add` failed: {error}") from None
        try:
            self._wire()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _add_netns(self, name: str) -> None:
        _ip("netns", "add", name)
        self._made.append(name)
        _ip("link", "set", "lo", "up", netns=name)

    def _wire(self) -> None:
        self.subnet = _free_subnet()
        _ip("link", "add", "br0", "type", "bridge", netns=self.lan)
        _ip("link", "set", "br0", "up", netns=self.lan)
        _ip("link", "add", self.uplink, "type", "veth", "peer", "name", "up0", "netns", self.lan)
        _ip("addr", "add", f"{self.subnet}.1/24", "dev", self.uplink)
        _ip("link", "set", self.uplink, "up")
        _ip("link", "set", "up0", "master", "br0", "up", netns=self.lan)
        folders = {name: self.root / name for name in self.names}
        for index, name in enumerate(self.names, start=2):
            netns = f"{self.prefix}-{name}"
            self._add_netns(netns)
            port = f"h{index}"
            _ip("link", "add", port, "netns", self.lan, "type", "veth", "peer", "name", "eth0", "netns", netns)
            _ip("link", "set", port, "master", "br0", "up", netns=self.lan)
            address = f"{self.subnet}.{index}"
            _ip("addr", "add", f"{address}/24", "dev", "eth0", netns=netns)
            _ip("link", "set", "eth0", "up", netns=netns)
            folder = folders[name]
            for sub in ("home", "logs"):
                (folder / sub).mkdir(parents=True)
            hidden = [other for key, other in folders.items() if key != name]
            self.hosts[name] = Host(name, netns, address, folder, hidden, f"{self.prefix}-{name}")
        ipaddress.ip_network(f"{self.subnet}.0/24")  # a valid network, or this raises

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def close(self) -> None:
        """Kill every process in every namespace, delete the namespaces (their veths and the bridge go with them)."""
        problems = []
        for host in self.hosts.values():
            try:
                host.kill_all()
            except ServiceError as error:
                problems.append(str(error))
        for netns in reversed(self._made):
            for pid in _ip("netns", "pids", netns, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _ip("netns", "del", netns, check=False)
        self._made.clear()
        _ip("link", "del", self.uplink, check=False)  # gone with its peer already, unless the lan never existed
        if not os.environ.get("RBH_KEEP"):  # RBH_KEEP=1: leave the hosts' folders and logs to read
            shutil.rmtree(self.root, ignore_errors=True)
        if problems:
            raise ServiceError("; ".join(problems))


def leftovers(prefix: str) -> list[str]:
    """Namespaces and links of a rig that are still there (none after `Rig.close`)."""
    names = _ip("netns", "list", check=False).stdout.split()
    links = _ip("-o", "link", "show", check=False).stdout
    return [name for name in names if name.startswith(prefix)] + ([prefix] if prefix in links else [])
