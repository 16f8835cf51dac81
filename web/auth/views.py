"""Login, logout and the API token page. Every POST here carries the form's CSRF token."""

from __future__ import annotations

import logging

from flask import abort, flash, redirect, render_template, request, session, url_for
from sqlalchemy import select

from db.models import ApiToken
from db.users import add_token, authenticate
from web.auth import bp
from web.auth.identity import current_user, login_required
from web.extensions import get_db

logger = logging.getLogger(__name__)


def _safe_next(target: str | None) -> str:
    """Only redirect to a path on this site after logging in."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("dashboard.history")


@bp.route("/login", methods=("GET", "POST"))
def login():
    error = None
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        user = authenticate(get_db(), username, request.form.get("password", ""))
        if user is not None:
            session.clear()
            session["user_id"] = user.id
            logger.info("user %s logged in", user.username)
            return redirect(_safe_next(request.form.get("next")))
        error = "Wrong user name or password."
        logger.info("failed login for %r", username)
    return render_template("auth/login.html", error=error, next=request.values.get("next", "")), 401 if error else 200


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("auth.login"))


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
    name = request.form.get("name", "").strip()[:120] or "unnamed"
    db = get_db()
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
