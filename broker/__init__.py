"""The queue contract between whoever sends work (web, ingest, the recovery sweep) and the worker.

Task name, queues and lanes, the Celery client, `send_batches` and the workers' readiness heartbeats. Never imports
TensorFlow, `worker` or `web`; both of them import this.
"""

from broker.app import (
    FHIR_QUEUE,
    FHIR_TASK,
    FORWARD_QUEUE,
    FORWARD_TASK,
    HL7_QUEUE,
    HL7_TASK,
    LANES,
    NOTIFY_QUEUE,
    NOTIFY_TASK,
    OUTBOUND_QUEUES,
    PREDICT_QUEUES,
    PREDICT_TASK,
    QUEUE,
    RETRIEVE_QUEUE,
    RETRIEVE_TASK,
    USER_SHARDS,
    WORKER_QUEUES,
    make_celery,
    predict_lists,
    shard_queue,
)
from broker.forward import send_forwards
from broker.notify import send_notifications
from broker.sending import BrokerUnavailable, send_batches

__all__ = [
    "FHIR_QUEUE",
    "FHIR_TASK",
    "HL7_QUEUE",
    "HL7_TASK",
    "OUTBOUND_QUEUES",
    "RETRIEVE_QUEUE",
    "RETRIEVE_TASK",
    "FORWARD_QUEUE",
    "FORWARD_TASK",
    "NOTIFY_QUEUE",
    "NOTIFY_TASK",
    "PREDICT_QUEUES",
    "PREDICT_TASK",
    "LANES",
    "QUEUE",
    "USER_SHARDS",
    "WORKER_QUEUES",
    "BrokerUnavailable",
    "make_celery",
    "predict_lists",
    "send_batches",
    "send_forwards",
    "send_notifications",
    "shard_queue",
]
