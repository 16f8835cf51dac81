"""A job's optional webhook: read and check `webhook_url` (and `webhook_secret`) from the job's creation form.

The body sent when the job finishes is signed with HMAC-SHA256 under the job's secret: either the
`webhook_secret` the client chose (16 to 128 characters) or one generated here and returned once, in the
response that created the job.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import abort
from sqlalchemy.orm import Session

from broker.destinations import BlockedDestination, DestinationPolicy
from db.webhooks import add_webhook
from web.extensions import get_settings

MAX_URL = 2048


def checked_url(raw: str) -> str:
    url = raw.strip()
    if len(url) > MAX_URL or any(c.isspace() for c in url):
        abort(400, f"webhook_url must be one http or https URL of at most {MAX_URL} characters, without spaces")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as error:
        abort(400, f"webhook_url is not a valid URL: {error}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        abort(400, f"webhook_url must start with http:// or https:// and name a host; got {url[:80]!r}")
    if parts.username is not None or parts.password is not None:
        abort(400, "webhook_url must not carry credentials (user:password@); receivers check the signature header")
    try:
        DestinationPolicy.from_setting(get_settings().webhook_allow).check_literal(parts.hostname)
    except BlockedDestination as error:
        abort(400, f"webhook_url: {error}")
    return url


def checked_secret(raw: str | None) -> str:
    if not raw:
        return secrets.token_hex(32)
    if not 16 <= len(raw) <= 128 or not raw.isprintable():
        abort(400, "webhook_secret must be 16 to 128 printable characters (or left out, and one is generated)")
    return raw


def register_webhook(session: Session, job_id: int, form: Mapping[str, str]) -> dict[str, Any]:
    """The job's webhook from the form, if any, as the fields to add to the creation response."""
    raw = (form.get("webhook_url") or "").strip()
    if not raw:
        if form.get("webhook_secret"):
            abort(400, "webhook_secret was sent without webhook_url")
        return {}
    url, secret = checked_url(raw), checked_secret(form.get("webhook_secret"))
    webhook = add_webhook(session, job_id, url, secret)
    return {"webhook": {"url": webhook.url, "state": "waiting", "secret": secret}}
