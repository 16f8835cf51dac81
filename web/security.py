"""What protects every response and the login form: security headers (Flask-Talisman), login throttling
(Flask-Limiter, counted in Redis), no caching of patient data, proxy headers, and ids bounded by the database."""

from __future__ import annotations

from flask import Flask, Response, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_talisman import Talisman
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from settings import Settings
from web.auth.identity import login_name

# Scripts, styles and images come from this site only: no inline script, style attribute or event handler.
# Two exceptions, both for the vendored viewer: heat maps are shown from blob: URLs of fetched PNGs, and
# OpenSeadragon injects one fixed <style> rule (allowed by its hash, so nothing else inline is).
OPENSEADRAGON_STYLE_SHA256 = "'sha256-9xTiqzfwFaL2SGb1rmr8gysEwVVjIvqWAgmZgqFqpEE='"
CONTENT_SECURITY_POLICY = {
    "default-src": "'self'",
    "style-src": f"'self' {OPENSEADRAGON_STYLE_SHA256}",
    "img-src": "'self' blob:",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
LOGIN_ENDPOINT = "auth.login"
LIMITER_KEY_PREFIX = "radbatch-limiter"


class DatabaseId(IntegerConverter):
    """`<int:...>` in every route: ids past the 32-bit columns do not exist (404), instead of overflowing in SQL."""

    def __init__(self, url_map, *args, **kwargs) -> None:
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(url_map, *args, **kwargs)


def init_converters(app: Flask) -> None:
    """Call before any blueprint is registered: rules are compiled with the converters they find."""
    app.url_map.converters["int"] = DatabaseId


def init_app(app: Flask, settings: Settings) -> None:
    """Call after the blueprints are registered: the login view is wrapped by its limits."""
    if settings.proxy_count:
        n = settings.proxy_count
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    Talisman(
        app,
        force_https=False,  # TLS ends at a proxy, or there is none (make run binds 127.0.0.1)
        session_cookie_secure=settings.secure_cookies,
        strict_transport_security=settings.hsts_seconds > 0,  # sent on HTTPS requests only, per RFC 6797
        strict_transport_security_max_age=settings.hsts_seconds,
        strict_transport_security_include_subdomains=False,
        content_security_policy=CONTENT_SECURITY_POLICY,
        frame_options="DENY",
        referrer_policy="same-origin",
    )
    app.after_request(_no_store_by_default)
    _throttle_logins(app, settings)


def _no_store_by_default(response: Response) -> Response:
    """Pages, JSON and CSV hold patient data: no cache may keep them unless a view said otherwise."""
    if request.endpoint != "static" and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response


def _failed_login(response: Response) -> bool:
    return response.status_code == 401


def _user_name_key() -> str:
    """Counted as the form checks the name, so variants that log in as the same user share one count."""
    return "user:" + login_name(request.form.get("username", "")).lower()[:200]


def _throttle_logins(app: Flask, settings: Settings) -> None:
    """Failed log-ins are counted per client address and per user name (whatever the address) in a moving
    window in Redis; past either limit the form answers 429, the right password included. API tokens are
    never counted. If Redis is down, each web process counts in its own memory until it is back."""
    app.config.update(
        RATELIMIT_STORAGE_URI=settings.effective_redis_url,
        RATELIMIT_STRATEGY="moving-window",
        RATELIMIT_KEY_PREFIX=LIMITER_KEY_PREFIX,
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
        RATELIMIT_HEADERS_ENABLED=True,  # Retry-After on the 429
    )
    limiter = Limiter(get_remote_address, app=app)
    app.extensions["radbatch_limiter"] = limiter
    wait = "too many failed log-ins {}; wait a few minutes and try again"
    login = app.view_functions[LOGIN_ENDPOINT]
    login = limiter.limit(
        lambda: settings.login_limit_per_user,
        key_func=_user_name_key,
        methods=["POST"],
        deduct_when=_failed_login,
        error_message=wait.format("for this user name"),
    )(login)
    login = limiter.limit(
        lambda: settings.login_limit_per_ip,
        methods=["POST"],
        deduct_when=_failed_login,
        error_message=wait.format("from your address"),
    )(login)
    app.view_functions[LOGIN_ENDPOINT] = login
