"""Backend plumbing: the setup CLI and migrations, the Celery configuration, heartbeats, the launcher config."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select

from broker import PREDICT_TASK, QUEUE, make_celery
from broker.heartbeat import Heartbeat, list_ready_workers
from db.models import Base, User
from db.session import make_engine, make_session_factory, session_scope
from db.setup import alembic_config, login_instructions
from db.users import authenticate, user_for_token
from deploy.run import redis_config, supervisor_config
from settings import Settings
from tests.services import REPO_ROOT, service_env


def setup_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "db.setup", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_the_printed_token_command_reaches_a_home_that_is_not_the_default(tmp_path) -> None:
    line = login_instructions(Settings(home=tmp_path))[1]
    assert line == f"API token: RADBATCH_HOME={tmp_path} .venv/bin/python -m db.setup create-token admin"
    command = line.removeprefix("API token: ").replace(".venv/bin/python", sys.executable)
    env = service_env({"RADBATCH_HOME": str(tmp_path)})
    assert setup_cli(env, "--quiet").returncode == 0
    created = subprocess.run(command, shell=True, cwd=REPO_ROOT, env=service_env({}), capture_output=True, text=True)
    assert created.returncode == 0 and len(created.stdout.strip()) >= 20, created.stderr


def test_setup_migrates_bootstraps_the_admin_and_makes_users_and_tokens(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'setup.db'}"
    env = service_env({"RADBATCH_HOME": str(tmp_path), "RADBATCH_DATABASE_URL": url, "RADBATCH_ADMIN_TOKEN": "t0k3n"})
    first = setup_cli(env)
    assert first.returncode == 0, first.stderr
    assert "log in at http://127.0.0.1:5000/" in first.stdout
    password_file = tmp_path / "admin_password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600
    assert all((tmp_path / d).is_dir() for d in ("uploads", "thumbnails", "logs"))
    assert setup_cli(env).returncode == 0  # a second run changes nothing

    assert setup_cli(env, "create-user", "carol", "--password", "pw-carol").returncode == 0
    token = setup_cli(env, "create-token", "carol")
    assert token.returncode == 0, token.stderr
    missing = setup_cli(env, "create-token", "nobody")
    assert missing.returncode == 2 and "no user named 'nobody'" in missing.stderr

    engine = make_engine(url)
    with session_scope(make_session_factory(engine)) as session:
        admin = authenticate(session, "admin", password_file.read_text().strip())
        assert admin is not None and admin.is_admin
        assert user_for_token(session, "t0k3n").username == "admin"
        assert user_for_token(session, token.stdout.strip()).username == "carol"
        assert session.scalar(select(User).where(User.username == "carol")).is_admin is False
    engine.dispose()


def test_the_migrations_match_the_models(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    command.upgrade(alembic_config(url), "head")
    engine = make_engine(url)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    engine.dispose()


def test_the_migration_downgrades_and_upgrades_again(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    config = alembic_config(url)
    command.upgrade(config, "head")
    engine = make_engine(url)
    tables = {"users", "api_tokens", "jobs", "images", "predictions"}
    assert tables <= set(inspect(engine).get_table_names())
    assert {"ix_images_job_status", "ix_images_job_id"} <= {i["name"] for i in inspect(engine).get_indexes("images")}
    command.downgrade(config, "base")
    assert not tables & set(inspect(engine).get_table_names())
    command.upgrade(config, "head")
    assert tables <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_importing_the_celery_app_does_not_import_tensorflow() -> None:
    code = (
        "import sys, worker.celery_app as c, broker.heartbeat, worker.tasks.predict, worker.tasks.notify; c.app; "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=service_env({}), capture_output=True)
    assert result.returncode == 0, result.stderr.decode()


def test_the_celery_app_is_configured_for_at_least_once_delivery() -> None:
    app = make_celery(Settings(redis_url="redis://:secret@example:6379/0"))
    conf = app.conf
    assert conf.broker_url == "redis://:secret@example:6379/0"
    assert (conf.task_acks_late, conf.task_reject_on_worker_lost, conf.worker_prefetch_multiplier) == (True, True, 1)
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.task_routes[PREDICT_TASK]["queue"] == QUEUE == conf.task_default_queue
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit > conf.task_soft_time_limit > 0
    assert conf.worker_cancel_long_running_tasks_on_connection_loss is False  # a running batch finishes and stores


def test_heartbeats_appear_and_disappear(redis_url: str) -> None:
    beat = Heartbeat(redis_url, {"cnn": "v1", "unet": "v2", "ensemble": "v3"}, interval=0.1).start()
    try:
        mine = [w for w in list_ready_workers(redis_url) if w["pid"] == os.getpid()]
        assert len(mine) == 1 and mine[0]["models"] == {"cnn": "v1", "unet": "v2", "ensemble": "v3"}
    finally:
        beat.stop()
    assert not [w for w in list_ready_workers(redis_url) if w["pid"] == os.getpid()]


def test_the_launcher_starts_redis_only_without_a_redis_url(tmp_path) -> None:
    settings = Settings(home=tmp_path, redis_port=6999, port=5123, worker_concurrency=1, redis_password="pw")
    local = supervisor_config(settings)
    assert "[program:redis]" in local and str(tmp_path / "redis" / "redis.conf") in local
    assert "port 6999" in redis_config(settings) and "appendonly yes" in redis_config(settings)
    assert "[program:worker]" in local and "-A worker.celery_app worker -Q radbatch" in local
    assert "127.0.0.1:5123" in local and "'web:create_app()'" in local and "nodaemon=true" in local
    remote = supervisor_config(Settings(home=tmp_path, redis_url="redis://elsewhere:6379/0"))
    assert "[program:redis]" not in remote and "[program:worker]" in remote


def test_the_launcher_supervises_the_dicom_listener_and_the_forwarder_only_when_forwarding(tmp_path) -> None:
    plain = supervisor_config(Settings(home=tmp_path, redis_url="redis://elsewhere:6379/0"))
    assert "[program:dicom]" in plain and "-m listener" in plain and "[program:forwarder]" not in plain
    forwarding = supervisor_config(Settings(home=tmp_path, redis_url="redis://x:1/0", dicom_forward="PACS@h:104"))
    assert "[program:forwarder]" in forwarding and "-A worker.forwarder worker -Q radbatch-forward" in forwarding
