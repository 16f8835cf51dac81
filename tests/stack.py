"""The pieces every test stack is built from, written once: a fresh migrated database (SQLite or PostgreSQL), the
services' environment, a user with an API token, and the worker and web app started and stopped together.

`conftest.e2e_stack`, `dicom_network_fixtures.network_stack` and `test_web_bad_input.any_app` use them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db.session import make_engine, make_session_factory, session_scope
from db.setup import make_dirs, migrate
from db.users import add_token, create_user
from settings import Settings
from tests import services


def skip_or_fail(reason: str) -> None:
    """Skip the test, unless this is CI (CI=true), where a missing dependency is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: not skipping)")
    pytest.skip(reason)


@contextmanager
def migrated_database(kind: str, folder: Path) -> Iterator[str]:
    """A fresh, migrated database's URL: SQLite in `folder`, or a new uniquely named PostgreSQL database on
    127.0.0.1:5432, dropped afterwards (unreachable: skipped, or failed under CI=true)."""
    if kind == "sqlite":
        url = f"sqlite:///{folder / 'radbatch.db'}"
        migrate(url)
        yield url
        return
    problem = services.postgres_reachable()
    if problem:
        skip_or_fail(problem)
    url = services.create_postgres_database()
    try:
        migrate(url)
        yield url
    finally:
        services.drop_postgres_database(url)


def stack_env(home: Path, database_url: str, redis_url: str, secret_key: str, **extra: str) -> dict[str, str]:
    """The RADBATCH_* environment of a stack's services (batches of 16, worker metrics on a free port)."""
    values = {
        "RADBATCH_HOME": str(home),
        "RADBATCH_DATABASE_URL": database_url,
        "RADBATCH_REDIS_URL": redis_url,
        "RADBATCH_BATCH_SIZE": "16",
        "RADBATCH_SECRET_KEY": secret_key,
        "RADBATCH_WORKER_METRICS_PORT": str(services.free_port()),
    }
    return services.service_env(values | extra)


def user_with_token(sessions: sessionmaker[Session], username: str, password: str) -> tuple[str, int]:
    """A new user and an API token of theirs: (token, user id)."""
    with session_scope(sessions) as session:
        user = create_user(session, username, password)
        return add_token(session, user, name="tests"), user.id


@contextmanager
def worker_and_web(env: dict[str, str], logs: Path, redis_url: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """A prefork Celery worker and the web app on gunicorn: (the worker, the web app's base URL); both stopped
    afterwards, the web app first."""
    worker = services.start_worker(env, logs / "worker.log", redis_url)
    try:
        web, base_url = services.start_gunicorn(env, logs / "web.log")
        try:
            yield worker, base_url
        finally:
            services.stop_process(web)
    finally:
        services.stop_process(worker, timeout=60)


@contextmanager
def web_alone(home: Path, username: str, **extra: str) -> Iterator[tuple[dict[str, str], str, str]]:
    """The web app alone on gunicorn (no worker), with its own Redis and SQLite database under `home`, and a user
    with a token: (the services' environment, base URL, token). `extra` adds RADBATCH_* variables."""
    redis_process, redis_url = services.start_redis(home / "redis")
    try:
        with migrated_database("sqlite", home) as database_url:
            make_dirs(Settings(home=home, database_url=database_url, secret_key="alone"))
            engine = make_engine(database_url)
            token, _ = user_with_token(make_session_factory(engine), username, f"{username} password")
            engine.dispose()
            env = stack_env(home, database_url, redis_url, "alone", **extra)
            web, base_url = services.start_gunicorn(env, home / "web.log")
            try:
                yield env, base_url, token
            finally:
                services.stop_process(web)
    finally:
        services.stop_process(redis_process)
