"""What an installation protects (issue 10, "Security"): file modes, the password of `make run`'s Redis,
rotating RADBATCH_ADMIN_TOKEN, and a docker-compose file without default passwords."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys

import pytest
import redis
from sqlalchemy import select

from db.models import ApiToken, Base, User
from db.session import make_engine, make_session_factory, session_scope
from db.setup import read_or_create_secret
from db.users import add_token, ensure_admin, user_for_token
from deploy.run import redis_config, supervisor_config, write_private
from settings import Settings
from tests.services import REPO_ROOT, free_port, ready_or_stopped, service_env, start_process, stop_process


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_setup_makes_everything_private(tmp_path) -> None:
    home = tmp_path / "home"
    (home / "uploads").mkdir(parents=True, mode=0o755)  # an older installation, world-readable
    env = service_env({"RADBATCH_HOME": str(home)})
    done = subprocess.run([sys.executable, "-m", "db.setup"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for folder in ("", "uploads", "thumbnails", "logs"):
        assert mode(home / folder) == 0o700, folder
    for secret in ("secret_key", "admin_password", "redis_password", "radbatch.db"):
        assert mode(home / secret) == 0o600, secret


def test_secret_files_are_private_from_the_start(tmp_path) -> None:
    old = os.umask(0)  # even with the loosest umask, never a moment with a readable secret
    try:
        assert read_or_create_secret(tmp_path / "s", lambda: "x") == "x"
        write_private(tmp_path / "conf", "requirepass x")
    finally:
        os.umask(old)
    assert mode(tmp_path / "s") == 0o600 and mode(tmp_path / "conf") == 0o600


def test_make_runs_redis_needs_its_password(tmp_path) -> None:
    """The redis program exactly as supervisord would start it, with the redis.conf `make run` writes."""
    (tmp_path / "redis").mkdir()
    settings = Settings(home=tmp_path, redis_port=free_port(), redis_password='s3cret/+ &"x')
    write_private(tmp_path / "redis" / "redis.conf", redis_config(settings))
    config = supervisor_config(settings)
    assert "umask=077" in config and settings.redis_password not in config  # not on any command line
    command = re.search(r"\[program:redis\]\ncommand=(.+)", config).group(1)
    process = start_process(shlex.split(command), dict(os.environ), tmp_path / "redis.log")
    try:
        url = settings.effective_redis_url
        assert url.startswith("redis://:s3cret%2F%2B%20%26%22x@127.0.0.1:")
        ready_or_stopped(process, lambda: redis.Redis.from_url(url).ping(), 20, "redis", tmp_path / "redis.log")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=settings.redis_port).set("radbatch:injected", "task")
    finally:
        stop_process(process)


def test_the_launcher_refuses_a_redis_without_password(tmp_path) -> None:
    from deploy.run import LaunchError

    with pytest.raises(LaunchError, match="db.setup"):
        redis_config(Settings(home=tmp_path))
    (tmp_path / "redis_password").write_text("from-setup\n")
    assert Settings(home=tmp_path).effective_redis_url == "redis://:from-setup@127.0.0.1:6390/0"
    assert Settings(home=tmp_path, redis_url="redis://other/0").effective_redis_url == "redis://other/0"


def test_rotating_the_admin_token_revokes_the_previous_one(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    Base.metadata.create_all(engine)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as session:
        admin = ensure_admin(session, "first-token", password="pw")
        own = add_token(session, admin, name="made on the tokens page")
        version = admin.session_version
    with session_scope(sessions) as session:
        ensure_admin(session, "second-token", password="pw")
    with session_scope(sessions) as session:
        assert user_for_token(session, "first-token") is None
        assert user_for_token(session, "second-token").username == "admin"
        assert user_for_token(session, own) is not None  # tokens the admin made are kept
        assert session.scalar(select(User)).session_version == version  # same password: sessions kept
    with session_scope(sessions) as session:
        ensure_admin(session, None, password="new pw")  # variable unset: no token from it at all
    with session_scope(sessions) as session:
        assert [t.name for t in session.scalars(select(ApiToken))] == ["made on the tokens page"]
        assert session.scalar(select(User)).session_version == version + 1  # a new password ends sessions
    engine.dispose()


def test_compose_has_no_default_passwords_and_keeps_flower_local() -> None:
    compose = (REPO_ROOT / "docker-compose.yml").read_text()
    assert "change-me" not in compose
    required = (
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
        "FLOWER_BASIC_AUTH",
        "RADBATCH_ADMIN_PASSWORD",
        "MINIO_ROOT_PASSWORD",
    )
    for secret in (*required, "RADBATCH_DICOM_ALLOWED_AETS"):  # the listener's port is published: no open door
        uses = re.findall(r"\$\{" + secret + r"([^}]*)\}", compose)
        assert uses and all(use.startswith(":?") for use in uses), (secret, uses)  # refuses to start without it
    flower = compose[compose.index("  flower:") :]
    assert re.search(r'- "127\.0\.0\.1:\$\{FLOWER_PORT:-5555\}:5555"', flower)
    assert "REDIS_PASSWORD" not in flower.split("command:")[1].split("\n")[0]  # not on Flower's command line
    example = (REPO_ROOT / ".env.example").read_text()
    for secret in (*required, "RADBATCH_DICOM_ALLOWED_AETS"):
        assert re.search(rf"^{secret}=$", example, re.M), secret  # empty: copying it unfilled cannot start
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored
