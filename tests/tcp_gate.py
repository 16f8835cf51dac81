"""A TCP relay in front of a service that a test can shut (new connections refused, open ones cut) and open
again on the same port: the service's host going away for a while, without losing what the service holds."""

from __future__ import annotations

import select
import socket
import socketserver
import threading

from tests.services import free_port


class _Relay(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        gate: Gate = self.server.gate  # type: ignore[attr-defined]
        try:
            upstream = socket.create_connection(gate.target, timeout=5)
        except OSError:
            return
        gate.track(self.request, upstream)
        sockets = [self.request, upstream]
        try:
            while gate.is_open:
                readable, _, _ = select.select(sockets, [], [], 0.5)
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    (upstream if source is self.request else self.request).sendall(data)
        except OSError:
            pass
        finally:
            upstream.close()


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class Gate:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self.is_open = False
        self._server: _Server | None = None
        self._connections: list[socket.socket] = []

    def track(self, *connections: socket.socket) -> None:
        self._connections += connections

    def open(self) -> None:
        self._server = _Server(("127.0.0.1", self.port), _Relay)
        self._server.gate = self  # type: ignore[attr-defined]
        self.is_open = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def shut(self) -> None:
        self.is_open = False
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for connection in self._connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            connection.close()
        self._connections = []
