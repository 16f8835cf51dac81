"""Engines and sessions. The caller owns the session: data functions take it and don't commit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

# A connection whose peer vanished without closing it (the database host's network gone and back) would otherwise
# hang a query, or the pool's pre-ping, until TCP's retransmissions give up or succeed, minutes later; a worker's
# only process would sit on it. libpq's TCP settings close it instead: sent data unacknowledged for 20 s
# (tcp_user_timeout, ms), or an idle connection silent to three keepalive probes. The caller sees OperationalError.
POSTGRES_LINK_CHECKS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 20000,
    # The same on the server's end of the connection: a backend whose client vanished mid-statement otherwise waits
    # for it (ClientRead) for hours, holding its rows' locks, and every sweep that touches those rows waits behind it.
    "options": " ".join(
        f"-c {name}={value}"
        for name, value in (
            ("tcp_keepalives_idle", 10),
            ("tcp_keepalives_interval", 5),
            ("tcp_keepalives_count", 3),
            ("tcp_user_timeout", 20000),
        )
    ),
}


def make_engine(database_url: str) -> Engine:
    if database_url.startswith("sqlite"):
        engine = create_engine(database_url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # WAL lets the web app read while a worker writes
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    connect_args = POSTGRES_LINK_CHECKS if make_url(database_url).get_backend_name() == "postgresql" else {}
    return create_engine(database_url, pool_pre_ping=True, connect_args=connect_args)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def database_session(database_url: str) -> Iterator[Session]:
    """A one-off engine and one transaction on it, for scripts and background threads; disposed afterwards."""
    engine = make_engine(database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            yield session
    finally:
        engine.dispose()
