"""Who may use the listener, and how much of it: AE titles, exposure, and associations per peer and per sender.

- The called AE title must be the listener's own (RADBATCH_DICOM_AET); a wrong one is rejected permanently.
- Calling AE titles: RADBATCH_DICOM_ALLOWED_AETS plus the titles of RADBATCH_DICOM_AET_USERS. An empty list
  accepts any title, which is allowed only while the listener listens on a loopback address: a listener
  reachable from other machines refuses to start without one (`ListenerConfigError`).
- A connection that sends no association request within RADBATCH_DICOM_ARTIM_TIMEOUT seconds is closed, and an
  association silent for RADBATCH_DICOM_IDLE_TIMEOUT seconds is aborted.
- At most RADBATCH_DICOM_MAX_PER_PEER connections from one IP address (refused when accepted by TCP, before
  they can take a slot) and RADBATCH_DICOM_MAX_PER_AET associations from one calling AE title (rejected,
  transient, "local limit exceeded"), out of RADBATCH_DICOM_MAX_ASSOCIATIONS in all: one peer, or one sender
  holding associations open, cannot take the capacity the other senders need.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections import defaultdict

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.transport import ThreadedAssociationServer

from settings import Settings

logger = logging.getLogger(__name__)
REJECTED_TRANSIENT, SERVICE_USER, PRESENTATION = 0x02, 0x01, 0x03
LOCAL_LIMIT_EXCEEDED = 0x02


class ListenerConfigError(ValueError):
    """The listener's settings would let anyone in; a message for whoever deploys it."""


def aet_users(settings: Settings) -> dict[str, str]:
    """RADBATCH_DICOM_AET_USERS (`AET=user,...`) as calling AE title -> user name."""
    mapping = {}
    for entry in settings.dicom_aet_users:
        aet, equals, user = entry.partition("=")
        if not equals or not aet.strip() or not user.strip() or len(aet.strip()) > 16:
            raise ListenerConfigError(
                f"RADBATCH_DICOM_AET_USERS: {entry!r} is not AET=user (an AE title of at most 16 characters)"
            )
        mapping[aet.strip()] = user.strip()
    return mapping


def allowed_aets(settings: Settings) -> list[str]:
    return list(dict.fromkeys([*settings.dicom_allowed_aets, *aet_users(settings)]))


def check_exposure(settings: Settings) -> None:
    """Refuse a listener reachable from other machines that would accept any calling AE title."""
    if allowed_aets(settings):
        return
    try:
        loopback = ipaddress.ip_address(settings.dicom_host).is_loopback
    except ValueError:
        loopback = settings.dicom_host == "localhost"
    if not loopback:
        raise ListenerConfigError(
            f"RADBATCH_DICOM_HOST={settings.dicom_host} lets other machines in, but no calling AE title is listed: "
            "set RADBATCH_DICOM_ALLOWED_AETS (or RADBATCH_DICOM_AET_USERS) to the AE titles of the site's senders, "
            "or listen on 127.0.0.1"
        )


class Guard:
    """Counts each calling AE title's live associations and rejects those past the limit."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.allowed = set(allowed_aets(settings))
        self._lock = threading.Lock()
        self._by_aet: dict[str, set[Association]] = defaultdict(set)

    def on_requested(self, event: evt.Event) -> None:
        assoc = event.assoc
        calling = assoc.requestor.primitive.calling_ae_title.strip()
        if self.allowed and calling not in self.allowed:
            return  # pynetdicom rejects it: calling AE title not recognised
        with self._lock:
            held = self._by_aet[calling]
            if len(held) < self.settings.dicom_max_per_aet:
                held.add(assoc)
                return
        logger.warning("rejected %s from %s: %d associations already open", calling, _peer(assoc), len(held))
        assoc.acse.send_reject(REJECTED_TRANSIENT, PRESENTATION, LOCAL_LIMIT_EXCEEDED)
        assoc.is_rejected = True
        evt.trigger(assoc, evt.EVT_REJECTED, {})
        assoc.kill()

    def on_end(self, event: evt.Event) -> None:
        with self._lock:
            for held in self._by_aet.values():
                held.discard(event.assoc)

    def handlers(self) -> list[tuple]:
        return [(evt.EVT_REQUESTED, self.on_requested), (evt.EVT_CONN_CLOSE, self.on_end)]


def _peer(assoc: Association) -> str:
    try:
        return assoc.requestor.address
    except ValueError:
        return "?"


def _holds_a_slot(assoc: Association) -> bool:
    """Waiting for its request or established; not one that is only winding down."""
    ending = assoc.is_rejected or assoc.is_aborted or assoc.is_released
    return assoc.is_acceptor and assoc.is_alive() and not ending


class GuardedServer(ThreadedAssociationServer):
    """The association server, refusing a peer's connection past RADBATCH_DICOM_MAX_PER_PEER when it arrives."""

    max_per_peer = 8

    def verify_request(self, request, client_address) -> bool:
        peer = client_address[0]
        open_now = sum(1 for assoc in self.ae.active_associations if _holds_a_slot(assoc) and _peer(assoc) == peer)
        if open_now >= self.max_per_peer:
            logger.warning("refused a connection from %s: %d already open", peer, open_now)
            return False
        return True
