"""The `radbatch-hl7` queue: a finished study's results sent by `worker.outbound.forward_hl7`.

Consumed only by the forwarding worker (`worker.forwarder`), which loads no models.
"""

from __future__ import annotations

from celery import shared_task

from broker import HL7_TASK
from worker import process
from worker.outbound import forward_hl7
from worker.tasks.forward import OUTBOUND_RETRY


@shared_task(name=HL7_TASK, **OUTBOUND_RETRY)
def send_hl7(image_id: int, amended: bool = False) -> str:
    return forward_hl7(process.session_factory(), process.settings(), int(image_id), bool(amended))
