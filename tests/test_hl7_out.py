"""HL7 v2 out: the ORU^R01 of a study validates and parses (hl7apy), goes over MLLP to a receiver that parses it
and ACKs; an error ACK and an unreachable receiver raise (the task retries them with backoff)."""

from __future__ import annotations

import pytest

from dicomio.forward import ForwardError
from interop.hl7 import Hl7Error, oru_message, send
from tests import services
from tests.outbound_receivers import Hl7Receiver
from worker.tasks.fhir import send_fhir
from worker.tasks.hl7 import send_hl7

STUDY = {
    "study_instance_uid": "1.2.826.0.1.3680043.8.498.1",
    "accession_number": "RB0123456789ABCD",
    "patient_pseudonym": "0f" * 16,
    "patient_id": None,
    "models": {
        "cnn": {"probability": 0.71, "threshold": 0.5, "label": "disease", "model_version": "cnn-1"},
        "ensemble": {"probability": 0.62, "threshold": 0.5, "label": "disease", "model_version": "ens-1"},
    },
    "findings": {"Effusion": {"probability": 0.7, "threshold": 0.4, "label": "present"}},
    "result": {"method": "the maximum over frontal images"},
}


@pytest.fixture
def receiver():
    running = Hl7Receiver()
    yield running
    running.stop()


def observations(message) -> list[tuple[str, str, str, str]]:
    group = message.oru_r01_patient_result.oru_r01_order_observation
    return [
        (o.obx.obx_2.value, o.obx.obx_3.value, o.obx.obx_5.value, o.obx.obx_11.value) for o in group.oru_r01_observation
    ]


def test_the_oru_reaches_a_receiver_that_parses_it_and_acks(receiver: Hl7Receiver) -> None:
    message = oru_message(STUDY)
    assert send(message, receiver.address) == "AA"
    (received,) = receiver.messages
    assert received.msh.msh_9.value == "ORU^R01^ORU_R01" and received.msh.msh_10.value == message.msh.msh_10.value
    assert received.oru_r01_patient_result.oru_r01_patient.pid.pid_3.value.startswith(STUDY["patient_pseudonym"])
    order = received.oru_r01_patient_result.oru_r01_order_observation.obr
    assert (order.obr_3.value, order.obr_20.value, order.obr_25.value) == (
        STUDY["accession_number"],
        STUDY["study_instance_uid"],
        "P",
    )
    found = observations(received)
    assert ("NM", "PSTUDY-ensemble^Study probability of disease (ensemble)^99RADBATCH", "0.6200", "P") in found
    assert ("CWE", "60046008^Pleural effusion^SCT", "52101004^Present^SCT", "P") in found
    assert found[-1][0] == "TX" and found[-1][2].startswith("Research use only, not for diagnosis")


def test_a_correction_is_status_c(receiver: Hl7Receiver) -> None:
    send(oru_message(STUDY, amended=True), receiver.address)
    (received,) = receiver.messages
    assert received.oru_r01_patient_result.oru_r01_order_observation.obr.obr_25.value == "C"
    assert {status for *_, status in observations(received)} == {"C"}


def test_an_error_ack_and_an_unreachable_receiver_raise(receiver: Hl7Receiver) -> None:
    receiver.answer = "AE"
    with pytest.raises(Hl7Error, match="did not accept"):
        send(oru_message(STUDY), receiver.address)
    with pytest.raises(Hl7Error, match="could not be reached"):
        send(oru_message(STUDY), f"127.0.0.1:{services.free_port()}", timeout_s=2)


def test_the_outbound_tasks_retry_with_backoff_on_their_own_queues() -> None:
    for task in (send_fhir, send_hl7):
        assert ForwardError in task.autoretry_for and task.max_retries >= 5 and task.retry_backoff
