"""One SQLAlchemy session per request, opened lazily and closed at teardown."""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy.orm import Session

from db.session import make_engine, make_session_factory
from settings import Settings


def init_app(app: Flask, settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    app.extensions["radbatch_engine"] = engine
    app.extensions["radbatch_sessions"] = make_session_factory(engine)
    app.teardown_appcontext(close_db)


def get_db() -> Session:
    """The request's session; views commit explicitly, anything uncommitted is rolled back at teardown."""
    if "db" not in g:
        g.db = current_app.extensions["radbatch_sessions"]()
    return g.db


def close_db(_error: BaseException | None = None) -> None:
    session: Session | None = g.pop("db", None)
    if session is not None:
        session.close()


def get_settings() -> Settings:
    return current_app.config["SETTINGS"]
