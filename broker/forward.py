"""Forwarding results as DICOM: how the worker hands the forwarding task (FORWARD_TASK) its image ids.

The task runs on a queue of its own, consumed by a separate worker process (`worker.forwarder`) that loads no
model: a slow or unreachable destination never holds up predictions. Its retries (with backoff) are Celery's.
"""

from __future__ import annotations

from celery import Celery

from broker.app import FHIR_QUEUE, FHIR_TASK, FORWARD_QUEUE, FORWARD_TASK, HL7_QUEUE, HL7_TASK

RETRY_POLICY = {"max_retries": 1, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}


def send_forwards(
    client: Celery, image_ids: list[int], dicom: bool = True, fhir: bool = False, hl7: bool = False
) -> None:
    """One task per image (one image per study: the study's report goes once its images are done) for each way out
    that is on: the DICOM SR, the FHIR Bundle, the HL7 ORU; each on its own queue."""
    chosen = [
        (task, queue)
        for on, task, queue in (
            (dicom, FORWARD_TASK, FORWARD_QUEUE),
            (fhir, FHIR_TASK, FHIR_QUEUE),
            (hl7, HL7_TASK, HL7_QUEUE),
        )
        if on
    ]
    for image_id in image_ids:
        for task, queue in chosen:
            client.send_task(task, args=[int(image_id)], queue=queue, retry=True, retry_policy=RETRY_POLICY)
