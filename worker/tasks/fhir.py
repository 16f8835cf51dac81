"""The `radbatch-fhir` queue: a finished study's results sent by `worker.outbound.forward_fhir`.

Consumed only by the forwarding worker (`worker.forwarder`), which loads no models.
"""

from __future__ import annotations

from celery import shared_task
from sqlalchemy.exc import OperationalError

from broker import FHIR_TASK
from dicomio.forward import ForwardError
from worker import process
from worker.outbound import forward_fhir


@shared_task(
    name=FHIR_TASK,
    autoretry_for=(ForwardError, OperationalError),
    retry_backoff=5,  # 5, 10, 20 ... s
    retry_backoff_max=300,
    retry_jitter=False,
    max_retries=8,  # about 15 minutes in all, then the failure is logged
    time_limit=120,
    ignore_result=True,
)
def send_fhir(image_id: int, amended: bool = False) -> str:
    return forward_fhir(process.session_factory(), process.settings(), int(image_id), bool(amended))
