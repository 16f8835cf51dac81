"""This process's settings and database session factory, made on first use (an engine must not cross a fork).

Every worker service uses them: the prediction worker (`worker.runtime`), webhook deliveries and the forwarding
worker, which loads no models.
"""

from __future__ import annotations

import os
from functools import partial

from celery import current_app
from sqlalchemy.orm import Session, sessionmaker

from broker import send_notifications
from db.session import make_engine, make_session_factory
from db.webhooks import on_jobs_finished
from settings import Settings

_settings: Settings | None = None
_factory: tuple[int, sessionmaker[Session]] | None = None


def settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def session_factory() -> sessionmaker[Session]:
    """A session factory owned by this process (an engine must not cross a fork)."""
    global _factory
    if _factory is None or _factory[0] != os.getpid():
        factory = make_session_factory(make_engine(settings().database_url))
        on_jobs_finished(factory, partial(send_notifications, current_app))  # webhooks of jobs a batch finished
        _factory = (os.getpid(), factory)
    return _factory[1]
