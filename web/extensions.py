"""What the app holds for every request: the settings, database sessions and the Celery client."""

from __future__ import annotations

from functools import partial

from celery import Celery
from flask import Flask, current_app, g
from sqlalchemy.orm import Session

from broker import make_celery, send_notifications
from db.session import make_engine, make_session_factory
from db.webhooks import on_jobs_finished
from models.catalogue import Catalogue, catalogue_stamp, load_catalogue
from settings import Settings


def init_app(app: Flask, settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    app.extensions["radbatch_engine"] = engine
    sessions = app.extensions["radbatch_sessions"] = make_session_factory(engine)
    celery = app.extensions["radbatch_celery"] = make_celery(settings)
    on_jobs_finished(sessions, partial(send_notifications, celery))  # webhooks of jobs that finish in a request
    app.teardown_appcontext(close_db)


def get_settings() -> Settings:
    return current_app.config["SETTINGS"]


def get_catalogue() -> Catalogue:
    """The model catalogue (models/catalogue.py), read again only when its files changed (`catalogue_stamp`, a few
    stat calls per request, against ~10 ms to read it): a model an admin installs, promotes or demotes shows on the
    next request, without a restart."""
    if "catalogue" not in g:
        models_dir = get_settings().models_dir
        stamp = catalogue_stamp(models_dir)
        cached = current_app.extensions.get("radbatch_catalogue")
        if cached is None or cached[0] != stamp:
            cached = current_app.extensions["radbatch_catalogue"] = (stamp, load_catalogue(models_dir))
        g.catalogue = cached[1]
    return g.catalogue


def get_db() -> Session:
    """The request's session, opened lazily; views commit explicitly, anything uncommitted is rolled back."""
    if "db" not in g:
        g.db = current_app.extensions["radbatch_sessions"]()
    return g.db


def close_db(_error: BaseException | None = None) -> None:
    session: Session | None = g.pop("db", None)
    if session is not None:
        session.close()


def celery_client() -> Celery:
    return current_app.extensions["radbatch_celery"]
