"""Users, password hashing and API tokens (only their SHA-256 is stored)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from db.models import ApiToken, User


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def user_by_name(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def create_user(session: Session, username: str, password: str, is_admin: bool = False) -> User:
    user = User(username=username, password_hash=generate_password_hash(password), is_admin=is_admin)
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    user = user_by_name(session, username)
    return user if user is not None and check_password_hash(user.password_hash, password) else None


def set_password(user: User, password: str) -> None:
    user.password_hash = generate_password_hash(password)


def add_token(session: Session, user: User, name: str = "", token: str | None = None) -> str:
    """Create an API token for `user` and return it; it cannot be shown again."""
    token = token or secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, token_hash=hash_token(token), name=name))
    session.flush()
    return token


def user_for_token(session: Session, token: str) -> User | None:
    api_token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if api_token is None:
        return None
    api_token.last_used_at = datetime.now(timezone.utc)
    return api_token.user


def ensure_admin(session: Session, token: str | None, username: str = "admin", password: str | None = None) -> User:
    """The admin user exists, is an admin, and (if given) owns exactly this API token."""
    user = user_by_name(session, username)
    if user is None:
        user = create_user(session, username, password or secrets.token_urlsafe(12), is_admin=True)
    user.is_admin = True
    if password:
        set_password(user, password)
    if token and session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token))) is None:
        add_token(session, user, name="RADBATCH_ADMIN_TOKEN", token=token)
    return user
