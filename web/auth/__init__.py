"""Log in and out with a password; create and revoke API tokens."""

from flask import Blueprint

bp = Blueprint("auth", __name__)

from web.auth import views  # noqa: E402,F401  (registers the routes on bp)
