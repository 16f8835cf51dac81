"""The JSON REST API under /api/v1: Bearer tokens (or the portal's session cookie plus a CSRF header)."""

from flask import Blueprint, request

from web.auth.identity import api_user

bp = Blueprint("api", __name__, url_prefix="/api/v1")
PUBLIC_ENDPOINTS = {"api.healthz", "api.readyz", "api.openapi"}


@bp.before_request
def authenticate() -> None:
    if request.endpoint not in PUBLIC_ENDPOINTS:
        api_user()


from web.api import (  # noqa: E402,F401  (registers routes)
    audit,
    evaluation,
    files,
    health,
    images,
    jobs,
    models,
    monitoring,
    openapi,
    reports,
    retrievals,
    reviews,
    studies,
    webhooks,
)
