"""The forwarding worker's Celery app:
`celery -A worker.forwarder worker -Q radbatch-forward,radbatch-fhir,radbatch-hl7 --pool threads`.

It knows only the tasks that send results out (`worker.tasks.forward`, `.fhir`, `.hl7`): no model is loaded,
no recovery sweep or heartbeat runs.
"""

from __future__ import annotations

from celery import Celery

from broker import make_celery
from settings import Settings


def __getattr__(name: str) -> Celery:
    """`app`, built from the environment on first use."""
    if name in ("app", "celery"):
        global app
        app = make_celery(
            Settings.from_env(),
            include=("worker.tasks.forward", "worker.tasks.fhir", "worker.tasks.hl7", "worker.tasks.retrieve"),
        )
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
