"""The HTTP transport of webhook deliveries: every connection checked against the destination policy.

Each new connection resolves the host itself and connects only to addresses `broker.destinations` allows, so
DNS that changes between job creation and delivery (or between two attempts) cannot point a webhook at an
internal service. Redirects are never followed, proxies from the environment are ignored (a proxy would
resolve the name itself), and the text recorded for a failed attempt names the kind of failure only: it
never quotes what the peer sent.
"""

from __future__ import annotations

import socket

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection

from broker.destinations import BlockedDestination, DestinationPolicy


class BlockedConnection(NewConnectionError):
    """The connection was refused by the destination policy, before any packet was sent."""


class _GuardedConnection(HTTPConnection):
    policy = DestinationPolicy()

    def _new_conn(self) -> socket.socket:
        try:
            addresses = self.policy.resolve(self._dns_host, self.port)
        except BlockedDestination as error:
            raise BlockedConnection(self, str(error)) from None
        except socket.gaierror as error:
            raise NameResolutionError(self.host, self, error) from None
        failure: OSError | None = None
        for address in addresses:
            try:
                return connection.create_connection(
                    (address, self.port), self.timeout, self.source_address, self.socket_options
                )
            except TimeoutError as error:
                raise ConnectTimeoutError(self, f"connection to {self.host} timed out") from error
            except OSError as error:
                failure = error
        raise NewConnectionError(self, f"could not connect to {self.host}") from failure


class _GuardedHTTPSConnection(_GuardedConnection, HTTPSConnection):
    pass


def guarded_session(policy: DestinationPolicy) -> requests.Session:
    """A requests session whose connections go only where `policy` allows, ignoring proxy variables."""
    plain = type("PolicyConnection", (_GuardedConnection,), {"policy": policy})
    tls = type("PolicyHTTPSConnection", (_GuardedHTTPSConnection,), {"policy": policy})
    pools = {
        "http": type("PolicyPool", (HTTPConnectionPool,), {"ConnectionCls": plain}),
        "https": type("PolicyHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": tls}),
    }

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

    session = requests.Session()
    session.trust_env = False
    session.mount("http://", Adapter(max_retries=0))
    session.mount("https://", Adapter(max_retries=0))
    return session


def blocked(error: BaseException) -> bool:
    """Whether the policy refused the connection behind a requests exception."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (BlockedConnection, BlockedDestination)):
            return True
        reason = getattr(seen, "reason", None)
        nested = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        seen = reason if isinstance(reason, BaseException) else nested or seen.__cause__
    return False


def failure_text(error: requests.RequestException) -> str:
    """What failed, in words of our own: never the peer's bytes, never the resolved address."""
    if blocked(error):
        return "destination not allowed: not a public address (RADBATCH_WEBHOOK_ALLOW lists a site's exceptions)"
    if isinstance(error, requests.Timeout):
        return "no answer in time"
    if isinstance(error, requests.exceptions.SSLError):
        return "TLS handshake failed (certificate or protocol)"
    if isinstance(error, requests.ConnectionError):
        return "could not connect, or the connection broke before an HTTP answer"
    return "the destination did not answer with valid HTTP"
