"""Send image ids to the workers in batches: the one implementation, with one retry policy."""

from __future__ import annotations

from celery import Celery
from kombu.exceptions import OperationalError as KombuOperationalError

from broker.app import PREDICT_TASK, lane_priority, shard_queue

RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}


class BrokerUnavailable(RuntimeError):
    """The broker could not be reached after retries; `sent` ids (the first ones, in order) did go out."""

    def __init__(self, message: str, sent: int):
        super().__init__(message)
        self.sent = sent


def send_batches(client: Celery, image_ids: list[int], batch_size: int, priority: str, user_id: int) -> int:
    """Send `image_ids` as tasks of at most `batch_size` ids each, on the predict queue of their job's owner
    (`user_id`'s shard) with their lane's message priority (broker.LANES); returns how many ids were sent."""
    queue, level = shard_queue(user_id), lane_priority(priority)
    sent = 0
    try:
        for start in range(0, len(image_ids), batch_size):
            batch = image_ids[start : start + batch_size]
            client.send_task(
                PREDICT_TASK, args=[batch], queue=queue, priority=level, retry=True, retry_policy=RETRY_POLICY
            )
            sent += len(batch)
    except KombuOperationalError as error:
        raise BrokerUnavailable(f"the job queue is unreachable: {error}", sent) from error
    return sent
