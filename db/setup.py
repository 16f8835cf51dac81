"""Prepare an installation: folders, database migrations, the admin user; and create users and tokens.

python -m db.setup                                   # idempotent; `make run` and `make test` call it
python -m db.setup create-user NAME --password PW [--admin]
python -m db.setup create-token NAME [--label LABEL] # prints a new API token for user NAME
"""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import select

from db.models import User
from db.session import make_engine, make_session_factory, session_scope
from db.users import add_token, create_user, ensure_admin, set_password
from settings import Settings

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
ADMIN_USERNAME = "admin"


class SetupError(RuntimeError):
    pass


def alembic_config(database_url: str) -> Config:
    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(REPO_ROOT / "db" / "migrations"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logging"] = False
    return config


def migrate(database_url: str, revision: str = "head") -> None:
    """`alembic upgrade <revision>` against `database_url`."""
    command.upgrade(alembic_config(database_url), revision)


def make_dirs(settings: Settings) -> None:
    for path in (settings.home, settings.upload_dir, settings.thumbnail_dir, settings.home / "logs"):
        path.mkdir(parents=True, exist_ok=True)


def stored_admin_password(home: Path) -> str:
    """The generated admin password kept in $RADBATCH_HOME/admin_password (mode 600), made on first use."""
    path = home / "admin_password"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(12) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def bootstrap(settings: Settings) -> str:
    """Folders, migrations and the admin user; returns where the admin password comes from."""
    make_dirs(settings)
    migrate(settings.database_url)
    password = settings.admin_password
    source = "RADBATCH_ADMIN_PASSWORD" if password else str(settings.home / "admin_password")
    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            exists = session.scalar(select(User).where(User.username == ADMIN_USERNAME)) is not None
            if password is None and not exists:
                password = stored_admin_password(settings.home)
            ensure_admin(session, settings.admin_token, username=ADMIN_USERNAME, password=password)
    finally:
        engine.dispose()
    return source


def _create_user(settings: Settings, username: str, password: str, is_admin: bool) -> None:
    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            user = session.scalar(select(User).where(User.username == username))
            if user is None:
                create_user(session, username, password, is_admin=is_admin)
            else:
                set_password(user, password)
                user.is_admin = user.is_admin or is_admin
    finally:
        engine.dispose()


def _create_token(settings: Settings, username: str, label: str) -> str:
    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            user = session.scalar(select(User).where(User.username == username))
            if user is None:
                raise SetupError(f"no user named {username!r}; create it with: python -m db.setup create-user")
            return add_token(session, user, name=label)
    finally:
        engine.dispose()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m db.setup", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    user = sub.add_parser("create-user", help="create a user (or reset its password)")
    user.add_argument("name")
    user.add_argument("--password", required=True)
    user.add_argument("--admin", action="store_true")
    token = sub.add_parser("create-token", help="print a new API token for a user")
    token.add_argument("name", help="the user's name")
    token.add_argument("--label", default="cli", help="a note stored with the token")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    settings = Settings.from_env()
    try:
        if args.command == "create-user":
            make_dirs(settings)
            migrate(settings.database_url)
            _create_user(settings, args.name, args.password, args.admin)
            print(f"user {args.name!r} ready{' (admin)' if args.admin else ''}")
        elif args.command == "create-token":
            print(_create_token(settings, args.name, args.label))
        else:
            source = bootstrap(settings)
            print(f"radbatch is set up in {settings.home}")
            print(f"  log in at http://127.0.0.1:{settings.port}/ as {ADMIN_USERNAME!r}; password: {source}")
            if settings.admin_token:
                print("  API: send 'Authorization: Bearer $RADBATCH_ADMIN_TOKEN'")
            else:
                print(f"  API token: python -m db.setup create-token {ADMIN_USERNAME}")
    except SetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
