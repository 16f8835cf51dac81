"""The worker's Celery app, for the command line `celery -A worker.celery_app worker -Q <broker.WORKER_QUEUES>`.

Its configuration is the queue contract in `broker`; importing this module never imports TensorFlow.
"""

from __future__ import annotations

from celery import Celery

from broker import make_celery
from settings import Settings


def __getattr__(name: str) -> Celery:
    """`app`, built from the environment on first use."""
    if name in ("app", "celery"):
        global app
        app = make_celery(Settings.from_env())
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
