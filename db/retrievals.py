"""Retrievals: studies pulled from a PACS into a job (dicomio/retrieve.py does the network, the forwarding
worker's `worker.retrieval` the moves; the listener files what arrives under the job, `listener.scp`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from db.models import Base, Job, iso, utcnow

NAME_PREFIX = "Retrieval from "
MESSAGE_IDS = 65535  # C-MOVE message ids are 16-bit; a retrieval's is derived from its job id


class Retrieval(Base):
    __tablename__ = "retrievals"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(32))
    query: Mapped[dict[str, Any]] = mapped_column(JSON)
    studies: Mapped[list[str]] = mapped_column(JSON)  # StudyInstanceUIDs the query matched
    status: Mapped[str] = mapped_column(String(16), default="retrieving")  # retrieving | done | failed
    step: Mapped[Optional[str]] = mapped_column(String(16))  # the step that failed: c-find, c-move, qido-rs, wado-rs
    error: Mapped[Optional[str]] = mapped_column(Text)
    instances: Mapped[int] = mapped_column(Integer, default=0)  # what the source says it sent
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "job_id": self.job_id,
            "source": self.source,
            "query": self.query,
            "studies": len(self.studies),
            "study_instance_uids": self.studies,
            "status": self.status,
            "failed_step": self.step,
            "error": self.error,
            "instances": self.instances,
            "created_at": iso(self.created_at),
            "finished_at": iso(self.finished_at),
        }


def message_id(job_id: int) -> int:
    """The C-MOVE message id that tells the listener which retrieval job an incoming instance belongs to."""
    return job_id % MESSAGE_IDS + 1


def retrieving_job(session: Session, message: int) -> int | None:
    """The open retrieval job a C-MOVE with this message id was made for (the newest), or None."""
    query = (
        select(Job.id)
        .join(Retrieval, Retrieval.job_id == Job.id)
        .where(Job.is_open, Retrieval.status == "retrieving")
        .order_by(Job.id.desc())
    )
    return next((job_id for job_id in session.scalars(query) if message_id(job_id) == message), None)


def retrieval_of_job(session: Session, job_id: int) -> Retrieval | None:
    return session.scalar(select(Retrieval).where(Retrieval.job_id == job_id))
