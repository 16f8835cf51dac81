"""Webhook deliveries over real sockets: internal destinations are refused on every connection (after DNS), the
allow-list lets a site's own network through, redirects are not followed, and a failure's text never quotes the
peer. Job creation refusing such URLs with a 400 is in test_web_webhooks.py."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address

import pytest

from broker.destinations import DestinationPolicy
from worker.notifications import post

LOOPBACK = DestinationPolicy.from_setting(["127.0.0.0/8", "::1/128"])
PUBLIC_ONLY = DestinationPolicy()


class Recorder(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers["Content-Length"]))
        Recorder.hits.append(self.path)
        if self.path == "/redirect":
            self.send_response(302, "Moved \x07\x00 peer-reason")
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_address[1]}/target")
        else:
            self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[int]:
    Recorder.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def binary_service() -> Iterator[int]:
    """A non-HTTP service (like the DICOM port) that answers every connection with bytes of its own."""
    listening = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listening.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listening.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"\x07\x00\x00\x00\x00\x0aSECRET-BANNER\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listening.getsockname()[1]
    stop.set()
    thread.join()
    listening.close()


def _post(url: str, policy: DestinationPolicy = PUBLIC_ONLY) -> tuple[str | None, bool]:
    return post(url, "s" * 32, 1, b"{}", policy)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
def test_loopback_is_refused_by_default_even_by_name(receiver: int, host: str) -> None:
    """`localhost` is a name: it is resolved and refused when connecting (as any name resolving inside would be)."""
    error, permanent = _post(f"http://{host}:{receiver}/hook")
    assert error is not None and error.startswith("destination not allowed") and permanent
    assert Recorder.hits == []


def test_the_allow_list_lets_a_sites_own_network_through(receiver: int) -> None:
    assert _post(f"http://localhost:{receiver}/hook", LOOPBACK) == (None, False)
    assert _post(f"http://localhost:{receiver}/hook", DestinationPolicy.from_setting(["LOCALHOST"])) == (None, False)
    assert Recorder.hits == ["/hook", "/hook"]


def test_redirects_are_not_followed_and_the_reason_phrase_is_not_kept(receiver: int) -> None:
    error, permanent = _post(f"http://127.0.0.1:{receiver}/redirect", LOOPBACK)
    assert Recorder.hits == ["/redirect"] and not permanent
    assert error.startswith("HTTP 302: a redirect") and "peer-reason" not in error


def test_errors_never_quote_the_peer_and_do_not_tell_closed_from_open(binary_service: int) -> None:
    talking, _ = _post(f"http://127.0.0.1:{binary_service}/", LOOPBACK)
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    refused, _ = _post(f"http://127.0.0.1:{port}/", LOOPBACK)
    assert talking == refused == "could not connect, or the connection broke before an HTTP answer"


def test_the_policy_judges_every_kind_of_address() -> None:
    policy = DestinationPolicy.from_setting(["10.20.0.0/16", "hooks.intranet.example"])
    for blocked in ("127.0.0.2", "::1", "0.0.0.0", "::", "10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1"):
        assert not policy.allows_address(ip_address(blocked)), blocked
    for blocked in ("169.254.169.254", "fe80::1", "fc00::1", "224.0.0.1", "ff02::1", "::ffff:10.0.0.1"):
        assert not policy.allows_address(ip_address(blocked)), blocked
    for allowed in ("8.8.8.8", "2606:4700::1111", "10.20.3.4"):
        assert policy.allows_address(ip_address(allowed)), allowed
    assert policy.allows_host("HOOKS.intranet.example.")
