"""The audit log: who created, viewed, exported, evaluated, cancelled or purged which job, when, from which address.

Rows hold ids, counts and action names only, never file names, paths or job names (they may carry PHI).
`job_id` is a plain number, not a foreign key, so a job's rows outlive its purge and say that it was purged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import JSON, DateTime, Index, Integer, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from db.models import Base, User, iso, utcnow

ACTIONS = (
    "job.create",
    "job.add_files",
    "job.close",
    "job.view",
    "results.view",
    "results.export",
    "image.view",
    "study.view",
    "study.review",
    "heatmap.view",
    "report.view",
    "files.view",
    "labels.upload",
    "evaluation.view",
    "drift.view",  # drift monitoring's daily summaries of all (or one job's) predicted images
    "job.cancel",
    "job.purge",
    "model.role",
    "model.compare",
)
SYSTEM_ACTOR = "system"  # the retention schedule and other unattended work


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_at", "at"),
        Index("ix_audit_events_job_at", "job_id", "at"),
        Index("ix_audit_events_user_at", "user_id", "at"),
        Index("ix_audit_events_action_at", "action", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    user_id: Mapped[Optional[int]] = mapped_column(Integer)  # no foreign key: the record outlives the user
    username: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(32))
    job_id: Mapped[Optional[int]] = mapped_column(Integer)  # no foreign key: the record outlives the job
    ip: Mapped[Optional[str]] = mapped_column(String(45))
    detail: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)  # counts and flags only

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": iso(self.at),
            "user": self.username,
            "user_id": self.user_id,
            "action": self.action,
            "job_id": self.job_id,
            "ip": self.ip,
            "detail": self.detail or {},
        }


def record_event(
    session: Session,
    action: str,
    user: User | None,
    job_id: int | None = None,
    ip: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add one audit row to the session (the caller commits, ideally with the action itself)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}; add it to db.audit.ACTIONS")
    event = AuditEvent(
        action=action,
        user_id=user.id if user is not None else None,
        username=user.username if user is not None else SYSTEM_ACTOR,
        job_id=job_id,
        ip=ip,
        detail=detail or None,
    )
    session.add(event)
    return event


def audit_page(
    session: Session,
    username: str | None,
    job_id: int | None,
    action: str | None,
    limit: int,
    offset: int,
) -> tuple[list[AuditEvent], int]:
    """One page of events, newest first, and how many match the filters."""
    query = select(AuditEvent)
    if username:
        query = query.where(AuditEvent.username == username)
    if job_id is not None:
        query = query.where(AuditEvent.job_id == job_id)
    if action:
        query = query.where(AuditEvent.action == action)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = query.order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(page)), total
