"""A loopback HTTP proxy in front of the test web server that answers 503 to chosen requests, for retry tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length", "host"}


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    failed: bool


@dataclass
class FlakyProxy:
    url: str
    seen: list[Seen] = field(default_factory=list)


@contextmanager
def flaky_proxy(upstream: str, fail: Callable[[str, str, int], bool]) -> Iterator[FlakyProxy]:
    """Forward everything to `upstream`, except that `fail(method, path, n)` (n: how many requests with this method
    and path came before) makes the proxy answer 503 without forwarding."""
    proxy = FlakyProxy(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                earlier = sum(1 for s in proxy.seen if (s.method, s.path) == (self.command, self.path))
                refuse = fail(self.command, self.path, earlier)
                proxy.seen.append(Seen(self.command, self.path, dict(self.headers), refuse))
            if refuse:
                self._answer(503, b'{"error": "Service Unavailable", "message": "flaky proxy", "status": 503}', {})
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            answer = requests.request(self.command, upstream + self.path, headers=headers, data=body, timeout=120)
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
            self._answer(answer.status_code, answer.content, kept)

        def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_DELETE = _handle

        def log_message(self, *args) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
