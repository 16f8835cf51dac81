"""Fault (5) of issue 10: the upload disk fills up during an upload. The web app (gunicorn, over HTTP) answers
507 with a message, keeps no partial file and no row of that request, loses nothing of earlier chunks, and
works again as soon as there is space. The upload folder is a 2 MB tmpfs mounted for the test (we are root)."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from db.models import Image
from db.session import make_engine, make_session_factory, session_scope
from db.setup import make_dirs, migrate
from db.users import add_token, create_user
from settings import Settings
from tests import services
from tests.conftest import skip_or_fail

pytestmark = pytest.mark.e2e
FILE_BYTES = 200 * 1024


def png_like(index: int) -> bytes:
    """A file the web app stores as a PNG (it checks the signature; decoding is the worker's business)."""
    return b"\x89PNG\r\n\x1a\n" + bytes([index]) * (FILE_BYTES - 8)


def files(n: int, first: int = 0) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (f"scan/{i}.png", png_like(i), "image/png")) for i in range(first, first + n)]


@pytest.fixture
def small_upload_disk(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    uploads = home / "uploads"
    uploads.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "radbatch-test-uploads", str(uploads)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        skip_or_fail(f"cannot mount a small tmpfs for the upload folder: {mounted.stderr.strip()}")
    try:
        yield home
    finally:
        subprocess.run(["umount", "--lazy", str(uploads)], check=False)


@pytest.fixture
def web_on_small_disk(small_upload_disk: Path, redis_url: str) -> Iterator[tuple[requests.Session, str, Settings]]:
    home = small_upload_disk
    settings = Settings(home=home, redis_url=redis_url.rsplit("/", 1)[0] + "/12", secret_key="disk-full")
    make_dirs(settings)
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    with session_scope(make_session_factory(engine)) as session:
        token = add_token(session, create_user(session, "ward", "pw"))
    env = services.service_env(
        {
            "RADBATCH_HOME": str(home),
            "RADBATCH_REDIS_URL": settings.effective_redis_url,
            "RADBATCH_SECRET_KEY": settings.secret_key,
        }
    )
    web, base_url = services.start_gunicorn(env, home / "logs" / "web.log")
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token}"
    try:
        yield http, f"{base_url}/api/v1", settings
    finally:
        services.stop_process(web)
        engine.dispose()


def fill_disk(folder: Path, leave_bytes: int) -> Path:
    """A ballast file that leaves `leave_bytes` free on the disk of `folder`."""
    usage = os.statvfs(folder)
    ballast = folder / "ballast"
    ballast.write_bytes(b"\0" * (usage.f_bavail * usage.f_frsize - leave_bytes))
    return ballast


def image_rows(settings: Settings) -> int:
    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            return session.scalar(select(func.count()).select_from(Image))
    finally:
        engine.dispose()


def test_a_full_disk_is_refused_cleanly_and_uploads_work_again_after(web_on_small_disk):
    http, api, settings = web_on_small_disk
    uploads = settings.upload_dir
    job = http.post(f"{api}/jobs", data={"open": "true", "name": "ward 3"}, files=files(1)).json()
    assert job["total"] == 1
    kept = sorted(p.name for p in uploads.iterdir())

    ballast = fill_disk(uploads, leave_bytes=FILE_BYTES + FILE_BYTES // 2)  # room for one file, not two
    chunk = http.post(f"{api}/jobs/{job['id']}/files", files=files(3, first=1))
    assert chunk.status_code == 507, chunk.text
    assert "disk is full" in chunk.json()["message"] and "nothing from this request was kept" in chunk.json()["message"]
    assert sorted(p.name for p in uploads.iterdir()) == sorted([*kept, "ballast"])  # no partial or orphaned file
    new_job = http.post(f"{api}/jobs", files=files(3, first=4))
    assert new_job.status_code == 507
    assert image_rows(settings) == 1  # neither request left a row; the first chunk is intact
    assert http.get(f"{api}/jobs").json()["total"] == 1

    ballast.unlink()  # space is back: the same chunk goes through
    retried = http.post(f"{api}/jobs/{job['id']}/files", files=files(3, first=1))
    assert retried.status_code == 200 and retried.json()["total"] == 4
    stored = [p for p in uploads.iterdir()]
    assert len(stored) == 4 and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in stored)
    assert http.post(f"{api}/jobs/{job['id']}/close").status_code == 200
