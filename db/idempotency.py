"""Idempotency keys: the first successful response to a request, replayed to its retries (they create nothing)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.models import IdempotencyKey, User, utcnow

KEEP_FOR = timedelta(hours=24)  # how long a retry may come after the first request


def find_key(session: Session, user: User, key: str) -> IdempotencyKey | None:
    return session.scalar(select(IdempotencyKey).where(IdempotencyKey.user_id == user.id, IdempotencyKey.key == key))


def remember_key(
    session: Session,
    user: User,
    key: str,
    fingerprint: str,
    status_code: int,
    response: str,
    location: str | None,
    job_id: int | None = None,
) -> IdempotencyKey:
    """Stage the key with its response in the caller's transaction, beside the rows the request created. The key
    belongs to `job_id` (the job the request made or filled) and is deleted with it: a purged job is not replayed."""
    row = IdempotencyKey(
        user_id=user.id,
        job_id=job_id,
        key=key,
        fingerprint=fingerprint,
        status_code=status_code,
        response=response,
        location=location,
    )
    session.add(row)
    return row


def purge_keys(session: Session) -> int:
    """Delete keys older than KEEP_FOR; returns how many."""
    result = session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < utcnow() - KEEP_FOR))
    return result.rowcount or 0
