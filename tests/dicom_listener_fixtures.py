"""Fixtures for the in-process DICOM listener tests (test_dicom_listener*.py): its settings on a temp SQLite
database and a Redis database of the session's server, the user that owns its jobs, a running listener, and a
folder of DICOM files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from broker import make_celery
from db.session import make_engine, make_session_factory, session_scope
from db.setup import make_dirs, migrate
from db.users import create_user
from listener.scp import Listener
from settings import Settings
from tests import services
from tests.dicom_network_helpers import write_dicom_folder


@pytest.fixture
def listener_settings(tmp_path: Path, redis_url: str) -> Settings:
    settings = Settings(
        home=tmp_path / "home",
        database_url=f"sqlite:///{tmp_path / 'listener.db'}",
        redis_url=redis_url.rsplit("/", 1)[0] + "/13",
        secret_key="listener-test",
        batch_size=4,
        dicom_port=services.free_port(),
        dicom_user="pacs",
        dicom_allowed_aets=("MODALITY", "OTHER"),
    )
    make_dirs(settings)
    migrate(settings.database_url)
    return settings


@pytest.fixture
def sessions(listener_settings: Settings):
    engine = make_engine(listener_settings.database_url)
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        create_user(session, "pacs", "pacs password")
    yield factory
    engine.dispose()


@pytest.fixture
def running(listener_settings: Settings, sessions) -> Iterator[Listener]:
    listener = Listener(listener_settings, sessions, make_celery(listener_settings))
    listener.serve(block=False)
    yield listener
    listener.shutdown()


@pytest.fixture(scope="module")
def dicom_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return list(write_dicom_folder(tmp_path_factory.mktemp("dicom"), 6, studies=2).values())
