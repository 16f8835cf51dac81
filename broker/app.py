"""The Celery application shared by senders and the worker; cheap to build, connects on first use."""

from __future__ import annotations

from celery import Celery
from kombu.transport.redis import Channel as RedisChannel

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
# Fair lanes, with Celery's own routing and kombu's Redis transport (no scheduler of ours):
# - a job's lane is the *priority* of its messages. On Redis, kombu keeps one list per queue and priority step
#   (`<queue>\x06\x16<step>`, the plain queue name for 0) and its BRPOP names every queue's priority-0 list before
#   any priority-3 list, and so on: a worker always takes urgent (0) before normal (3) before bulk (6).
# - fairness between users comes from USER_SHARDS predict queues: a job's batches go to its owner's shard
#   (user id % USER_SHARDS), and workers consume every shard with the "round_robin" queue order, which moves the
#   queue it just took from to the back. Within a lane, users on different shards take turns batch by batch.
# Every sender and worker must agree on USER_SHARDS, so it is a constant, not a setting.
LANES = {"urgent": 0, "normal": 3, "bulk": 6}  # lane -> message priority; lower is served first on Redis
PRIORITY_STEPS = sorted(LANES.values())  # kombu's Redis priority lists: one per lane
USER_SHARDS = 8
PREDICT_QUEUES = tuple(f"radbatch-u{shard}" for shard in range(USER_SHARDS))
QUEUE = PREDICT_QUEUES[0]  # where a predict task sent without a queue goes (normal lane): tests and hand-sent tasks
PRIORITY_SEPARATOR = RedisChannel.sep  # "\x06\x16"
WORKER_QUEUES = ",".join([*PREDICT_QUEUES, NOTIFY_QUEUE])  # every prediction worker's -Q


def shard_queue(user_id: int) -> str:
    """The predict queue of a job owned by `user_id`."""
    return PREDICT_QUEUES[int(user_id) % USER_SHARDS]


def lane_priority(lane: str) -> int:
    """The message priority of a lane (an unknown lane is normal)."""
    return LANES.get(lane, LANES["normal"])


def redis_list(queue: str, priority: int) -> str:
    """The Redis list kombu keeps `queue`'s messages of `priority` in."""
    return f"{queue}{PRIORITY_SEPARATOR}{priority}" if priority else queue


def predict_lists() -> list[str]:
    """Every Redis list a predict message can wait in, in the order a worker's BRPOP reads them (before rotation)."""
    return [redis_list(queue, priority) for priority in PRIORITY_STEPS for queue in PREDICT_QUEUES]


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
            PREDICT_TASK: {"queue": QUEUE, "priority": LANES["normal"]},  # send_batches names the shard and lane
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
            "priority_steps": PRIORITY_STEPS,  # urgent, normal, bulk: each lane's own list in every queue
            "queue_order_strategy": "round_robin",  # the shard just served goes to the back: users take turns
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
