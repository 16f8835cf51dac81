"""The `radbatch-retrieve` queue: studies pulled from a PACS into a job (`worker.retrieval`).

Consumed only by the forwarding worker (`worker.forwarder`), which loads no models. Not retried: a step that
fails is recorded on the retrieval, and the site asks again.
"""

from __future__ import annotations

from celery import shared_task

from broker import RETRIEVE_TASK
from worker import process
from worker.retrieval import run_retrieval


@shared_task(name=RETRIEVE_TASK, time_limit=6 * 3600, soft_time_limit=6 * 3600 - 60, ignore_result=True)
def retrieve(retrieval_id: int) -> str:
    return run_retrieval(process.session_factory(), process.settings(), int(retrieval_id))
