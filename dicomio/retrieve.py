"""Pulling studies from a PACS (query/retrieve): C-FIND at study level (Study Root), then C-MOVE to radbatch's
own AE (the listener stores what arrives), or QIDO-RS/WADO-RS when the source has a DICOMweb URL. pynetdicom and
dicomweb-client do the protocols; this module only names the steps, so that every error says which one failed.

RADBATCH_DICOM_SOURCES names the sources, `;`-separated: `NAME=AET@host:port[,dicomweb=URL]`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelMove

from dicomio.forward import Destination, parse_destination

QUERY_KEYS = ("AccessionNumber", "StudyDate", "Modality", "PatientID", "StudyInstanceUID")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
PENDING = (0xFF00, 0xFF01)


class RetrieveError(RuntimeError):
    """A step of a retrieval failed; `step` says which (c-find, c-move, qido-rs, wado-rs), the message why."""

    def __init__(self, step: str, message: str):
        super().__init__(f"{step}: {message}")
        self.step = step


@dataclass(frozen=True)
class Source:
    name: str
    destination: Destination
    dicomweb: str | None = None


def parse_sources(text: str) -> dict[str, Source]:
    """RADBATCH_DICOM_SOURCES; raises ValueError with the expected shape."""
    sources = {}
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        name, _, rest = entry.partition("=")
        address, *options = [part.strip() for part in rest.split(",")]
        extra = dict(option.partition("=")[::2] for option in options)
        if not _NAME.match(name.strip()) or set(extra) - {"dicomweb"}:
            raise ValueError(
                f"RADBATCH_DICOM_SOURCES entries look like NAME=AET@host:port[,dicomweb=URL]; got {entry!r}"
            )
        sources[name.strip()] = Source(name.strip(), parse_destination(address), extra.get("dicomweb") or None)
    return sources


def _association(source: Source, calling_aet: str, context: str, timeout_s: float):
    ae = AE(ae_title=calling_aet)
    ae.connection_timeout = ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.add_requested_context(context)
    return ae.associate(source.destination.host, source.destination.port, ae_title=source.destination.ae_title)


def _refused(step: str, source: Source, assoc) -> RetrieveError:
    if assoc.is_rejected:
        return RetrieveError(step, f"{source.destination} rejected the association")
    return RetrieveError(step, f"{source.destination} could not be reached or did not answer")


def find_studies(source: Source, query: dict[str, str], calling_aet: str, timeout_s: float = 30) -> list[str]:
    """The StudyInstanceUIDs matching `query` (QUERY_KEYS; StudyDate as YYYYMMDD or YYYYMMDD-YYYYMMDD)."""
    if source.dicomweb:
        return _qido_studies(source, query)
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    for key in QUERY_KEYS:
        setattr(identifier, key, query.get(key, ""))
    if "Modality" in query:  # a study-level key: the modalities in the study
        del identifier.Modality
        identifier.ModalitiesInStudy = query["Modality"]
    assoc = _association(source, calling_aet, StudyRootQueryRetrieveInformationModelFind, timeout_s)
    if not assoc.is_established:
        raise _refused("c-find", source, assoc)
    found: list[str] = []
    try:
        for status, match in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind):
            if "Status" not in status:
                raise RetrieveError("c-find", f"{source.destination} did not answer the query (connection lost)")
            if status.Status in PENDING and match is not None and match.get("StudyInstanceUID"):
                found.append(str(match.StudyInstanceUID))
            elif status.Status not in PENDING and status.Status != 0x0000:
                raise RetrieveError("c-find", f"{source.destination} refused the query (status 0x{status.Status:04X})")
    finally:
        assoc.release()
    return list(dict.fromkeys(found))


def _qido_studies(source: Source, query: dict[str, str]) -> list[str]:
    filters = {key: value for key, value in query.items() if key != "Modality"}
    if "Modality" in query:
        filters["ModalitiesInStudy"] = query["Modality"]
    try:
        found = DICOMwebClient(url=source.dicomweb).search_for_studies(search_filters=filters)
    except Exception as error:  # dicomweb-client raises requests' and its own errors
        raise RetrieveError("qido-rs", f"{source.dicomweb}: {type(error).__name__}: {error}"[:300]) from None
    return list(dict.fromkeys(item["0020000D"]["Value"][0] for item in found if item.get("0020000D", {}).get("Value")))


def move_study(source: Source, study_uid: str, calling_aet: str, message_id: int, timeout_s: float = 300) -> int:
    """C-MOVE one study to `calling_aet` (radbatch's own AE, which the source must know); the number of instances
    the source says it sent. `message_id` lets the listener file what arrives under the right job."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_uid
    assoc = _association(source, calling_aet, StudyRootQueryRetrieveInformationModelMove, timeout_s)
    if not assoc.is_established:
        raise _refused("c-move", source, assoc)
    completed, last = 0, None
    try:
        for status, _ in assoc.send_c_move(
            identifier, calling_aet, StudyRootQueryRetrieveInformationModelMove, msg_id=message_id
        ):
            if "Status" not in status:
                raise RetrieveError("c-move", f"{source.destination} did not answer the move (connection lost)")
            last = status
            completed = int(status.get("NumberOfCompletedSuboperations", completed) or 0)
    finally:
        assoc.release()
    if last is None or last.Status not in (0x0000, 0xB000):
        code = f"0x{last.Status:04X}" if last is not None else "none"
        raise RetrieveError("c-move", f"{source.destination} refused to move study {study_uid} (status {code})")
    return completed


def wado_instances(source: Source, study_uid: str) -> Iterator[Dataset]:
    """Every instance of a study by WADO-RS."""
    try:
        yield from DICOMwebClient(url=source.dicomweb).iter_study(study_uid)
    except Exception as error:
        raise RetrieveError("wado-rs", f"{source.dicomweb}: {type(error).__name__}: {error}"[:300]) from None
