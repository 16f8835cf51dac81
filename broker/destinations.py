"""Where a job's webhook may be sent: public addresses only, unless RADBATCH_WEBHOOK_ALLOW names an exception.

A webhook URL is chosen by any user, and the worker that sends it sits inside the site's network: without this
check it would reach Redis, the DICOM listener, cloud metadata services and anything else listening on a private
address. Loopback, link-local, private (RFC 1918, unique local), shared (RFC 6598), multicast, unspecified and
reserved addresses are refused; each name is checked after DNS resolution, by the connection itself
(`worker.webhook_transport`), so a name that resolves elsewhere at delivery time is refused too.
RADBATCH_WEBHOOK_ALLOW lists a site's own exceptions: networks in CIDR notation (`10.20.0.0/16`, `::1/128`) or
host names (`hooks.intranet.example`), comma-separated.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


class BlockedDestination(ValueError):
    """The destination is not a public address and RADBATCH_WEBHOOK_ALLOW does not list it."""


def is_public(address: IPAddress) -> bool:
    """True for a globally routable unicast address (IPv4-mapped IPv6 addresses are judged as IPv4)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not (
        address.is_multicast
        or address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_unspecified
        or address.is_reserved
    )


@dataclass(frozen=True)
class DestinationPolicy:
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def from_setting(cls, entries: Iterable[str]) -> DestinationPolicy:
        """RADBATCH_WEBHOOK_ALLOW: each entry a network (CIDR or single address) or a host name."""
        networks, hosts = [], set()
        for entry in (raw.strip() for raw in entries):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(tuple(networks), frozenset(hosts))

    def allows_address(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return is_public(address) or any(address in network for network in self.networks)

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def check_literal(self, host: str) -> None:
        """Refuse, without DNS, a host that is an address or a local name the policy does not allow."""
        if self.allows_host(host):
            return
        name = host.lower().rstrip(".")
        if name in LOCAL_NAMES or name.endswith(".localhost"):
            raise BlockedDestination(f"{host} is this machine; webhooks go to public addresses only")
        try:
            address = ipaddress.ip_address(host.strip("[]").split("%")[0])
        except ValueError:
            return  # a name: resolved and checked when connecting
        if not self.allows_address(address):
            raise BlockedDestination(
                f"{host} is not a public address (loopback, private, link-local, multicast or unspecified); "
                "webhooks go to public addresses unless RADBATCH_WEBHOOK_ALLOW lists it"
            )

    def resolve(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for `host`; raises BlockedDestination if any of them is not allowed
        (a name with one public and one private address is refused: either could be used), socket.gaierror
        if the name does not resolve."""
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        if self.allows_host(host):
            return addresses
        for raw in addresses:
            if not self.allows_address(ipaddress.ip_address(raw.split("%")[0])):
                raise BlockedDestination(
                    f"{host} resolves to an address that is not public; webhooks go to public addresses unless "
                    "RADBATCH_WEBHOOK_ALLOW lists it"
                )
        return addresses
