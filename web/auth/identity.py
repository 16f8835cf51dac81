"""Who is asking: the logged-in user (session cookie) or the owner of a Bearer token."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from flask import abort, current_app, g, redirect, request, session, url_for

from db.models import User
from db.text import clean_text
from db.users import user_for_token
from web.extensions import get_db

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def login_name(raw: str) -> str:
    """The user name as the log-in form checks it (and log-in throttling counts it): no control characters."""
    return clean_text(raw).strip()


def start_session(user: User) -> None:
    """Log `user` in: the cookie names the user, the session version it was issued under and when."""
    session.clear()
    session.permanent = True
    session.update(user_id=user.id, session_version=user.session_version, logged_in_at=int(time.time()))
    g.user = user


def current_user() -> User | None:
    """The user of the session cookie, loaded once per request; None once that session has been ended (logout or
    password change anywhere: the user's session version moved on) or is older than RADBATCH_SESSION_HOURS."""
    if "user" not in g:
        user_id = session.get("user_id")
        user = get_db().get(User, user_id) if isinstance(user_id, int) else None
        max_age = current_app.permanent_session_lifetime.total_seconds()
        if user is not None and (
            session.get("session_version") != user.session_version
            or not isinstance(session.get("logged_in_at"), int)
            or time.time() - session["logged_in_at"] > max_age
        ):
            session.clear()
            user = None
        g.user = user
    return g.user


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapped


def login_or_token_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """A page that scripts may fetch too: a Bearer token if one is sent, else the session (else the login page)."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if request.headers.get("Authorization", "").strip():
            api_user()  # 401 for a bad or revoked token, never a redirect a script cannot follow
        elif current_user() is None:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapped


def api_user() -> User:
    """The caller of an API endpoint: a Bearer token, or the portal's session cookie plus a CSRF header."""
    header = request.headers.get("Authorization", "").strip()
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            abort(401, "the Authorization header must be 'Bearer <token>'")
        user = user_for_token(get_db(), token.strip())
        if user is None:
            abort(401, "this API token is not valid (it may have been revoked); create one at /account/tokens")
        get_db().commit()  # records last_used_at
        g.user = user
        return user
    user = current_user()
    if user is None:
        abort(401, "log in, or send 'Authorization: Bearer <token>' (create a token at /account/tokens)")
    if request.method not in SAFE_METHODS:
        current_app.extensions["radbatch_csrf"].protect()  # a cookie alone must not be enough to change data
    return user
