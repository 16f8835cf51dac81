"""The JSON REST API under /api/v1: Bearer tokens (or the portal's session cookie plus a CSRF header)."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from web.api import health, jobs  # noqa: E402,F401  (registers the routes on bp)
