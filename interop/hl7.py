"""A study's results as an HL7 v2.5 ORU^R01 message (built with hl7apy), sent over MLLP (python-hl7's client),
and the receiver's ACK checked.

  MSH  sending application RADBATCH, message type ORU^R01^ORU_R01, control id unique per send, version 2.5
  PID  the patient by identifier: the keyed pseudonym, or the site's PatientID when de-identification is off
  OBR  placer/filler order number = the accession (its pseudonym when de-identified), universal service id LOINC
       18748-4, the StudyInstanceUID as the filler field, result status P (preliminary) or C (a correction)
  OBX  per model: the study probability of disease (NM) and the label (CWE, SNOMED Abnormal/Normal); per validated
       finding: present/absent (CWE, SNOMED) and its probability (NM); the method and the disclaimer (TX)
       every OBX with observation result status P (or C)
"""

from __future__ import annotations

import socket
import uuid
from datetime import datetime, timezone
from typing import Any

import hl7
from hl7.client import MLLPClient
from hl7apy.core import Message
from hl7apy.parser import parse_message

from dicomio import codes as c

VERSION = "2.5"
ACCEPTED_ACKS = ("AA", "CA")


class _Client(MLLPClient):
    """python-hl7's MLLP client on a socket opened with a timeout (its own connects without one and leaves the
    socket open when the connection fails)."""

    def __init__(self, host: str, port: int, timeout_s: float):
        self.socket = socket.create_connection((host, port), timeout=timeout_s)
        self.encoding = "utf-8"


class Hl7Error(RuntimeError):
    """The receiver could not be reached, or did not accept the message (no ACK, or an error ACK)."""


def _escape(text: str) -> str:
    for char, escape in (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\")):
        text = text.replace(char, escape)
    return text


def _cwe(code: Any) -> str:
    return (
        f"{code.value}^{_escape(code.meaning)}^{'SCT' if code.scheme_designator == 'SCT' else code.scheme_designator}"
    )


def _obx(message: Message, index: int, kind: str, identifier: str, value: str, status: str) -> None:
    segment = message.oru_r01_patient_result.oru_r01_order_observation.add_group("ORU_R01_OBSERVATION").add_segment(
        "OBX"
    )
    segment.obx_1 = str(index)
    segment.obx_2 = kind
    segment.obx_3 = identifier
    segment.obx_5 = value
    segment.obx_11 = status


def oru_message(study: dict[str, Any], amended: bool = False, control_id: str | None = None) -> Message:
    """The ORU^R01 of a study summary (db/studies.summarise)."""
    status = "C" if amended else "P"
    now = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    message = Message("ORU_R01", version=VERSION)
    message.msh.msh_3 = "RADBATCH"
    message.msh.msh_7 = now
    message.msh.msh_9 = "ORU^R01^ORU_R01"
    message.msh.msh_10 = control_id or uuid.uuid4().hex[:20]
    message.msh.msh_11 = "P"
    message.msh.msh_12 = VERSION
    result = message.add_group("ORU_R01_PATIENT_RESULT")
    patient = result.add_group("ORU_R01_PATIENT").add_segment("PID")
    if study.get("patient_id"):
        patient.pid_3 = f"{_escape(study['patient_id'])}^^^SITE^MR"
        patient.pid_5 = _escape(study.get("patient_name") or "UNKNOWN")
    else:
        patient.pid_3 = f"{study.get('patient_pseudonym') or 'UNKNOWN'}^^^RADBATCH^PSEUDONYM"
        patient.pid_5 = "ANONYMOUS"  # de-identified: no name is kept
    order = result.add_group("ORU_R01_ORDER_OBSERVATION").add_segment("OBR")
    accession = _escape(study.get("accession_number") or "")
    order.obr_1 = "1"
    order.obr_2 = accession
    order.obr_3 = accession
    order.obr_4 = "18748-4^Diagnostic imaging study^LN"
    order.obr_7 = now
    order.obr_20 = study["study_instance_uid"]
    order.obr_25 = status
    index = 0
    for name, model in study.get("models", {}).items():
        index += 1
        _obx(
            message,
            index,
            "NM",
            f"PSTUDY-{name}^Study probability of disease ({name})^99RADBATCH",
            f"{model['probability']:.4f}",
            status,
        )
        index += 1
        _obx(
            message,
            index,
            "CWE",
            f"LABEL-{name}^Label ({name} {_escape(model['model_version'])})^99RADBATCH",
            _cwe(c.LABEL_CODES[model["label"]]),
            status,
        )
    for name, finding in study["findings"].items():
        index += 1
        present = c.PRESENT if finding["label"] == "present" else c.ABSENT
        _obx(message, index, "CWE", _cwe(c.finding_code(name)), _cwe(present), status)
        index += 1
        probability = c.finding_probability_code(name)
        _obx(
            message,
            index,
            "NM",
            f"{probability.value}^{probability.meaning}^99RADBATCH",
            f"{finding['probability']:.4f}",
            status,
        )
    method = study["result"].get("method") or ""
    index += 1
    _obx(
        message,
        index,
        "TX",
        "NOTE^Comment^99RADBATCH",
        _escape(f"{c.DISCLAIMER}. Study probability: {method}."),
        status,
    )
    return message


def send(message: Message, address: str, timeout_s: float = 10.0) -> str:
    """Send over MLLP to `host:port`; returns the ACK's code (AA/CA); raises Hl7Error otherwise."""
    host, _, port = address.rpartition(":")
    try:
        with _Client(host.strip("[]"), int(port), timeout_s) as client:
            raw = client.send_message(message.to_er7())
    except (OSError, ValueError) as error:
        raise Hl7Error(f"HL7 receiver {address} could not be reached or did not answer: {error}") from None
    try:
        ack = hl7.parse(raw.decode("utf-8", errors="replace"))
        code, control = str(ack.segment("MSA")[1]), str(ack.segment("MSA")[2])
    except (KeyError, IndexError, ValueError) as error:
        raise Hl7Error(f"HL7 receiver {address} answered something that is not an ACK ({error})") from None
    if code not in ACCEPTED_ACKS or control != str(message.msh.msh_10.value):
        raise Hl7Error(
            f"HL7 receiver {address} did not accept message {message.msh.msh_10.value}: MSA {code} {control}"
        )
    return code


def parse(er7: str) -> Message:
    """Parse an ER7 message (what a receiver does; the tests use it)."""
    return parse_message(er7.replace("\n", "\r"), find_groups=True)
