"""Forwarding results as DICOM: how the worker hands the forwarding task (FORWARD_TASK) its image ids.

The task runs on a queue of its own, consumed by a separate worker process (`worker.forwarder`) that loads no
model: a slow or unreachable destination never holds up predictions. Its retries (with backoff) are Celery's.
"""

from __future__ import annotations

from celery import Celery

from broker.app import FORWARD_QUEUE, FORWARD_TASK

RETRY_POLICY = {"max_retries": 1, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}


def send_forwards(client: Celery, image_ids: list[int]) -> None:
    """One forwarding task per image."""
    for image_id in image_ids:
        client.send_task(FORWARD_TASK, args=[int(image_id)], queue=FORWARD_QUEUE, retry=True, retry_policy=RETRY_POLICY)
