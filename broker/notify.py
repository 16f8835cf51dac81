"""Job notifications: how senders hand the webhook delivery task (broker.app.NOTIFY_TASK) its job ids.

Deliveries have their own queue, apart from the batches; the worker consumes both, and one attempt holds a worker
process for at most its HTTP timeouts. Retries are scheduled in the database, not as delayed messages, and the
worker's housekeeping sends them once due; so is anything whose message was lost.
"""

from __future__ import annotations

from celery import Celery

from broker.app import NOTIFY_QUEUE, NOTIFY_TASK

RETRY_POLICY = {"max_retries": 1, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}


def send_notifications(client: Celery, job_ids: list[int]) -> None:
    """One delivery task per finished job."""
    for job_id in job_ids:
        client.send_task(NOTIFY_TASK, args=[int(job_id)], queue=NOTIFY_QUEUE, retry=True, retry_policy=RETRY_POLICY)
