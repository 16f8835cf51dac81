"""Login, logout and the API token page. Every POST here carries the form's CSRF token."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import abort, current_app, flash, jsonify, redirect, render_template, request, session, url_for
from flask_wtf.csrf import generate_csrf
from sqlalchemy import func, select

from db.models import ApiToken
from db.text import clean_text
from db.users import add_token, authenticate, end_sessions
from web.auth import bp
from web.auth.identity import current_user, login_name, login_required, start_session
from web.extensions import get_db, get_settings

logger = logging.getLogger(__name__)


def safe_next(target: str | None) -> str:
    """Only redirect to a path on this site after logging in. Browsers drop tabs and newlines inside URLs and read
    a backslash as a slash, so any of those, or anything urllib sees a scheme or host in, goes to the history."""
    target = (target or "").strip()
    if not target or any(ch < " " or ch == "\x7f" or ch == "\\" for ch in target):
        return url_for("dashboard.history")
    try:
        parts = urlsplit(target)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return url_for("dashboard.history")
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return url_for("dashboard.history")
    return target


@bp.route("/login", methods=("GET", "POST"))
def login():
    error = None
    if request.method == "POST":
        username = login_name(request.form.get("username", ""))
        user = authenticate(get_db(), username, request.form.get("password", ""))
        if user is not None:
            start_session(user)
            logger.info("user %s logged in", user.username)
            return redirect(safe_next(request.form.get("next")))
        error = "Wrong user name or password."
        logger.info("failed login for %r", username)
    return render_template("auth/login.html", error=error, next=request.values.get("next", "")), 401 if error else 200


@bp.post("/logout")
def logout():
    """Ends every session of this user, on every browser: the cookie alone cannot be revoked."""
    user = current_user()
    if user is not None:
        end_sessions(user)
        get_db().commit()
        logger.info("user %s logged out (all sessions ended)", user.username)
    session.clear()
    return redirect(url_for("auth.login"))


@bp.get("/csrf-token")
def csrf_token():
    """A fresh CSRF token for a page that stays open longer than a token lives (the upload portal)."""
    if current_user() is None:
        abort(401, "your session has ended; log in again")
    return jsonify(csrf_token=generate_csrf(), expires_in=current_app.config["WTF_CSRF_TIME_LIMIT"])


def _tokens_page(new_token: str | None = None, status: int = 200):
    user = current_user()
    tokens = get_db().scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.created_at.desc()))
    return render_template("auth/tokens.html", tokens=list(tokens), new_token=new_token), status


@bp.get("/account/tokens")
@login_required
def tokens():
    return _tokens_page()


@bp.post("/account/tokens")
@login_required
def create_token():
    name = clean_text(request.form.get("name", "")).strip()[:120] or "unnamed"
    db = get_db()
    limit = get_settings().max_tokens_per_user
    held = db.scalar(select(func.count(ApiToken.id)).where(ApiToken.user_id == current_user().id)) or 0
    if limit and held >= limit:
        abort(409, f"you already have {held} API tokens, the most one user may have; revoke one you no longer use")
    token = add_token(db, current_user(), name=name)
    db.commit()
    logger.info("user %s created API token %r", current_user().username, name)
    return _tokens_page(new_token=token, status=201)  # shown once, never stored in the clear


@bp.post("/account/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id: int):
    db = get_db()
    token = db.scalar(select(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == current_user().id))
    if token is None:
        abort(404, f"API token {token_id} not found among your tokens")
    db.delete(token)
    db.commit()
    flash(f"Token “{token.name}” revoked; programs using it now get 401.")
    return redirect(url_for("auth.tokens"))
