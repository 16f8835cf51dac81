"""The Celery application shared by senders and the worker; cheap to build, connects on first use."""

from __future__ import annotations

from celery import Celery

from settings import Settings

PREDICT_TASK = "radbatch.predict_batch"
QUEUE = "radbatch"
NOTIFY_TASK = "radbatch.notify_job"  # webhook deliveries, on a queue of their own
NOTIFY_QUEUE = "radbatch-notify"
FORWARD_TASK = "radbatch.forward_sr"  # an image's SR sent to RADBATCH_DICOM_FORWARD, by its own worker
FORWARD_QUEUE = "radbatch-forward"
FHIR_TASK = "radbatch.forward_fhir"  # a finished study's FHIR Bundle POSTed to RADBATCH_FHIR_FORWARD
FHIR_QUEUE = "radbatch-fhir"
HL7_TASK = "radbatch.forward_hl7"  # a finished study's ORU^R01 sent to RADBATCH_HL7_FORWARD over MLLP
HL7_QUEUE = "radbatch-hl7"
RETRIEVE_TASK = "radbatch.retrieve"  # studies pulled from a PACS into a job (C-MOVE / WADO-RS)
RETRIEVE_QUEUE = "radbatch-retrieve"
OUTBOUND_QUEUES = (FORWARD_QUEUE, FHIR_QUEUE, HL7_QUEUE, RETRIEVE_QUEUE)  # all consumed by the forwarding worker
# Priority lanes: one queue each. Workers name them in this order (-Q) and, with the "priority" queue order,
# always take from the first non-empty one: urgent, then normal, then bulk.
LANES = {"urgent": "radbatch-urgent", "normal": QUEUE, "bulk": "radbatch-bulk"}
WORKER_QUEUES = ",".join([*LANES.values(), NOTIFY_QUEUE])
# A host whose network goes away and comes back keeps half-open TCP connections that nothing closes: without
# timeouts a consumer waits on its BRPOP (and a sender on its publish) until TCP's own retransmission backs off and
# succeeds, up to two minutes after the link is back. With these, kombu drops a BRPOP overdue by the health check
# interval and a command that gets no answer in socket_timeout, and reconnects: back to work within ~11 s.
BROKER_LINK_CHECKS = {
    "socket_connect_timeout": 5,
    "socket_timeout": 15,  # longer than any single Redis command takes; BRPOP is read by the event loop, not by it
    "socket_keepalive": True,
    "health_check_interval": 5,
}
WORKER_TASK_MODULES = ("worker.tasks.predict", "worker.tasks.notify")  # the forwarder: worker.tasks.forward


def make_celery(settings: Settings, include: tuple[str, ...] = WORKER_TASK_MODULES) -> Celery:
    """A Celery app for `settings`. The worker's tasks are found by name (`include`), never imported here."""
    app = Celery("radbatch", broker=settings.effective_redis_url, include=list(include))
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,  # results live in SQL, not in Celery
        task_acks_late=True,  # ack after the batch is stored: a crash mid-batch means redelivery
        task_reject_on_worker_lost=True,  # a killed child requeues its message instead of losing it
        worker_prefetch_multiplier=1,  # one batch at a time per child: fair with slow batches
        worker_max_memory_per_child=settings.worker_max_memory_mb * 1024,  # KiB; replaced after the batch
        task_default_queue=QUEUE,
        task_routes={
            PREDICT_TASK: {"queue": QUEUE},
            NOTIFY_TASK: {"queue": NOTIFY_QUEUE},
            FORWARD_TASK: {"queue": FORWARD_QUEUE},
            FHIR_TASK: {"queue": FHIR_QUEUE},
            HL7_TASK: {"queue": HL7_QUEUE},
            RETRIEVE_TASK: {"queue": RETRIEVE_QUEUE},
        },
        task_soft_time_limit=settings.task_soft_time_limit,  # the task retries its images one by one
        task_time_limit=settings.task_time_limit,  # the child is killed; the sweep and attempt cap take over
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "queue_order_strategy": "priority",  # the first non-empty queue of -Q first: urgent, normal, bulk
            **BROKER_LINK_CHECKS,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # keep trying while Redis restarts
        # When Redis restarts, a running batch finishes and stores its results (storing is idempotent) instead of
        # being killed; its message, if it can no longer be acknowledged, is left to the recovery sweep.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_proc_alive_timeout=180,  # a child loads TensorFlow and the models before it says it is up
        worker_hijack_root_logger=False,
        timezone="UTC",
        enable_utc=True,
    )
    return app
