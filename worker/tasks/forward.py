"""The forwarding queue (`radbatch-forward`): an image's SR sent to RADBATCH_DICOM_FORWARD (`worker.forwarding`).

Consumed only by the forwarding worker (`worker.forwarder`), which loads no models: this module never imports
`worker.runtime`.
"""

from __future__ import annotations

from celery import shared_task
from sqlalchemy.exc import OperationalError

from broker import FORWARD_TASK
from dicomio.forward import ForwardError
from worker import process
from worker.forwarding import forward_image
from worker.heatmap_forwarding import forward_heatmaps

# Every outbound queue (DICOM, FHIR, HL7) retries a peer that is down or refuses, then logs the failure.
OUTBOUND_RETRY = {
    "autoretry_for": (ForwardError, OperationalError),
    "retry_backoff": 5,  # 5, 10, 20 ... s
    "retry_backoff_max": 300,
    "retry_jitter": False,
    "max_retries": 8,  # about 15 minutes in all, then the failure is logged
    "time_limit": 120,
    "ignore_result": True,
}


@shared_task(name=FORWARD_TASK, **OUTBOUND_RETRY)
def forward_sr(image_id: int) -> str:
    """The study's SR, then (RADBATCH_DICOM_FORWARD_HEATMAPS) its heat maps as Secondary Captures."""
    settings = process.settings()
    outcome = forward_image(process.session_factory(), settings, int(image_id))
    if outcome == "sent" and settings.dicom_forward_heatmaps:
        forward_heatmaps(process.session_factory(), settings, int(image_id))
    return outcome
