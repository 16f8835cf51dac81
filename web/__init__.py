"""The radbatch web app: upload portal, REST API and dashboard. Importing this package opens nothing."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flask import Flask, redirect, url_for
from flask_wtf.csrf import CSRFProtect

from settings import Settings

logger = logging.getLogger(__name__)
MB = 1024 * 1024
MAX_FORM_PARTS = 5000  # files and fields in one request; also the most files (sent or held back) it may add
CSRF_TOKEN_SECONDS = 3600  # the upload portal fetches a fresh token (GET /csrf-token) during a long upload


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app. `test_config` may hold a `SETTINGS` object and any Flask config overrides."""
    app = Flask(__name__)
    config = dict(test_config or {})
    settings: Settings = config.pop("SETTINGS", None) or Settings.from_env()
    if not settings.secret_key:
        raise RuntimeError("no secret key: set RADBATCH_SECRET_KEY, or run `python -m db.setup` to make one")
    app.config.from_mapping(
        SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        # One request carries one chunk (~20 MB or 50 files) or a single file up to the per-file limit;
        # a little headroom lets a slightly-too-large file be recorded as a failed row instead of a 413.
        MAX_CONTENT_LENGTH=(max(settings.max_file_mb, 20) + 32) * MB,
        MAX_FORM_PARTS=MAX_FORM_PARTS,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_hours),
        WTF_CSRF_TIME_LIMIT=CSRF_TOKEN_SECONDS,
    )
    app.config.update(config)
    if not app.testing and not logging.getLogger().handlers:  # e.g. under gunicorn: make our log lines visible
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from web import extensions, security

    extensions.init_app(app, settings)
    security.init_converters(app)

    from web import metrics

    metrics.init_app(app)

    csrf = CSRFProtect(app)
    app.extensions["radbatch_csrf"] = csrf

    from web import api, auth, dashboard, dicomweb, upload
    from web import audit as web_audit
    from web.api import errors, health

    csrf.exempt(api.bp)  # token clients have no cookie; cookie clients are checked in web.auth.identity
    csrf.exempt(dicomweb.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(dicomweb.bp)
    app.register_blueprint(upload.bp)
    app.register_blueprint(dashboard.bp)
    errors.init_app(app)
    security.init_app(app, settings)
    web_audit.init_app(app)

    # Probes also answer at the root, where load balancers and orchestrators usually look.
    app.add_url_rule("/healthz", "healthz", health.healthz)
    app.add_url_rule("/readyz", "readyz", health.readyz)

    @app.get("/")
    def index():
        return redirect(url_for("dashboard.history"))

    logger.debug("radbatch web app created (database %s)", settings.database_url.split("@")[-1])
    return app
