"""Users, password hashing and API tokens (only their SHA-256 is stored)."""

from __future__ import annotations

import functools
import hashlib
import secrets
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from db.models import ApiToken, User

ADMIN_TOKEN_NAME = "RADBATCH_ADMIN_TOKEN"  # the name of the admin's token that comes from that variable


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def user_by_name(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def create_user(session: Session, username: str, password: str, is_admin: bool = False) -> User:
    user = User(username=username, password_hash=generate_password_hash(password), is_admin=is_admin)
    session.add(user)
    session.flush()
    return user


@functools.cache
def _dummy_hash() -> str:
    return generate_password_hash(secrets.token_hex(16))


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The user if the password is right. An unknown name costs the same hash check as a known one,
    so the answer's timing does not tell which user names exist."""
    user = user_by_name(session, username)
    if user is None:
        check_password_hash(_dummy_hash(), password)
        return None
    return user if check_password_hash(user.password_hash, password) else None


def set_password(user: User, password: str) -> None:
    """A new password also ends every session the user has open."""
    user.password_hash = generate_password_hash(password)
    end_sessions(user)


def end_sessions(user: User) -> None:
    """Every login cookie issued so far for this user stops working (they carry the old version)."""
    user.session_version = (user.session_version or 0) + 1


TOKEN_PREFIX = "rb_"


def add_token(session: Session, user: User, name: str = "", token: str | None = None) -> str:
    """Create an API token for `user` and return it; it cannot be shown again."""
    # "rb_" first: a URL-safe token may start with "-", which a command line (`--token -x...`) reads as an option
    token = token or TOKEN_PREFIX + secrets.token_urlsafe(32)
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
    """The admin user exists, is an admin, has this password (if given), and its token from RADBATCH_ADMIN_TOKEN is
    exactly `token`: a previous value of the variable (or every one, when it is unset) is revoked."""
    user = user_by_name(session, username)
    if user is None:
        user = create_user(session, username, password or secrets.token_urlsafe(12), is_admin=True)
    user.is_admin = True
    if password and not check_password_hash(user.password_hash, password):
        set_password(user, password)
    wanted = hash_token(token) if token else None
    for old in session.scalars(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.name == ADMIN_TOKEN_NAME)):
        if old.token_hash != wanted:
            session.delete(old)
    session.flush()
    if wanted and session.scalar(select(ApiToken).where(ApiToken.token_hash == wanted)) is None:
        add_token(session, user, name=ADMIN_TOKEN_NAME, token=token)
    return user
