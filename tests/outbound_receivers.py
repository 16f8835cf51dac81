"""Receivers for the results radbatch sends beyond PACS, as a hospital's systems would run them: an HL7 v2 MLLP
receiver (hl7apy's MLLPServer) that parses every message with hl7apy, keeps it and answers an ACK (AA, or AE when
told to refuse), and a FHIR endpoint (http.server) that keeps every Bundle POSTed to it."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hl7apy.core import Message
from hl7apy.mllp import AbstractHandler, MLLPServer

from interop.hl7 import parse
from tests import services

START, END = "\x0b", "\x1c\r"


@dataclass
class Hl7Receiver:
    port: int = field(default_factory=services.free_port)
    answer: str = "AA"
    messages: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Oru(AbstractHandler):
            def reply(self) -> str:
                message = parse(self.incoming_message)
                message.validate()
                receiver.messages.append(message)
                ack = Message("ACK", version="2.5")
                ack.msh.msh_3, ack.msh.msh_9 = "RECEIVER", "ACK^R01^ACK"
                ack.msh.msh_10, ack.msh.msh_11 = "ACK" + message.msh.msh_10.value[:17], "P"
                ack.msa.msa_1, ack.msa.msa_2 = receiver.answer, message.msh.msh_10.value
                return START + ack.to_er7() + END

        self._server = MLLPServer("127.0.0.1", self.port, {"ORU^R01^ORU_R01": (Oru,)})
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class FhirReceiver:
    port: int = field(default_factory=services.free_port)
    bundles: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.bundles.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.end_headers()
                self.wfile.write(b'{"resourceType": "Bundle", "type": "transaction-response"}')

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
