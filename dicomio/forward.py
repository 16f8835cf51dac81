"""Send a DICOM object to another AE by C-STORE (pynetdicom as SCU), for forwarding results to a PACS."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pynetdicom import AE

SUCCESS_STATUSES = {0x0000, 0xB000, 0xB006, 0xB007}  # success, and the warnings: the receiver kept it
_DESTINATION = re.compile(r"^(?P<aet>[^@\\]{1,16})@(?P<host>[^:@\s]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")


class ForwardError(RuntimeError):
    """The destination did not take the object (unreachable, association refused, or a failure status)."""


@dataclass(frozen=True)
class Destination:
    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def parse_destination(text: str) -> Destination:
    """`AET@host:port` (RADBATCH_DICOM_FORWARD); raises ValueError with the expected shape."""
    match = _DESTINATION.match(text.strip())
    if match is None or not 0 < int(match.group("port")) < 65536:
        raise ValueError(f"RADBATCH_DICOM_FORWARD must look like AET@host:port (e.g. PACS@10.0.0.5:104), got {text!r}")
    return Destination(match.group("aet").strip(), match.group("host").strip("[]"), int(match.group("port")))


def c_store(
    dataset: Dataset,
    destination: Destination,
    calling_aet: str,
    timeout_s: float = 10.0,
    move_originator: tuple[str, int] | None = None,
) -> int:
    """Send `dataset` (with its file meta: SOP class and transfer syntax) and return the success status;
    raises ForwardError otherwise. One attempt holds the caller for at most a few `timeout_s`. `move_originator`
    (AE title, message id) marks it as part of that C-MOVE (a retrieval handing instances to the listener)."""
    ae = AE(ae_title=calling_aet)
    ae.connection_timeout = ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        reason = "rejected the association" if assoc.is_rejected else "could not be reached or did not answer"
        raise ForwardError(f"{destination} {reason}")
    try:
        originator = dict(zip(("originator_aet", "originator_id"), move_originator)) if move_originator else {}
        status = assoc.send_c_store(dataset, **originator)
    finally:
        assoc.release()
    if "Status" not in status:
        raise ForwardError(f"{destination} did not answer the C-STORE (connection lost or timed out)")
    if status.Status not in SUCCESS_STATUSES:
        comment = f" ({status.ErrorComment})" if "ErrorComment" in status else ""
        raise ForwardError(f"{destination} answered status 0x{status.Status:04X}{comment}")
    return int(status.Status)
