"""The queue contract between whoever sends work (web, ingest, the recovery sweep) and the worker.

Task name, queue, the Celery client, `send_batches` and the workers' readiness heartbeats. Never imports
TensorFlow, `worker` or `web`; both of them import this.
"""

from broker.app import (
    FORWARD_QUEUE,
    FORWARD_TASK,
    LANES,
    NOTIFY_QUEUE,
    NOTIFY_TASK,
    PREDICT_TASK,
    QUEUE,
    WORKER_QUEUES,
    make_celery,
)
from broker.forward import send_forwards
from broker.notify import send_notifications
from broker.sending import BrokerUnavailable, send_batches

__all__ = [
    "FORWARD_QUEUE",
    "FORWARD_TASK",
    "NOTIFY_QUEUE",
    "NOTIFY_TASK",
    "PREDICT_TASK",
    "LANES",
    "QUEUE",
    "WORKER_QUEUES",
    "BrokerUnavailable",
    "make_celery",
    "send_batches",
    "send_forwards",
    "send_notifications",
]
