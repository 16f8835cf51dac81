"""The `radbatch-fhir` queue: a finished study's results sent by `worker.outbound.forward_fhir`.

Consumed only by the forwarding worker (`worker.forwarder`), which loads no models.
"""

from __future__ import annotations

from celery import shared_task

from broker import FHIR_TASK
from worker import process
from worker.outbound import forward_fhir
from worker.tasks.forward import OUTBOUND_RETRY


@shared_task(name=FHIR_TASK, **OUTBOUND_RETRY)
def send_fhir(image_id: int, amended: bool = False) -> str:
    return forward_fhir(process.session_factory(), process.settings(), int(image_id), bool(amended))
