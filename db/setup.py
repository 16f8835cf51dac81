"""Prepare an installation: folders, database migrations, the admin user; and create users and tokens.

python -m db.setup [--quiet]                         # idempotent; `make run` calls it with --quiet
python -m db.setup create-user NAME --password PW [--admin]
python -m db.setup create-token NAME [--label LABEL] # prints a new API token for user NAME
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from db.session import database_session
from db.users import add_token, create_user, ensure_admin, set_password, user_by_name
from settings import REDIS_PASSWORD_FILE, SECRET_KEY_FILE, Settings
from storage import storage_for

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD_FILE = "admin_password"


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


def private_dir(path: Path) -> None:
    """A folder only its owner can enter (0700), whether it is new or was made before with looser modes."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def make_dirs(settings: Settings) -> None:
    """$RADBATCH_HOME and its folders, mode 0700, and the file store's (the local one's hold patient images)."""
    for path in (settings.home, settings.log_dir):
        private_dir(path)
    storage_for(settings).prepare()


def read_or_create_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret kept in `path`, created with mode 600 from the start (never readable by others)."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as handle:
        handle.write(make() + "\n")
    return path.read_text().strip()


def bootstrap(settings: Settings) -> None:
    """Folders, the secret key, the password of `make run`'s Redis, migrations and the admin user."""
    make_dirs(settings)
    if not settings.secret_key:
        read_or_create_secret(settings.home / SECRET_KEY_FILE, lambda: secrets.token_hex(32))
    if not settings.redis_url and not settings.redis_password:
        read_or_create_secret(settings.home / REDIS_PASSWORD_FILE, lambda: secrets.token_urlsafe(32))
    migrate(settings.database_url)
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database and Path(url.database).is_file():
        Path(url.database).chmod(0o600)
    password = settings.admin_password
    with database_session(settings.database_url) as session:
        if password is None and user_by_name(session, ADMIN_USERNAME) is None:
            password = read_or_create_secret(settings.home / ADMIN_PASSWORD_FILE, lambda: secrets.token_urlsafe(12))
        ensure_admin(session, settings.admin_token, username=ADMIN_USERNAME, password=password)


def command_environment(settings: Settings) -> str:
    """The RADBATCH_* assignments a printed command needs to reach this instance, with a trailing space: the home
    when it is not the default, and the database URL when it is not the home's (unless it holds a password,
    which is not printed: then the command says to set it)."""
    assignments = []
    if settings.home != Path(Settings.home).resolve():
        assignments.append(f"RADBATCH_HOME={shlex.quote(str(settings.home))}")
    if settings.database_url != Settings(home=settings.home, secret_key="-").database_url:
        shown = "$RADBATCH_DATABASE_URL" if make_url(settings.database_url).password else settings.database_url
        assignments.append(f"RADBATCH_DATABASE_URL={shlex.quote(shown) if '$' not in shown else shown}")
    return "".join(f"{assignment} " for assignment in assignments)


def login_instructions(settings: Settings) -> list[str]:
    """How to log in and get an API token, for the set-up and launcher output; each command works as printed."""
    source = "RADBATCH_ADMIN_PASSWORD" if settings.admin_password else str(settings.home / ADMIN_PASSWORD_FILE)
    api = (
        "API: send 'Authorization: Bearer $RADBATCH_ADMIN_TOKEN'"
        if settings.admin_token
        else f"API token: {command_environment(settings)}.venv/bin/python -m db.setup create-token {ADMIN_USERNAME}"
    )
    return [f"log in at http://127.0.0.1:{settings.port}/ as {ADMIN_USERNAME!r} with the password in {source}", api]


def _create_user(settings: Settings, username: str, password: str, is_admin: bool) -> None:
    with database_session(settings.database_url) as session:
        user = user_by_name(session, username)
        if user is None:
            create_user(session, username, password, is_admin=is_admin)
        else:
            set_password(user, password)
            user.is_admin = user.is_admin or is_admin


def _create_token(settings: Settings, username: str, label: str) -> str:
    with database_session(settings.database_url) as session:
        try:
            user = user_by_name(session, username)
        except SQLAlchemyError:
            raise SetupError(
                f"no radbatch database at {make_url(settings.database_url).render_as_string()}; "
                "set RADBATCH_HOME (or RADBATCH_DATABASE_URL) as for `make run`, or run `python -m db.setup` first"
            ) from None
        if user is None:
            raise SetupError(f"no user named {username!r}; create it with: python -m db.setup create-user")
        return add_token(session, user, name=label)


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
    parser.add_argument("--quiet", action="store_true", help="print errors only (`make run` says where to log in)")
    return parser


def main(argv: list[str] | None = None) -> int:
    os.umask(0o077)  # everything set-up creates (database, folders, secrets) is for this user only
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
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
            bootstrap(settings)
            if not args.quiet:
                print(f"radbatch is set up in {settings.home}")
                print("\n".join(f"  {line}" for line in login_instructions(settings)))
    except SetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
