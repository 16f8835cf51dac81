"""The webhook queue (`radbatch-notify`): one delivery attempt of a finished job's webhook (`worker.notifications`)."""

from __future__ import annotations

from celery import shared_task

from broker import NOTIFY_TASK
from worker import process
from worker.notifications import deliver


@shared_task(name=NOTIFY_TASK, time_limit=60, ignore_result=True)
def notify_job(job_id: int) -> dict:
    """Attempt the finished job's webhook if it is due; a failure is retried by housekeeping after its backoff."""
    attempt = deliver(process.session_factory(), int(job_id))
    return {"sent": attempt.sent, "error": attempt.error, "retry_in": attempt.retry_in}
