"""Fixtures for the web app tests: a temp SQLite database, a real Redis for the queue, CSRF left on.

Loaded from tests/conftest.py with `pytest_plugins = ["tests.web_fixtures"]`. Every name starts with `web_`
so it cannot clash with the backend fixtures.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image as PILImage
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from broker import predict_lists
from db.models import Base, User
from db.session import make_engine, make_session_factory, session_scope
from db.users import add_token, create_user
from settings import Settings
from web import create_app
from web.security import LIMITER_KEY_PREFIX

WEB_REDIS_DB = 14  # apart from db 0, where the end-to-end worker listens
PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


def png_bytes(size: tuple[int, int] = (16, 16), fmt: str = "PNG", value: int = 128) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("L", size, value).save(buffer, format=fmt)
    return buffer.getvalue()


def upload(name: str, data: bytes) -> tuple[io.BytesIO, str]:
    """One part of the repeated `files` field for the Flask test client."""
    return io.BytesIO(data), name


@pytest.fixture
def web_redis_url(request: pytest.FixtureRequest) -> str:
    """RADBATCH_TEST_WEB_REDIS_URL if set, else database 14 of the session's private Redis (tests/conftest.py)."""
    url = os.environ.get("RADBATCH_TEST_WEB_REDIS_URL")
    if url:
        return url
    return request.getfixturevalue("redis_url").rsplit("/", 1)[0] + f"/{WEB_REDIS_DB}"


@pytest.fixture
def web_settings(tmp_path: Path, web_redis_url: str) -> Settings:
    return Settings(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'web.db'}",
        redis_url=web_redis_url,
        secret_key="web-test-secret",
        batch_size=4,
        max_file_mb=1,
    )


@pytest.fixture
def web_redis(web_settings: Settings) -> Iterator[redis.Redis]:
    """The test Redis database, emptied of radbatch keys (queue, heartbeats, log-in counters) before and after."""
    client = redis.Redis.from_url(web_settings.effective_redis_url)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.fail(f"the web tests need Redis at {web_settings.effective_redis_url}: {error}")

    def clear() -> None:
        keys = [*predict_lists(), *client.scan_iter(match="radbatch:*"), *client.scan_iter(match="_kombu*")]
        keys += client.scan_iter(match=f"LIMITS:*{LIMITER_KEY_PREFIX}*")  # failed log-ins counted by Flask-Limiter
        if keys:
            client.delete(*keys)

    clear()
    yield client
    clear()
    client.close()


@pytest.fixture
def web_app(web_settings: Settings, web_redis: redis.Redis) -> Iterator[Flask]:
    engine = make_engine(web_settings.database_url)
    Base.metadata.create_all(engine)
    with session_scope(make_session_factory(engine)) as session:
        create_user(session, "alice", PASSWORD)
        create_user(session, "bob", PASSWORD)
        create_user(session, "root", PASSWORD, is_admin=True)
    engine.dispose()
    app = create_app({"SETTINGS": web_settings, "TESTING": True})
    yield app
    app.extensions["radbatch_engine"].dispose()


@pytest.fixture
def web_client(web_app: Flask) -> FlaskClient:
    return web_app.test_client()


@pytest.fixture
def web_db(web_app: Flask) -> sessionmaker[Session]:
    """A session factory on the app's database, for arranging and checking rows."""
    return web_app.extensions["radbatch_sessions"]


@pytest.fixture
def web_token(web_db: sessionmaker[Session]):
    """`web_token("alice")` -> an Authorization header dict with a fresh API token for that user."""

    def make(username: str) -> dict[str, str]:
        with session_scope(web_db) as session:
            user = session.query(User).filter_by(username=username).one()
            return {"Authorization": f"Bearer {add_token(session, user, name='test')}"}

    return make


class WebAuth:
    """Log in through the real form (CSRF token included) and fetch CSRF tokens for later posts."""

    def __init__(self, client: FlaskClient):
        self.client = client

    def csrf_token(self, path: str = "/login") -> str:
        match = _CSRF.search(self.client.get(path).get_data(as_text=True))
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    def login(self, username: str = "alice", password: str = PASSWORD):
        token = self.csrf_token()
        return self.client.post("/login", data={"username": username, "password": password, "csrf_token": token})

    def logout(self):
        return self.client.post("/logout", data={"csrf_token": self.csrf_token("/account/tokens")})


@pytest.fixture
def web_auth(web_client: FlaskClient) -> WebAuth:
    return WebAuth(web_client)


def queued_batches(client: redis.Redis) -> list[list[int]]:
    """The image-id batches of the predict tasks waiting in the predict queues, oldest first in each list (every
    user shard, every lane; the tests here queue one user's jobs in one lane)."""
    batches = []
    raws = [raw for name in predict_lists() for raw in reversed(client.lrange(name, 0, -1))]
    for raw in raws:  # kombu LPUSHes, workers pop from the right
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        batches.append(args[0])
    return batches


class QueryCounter:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, _conn, _cursor, statement, _parameters, _context, _executemany) -> None:
        self.statements.append(statement)


@pytest.fixture
def web_queries(web_app: Flask) -> Iterator[QueryCounter]:
    """Every SQL statement the app's engine runs during the test."""
    counter = QueryCounter()
    engine = web_app.extensions["radbatch_engine"]
    event.listen(engine, "before_cursor_execute", counter)
    yield counter
    event.remove(engine, "before_cursor_execute", counter)
