"""Per-job webhooks: an outbox row per job, marked due in the same transaction that finishes the job.

States: `waiting` (the job is not finished) -> `due` (send at `next_attempt_at`) -> `sending` (claimed by one
delivery until `next_attempt_at`, its lease) -> `delivered`, or back to `due` with a later `next_attempt_at`
after a failed attempt, or `failed` after MAX_ATTEMPTS. `db.jobs.refresh_job` calls `job_finished`; whoever
owns the session factory passes `on_jobs_finished` a callback that sends the first delivery task right after
that commit. Retries, and anything whose task was lost, are sent by the worker's housekeeping once due: the
schedule lives here, in SQL, never as delayed messages in Redis.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Optional

from sqlalchemy import DateTime, Enum, ForeignKey, Index, Integer, String, Text, or_, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from db.models import Base, iso, utcnow

log = logging.getLogger(__name__)

FINISHED_JOBS = "radbatch_finished_jobs"  # session.info key: jobs that finished in the current transaction
MAX_ATTEMPTS = 12
FIRST_RETRY_S = 5.0
MAX_RETRY_S = 1800.0
LEASE = timedelta(seconds=60)  # longer than one attempt's connect + read timeouts


class WebhookState(str, enum.Enum):
    waiting = "waiting"
    due = "due"
    sending = "sending"
    delivered = "delivered"
    failed = "failed"


class JobWebhook(Base):
    __tablename__ = "job_webhooks"
    __table_args__ = (Index("ix_job_webhooks_state_next", "state", "next_attempt_at"),)

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(128))  # HMAC-SHA256 key for the X-Radbatch-Signature header
    state: Mapped[WebhookState] = mapped_column(
        Enum(WebhookState, native_enum=False, length=16), default=WebhookState.waiting
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    delivered_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))

    def to_dict(self) -> dict:
        return {
            "url": self.url,
            "state": self.state.value,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "delivered_at": iso(self.delivered_at),
        }


def retry_delay(attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failure: 5, 10, 20, ... up to 30 minutes (about 3 h in all)."""
    return min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** (attempts - 1))


def add_webhook(session: Session, job_id: int, url: str, secret: str) -> JobWebhook:
    webhook = JobWebhook(job_id=job_id, url=url, secret=secret, state=WebhookState.waiting, attempts=0)
    session.add(webhook)
    return webhook


def job_finished(session: Session, job_id: int) -> None:
    """The job just finished: its webhook (if any) becomes due, in the caller's transaction."""
    session.execute(
        update(JobWebhook)
        .where(JobWebhook.job_id == job_id, JobWebhook.state == WebhookState.waiting)
        .values(state=WebhookState.due, next_attempt_at=utcnow())
    )
    session.info.setdefault(FINISHED_JOBS, set()).add(job_id)


def on_jobs_finished(factory: sessionmaker[Session], callback: Callable[[list[int]], None]) -> None:
    """Call `callback(job_ids)` after each commit of a session from `factory` in which jobs finished."""

    def after_commit(session: Session) -> None:
        finished = session.info.pop(FINISHED_JOBS, None)
        if not finished:
            return
        try:
            callback(sorted(finished))
        except Exception:  # noqa: BLE001 - never fail a committed transaction; housekeeping re-sends due rows
            log.warning("could not send webhook tasks for jobs %s; housekeeping will retry", sorted(finished))

    def after_rollback(session: Session) -> None:
        session.info.pop(FINISHED_JOBS, None)

    sa_event.listen(factory, "after_commit", after_commit)
    sa_event.listen(factory, "after_soft_rollback", lambda session, _previous: after_rollback(session))


def claim(session: Session, job_id: int, now: datetime) -> JobWebhook | None:
    """Take the job's due webhook for one attempt (a lease), or None if it is not due or another delivery has it."""
    due = (JobWebhook.state == WebhookState.due) & (JobWebhook.next_attempt_at <= now + timedelta(seconds=5))
    abandoned = (JobWebhook.state == WebhookState.sending) & (JobWebhook.next_attempt_at < now)
    claimed = session.execute(
        update(JobWebhook)
        .where(JobWebhook.job_id == job_id, or_(due, abandoned))
        .values(state=WebhookState.sending, next_attempt_at=now + LEASE)
    ).rowcount
    return session.get(JobWebhook, job_id, populate_existing=True) if claimed else None


def record_attempt(
    session: Session, webhook: JobWebhook, error: str | None, now: datetime, permanent: bool = False
) -> float | None:
    """Store an attempt's outcome; returns the seconds until the next attempt, or None when there is none
    (delivered, MAX_ATTEMPTS reached, or a `permanent` failure such as a destination that is not allowed)."""
    webhook.attempts += 1
    if error is None:
        webhook.state, webhook.delivered_at, webhook.last_error = WebhookState.delivered, now, None
        return None
    webhook.last_error = error[:500]
    if permanent or webhook.attempts >= MAX_ATTEMPTS:
        webhook.state = WebhookState.failed
        return None
    delay = retry_delay(webhook.attempts)
    webhook.state, webhook.next_attempt_at = WebhookState.due, now + timedelta(seconds=delay)
    return delay


def deliveries_due(session: Session, now: datetime) -> list[int]:
    """Jobs whose webhook should be attempted now: due (a retry, or a lost first task), or claimed by a dead worker."""
    due = (JobWebhook.state == WebhookState.due) & (JobWebhook.next_attempt_at <= now)
    abandoned = (JobWebhook.state == WebhookState.sending) & (JobWebhook.next_attempt_at < now)
    return list(session.scalars(select(JobWebhook.job_id).where(or_(due, abandoned)).order_by(JobWebhook.job_id)))
