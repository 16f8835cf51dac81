"""A site's own labels for a job's images, kept for evaluating the models against them.

One `label_sets` row per job (the latest upload replaces the previous one, and caches the evaluation computed
from it) and one `job_labels` row per CSV row: its line and path as given, the image it matched (or the
problem that kept it out), the healthy/disease label and any per-finding 0/1 labels, kept generically as
JSON so that per-finding evaluation can use them once the models predict findings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Optional

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, delete, exists, func, insert, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from db.models import Base, Image, Prediction, utcnow

DISEASE, HEALTHY = "disease", "healthy"


class LabelSet(Base):
    __tablename__ = "label_sets"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    uploaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    uploaded_by: Mapped[str] = mapped_column(String(80))
    rows: Mapped[int] = mapped_column(Integer)
    matched: Mapped[int] = mapped_column(Integer)
    findings: Mapped[list[str]] = mapped_column(JSON)  # the finding columns kept
    ignored_columns: Mapped[list[str]] = mapped_column(JSON)  # other columns, not stored
    evaluation_key: Mapped[Optional[str]] = mapped_column(String(200))  # what the cached evaluation was computed on
    evaluation: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    roc_svg: Mapped[Optional[str]] = mapped_column(Text)


class JobLabel(Base):
    __tablename__ = "job_labels"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    line: Mapped[int] = mapped_column(Integer)  # in the uploaded CSV, the header being line 1
    path: Mapped[str] = mapped_column(Text)  # as given in the CSV
    image_id: Mapped[Optional[int]] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    label: Mapped[Optional[str]] = mapped_column(String(16))  # healthy | disease
    findings: Mapped[Optional[dict[str, int]]] = mapped_column(JSON)  # {"Effusion": 1, ...}
    problem: Mapped[Optional[str]] = mapped_column(Text)  # why this row is not used; None if it is


@dataclass(frozen=True)
class LabelRow:
    line: int
    path: str
    image_id: int | None
    label: str | None
    findings: dict[str, int] | None
    problem: str | None


def replace_labels(
    session: Session,
    job_id: int,
    uploaded_by: str,
    rows: list[LabelRow],
    findings: list[str],
    ignored_columns: list[str],
) -> LabelSet:
    """Store a job's labels, replacing any earlier upload (and its cached evaluation)."""
    session.execute(delete(JobLabel).where(JobLabel.job_id == job_id))
    session.execute(delete(LabelSet).where(LabelSet.job_id == job_id))
    if rows:
        session.execute(insert(JobLabel), [{"job_id": job_id, **asdict(row)} for row in rows])
    label_set = LabelSet(
        job_id=job_id,
        uploaded_by=uploaded_by,
        rows=len(rows),
        matched=sum(row.problem is None for row in rows),
        findings=findings,
        ignored_columns=ignored_columns,
    )
    session.add(label_set)
    session.flush()
    return label_set


def label_set_for(session: Session, job_id: int) -> LabelSet | None:
    return session.get(LabelSet, job_id)


def scored_labels(session: Session, job_id: int) -> list[tuple[str, int, float, float, str]]:
    """(model, label as 0/1, probability, threshold, model version) for every matched label with a prediction."""
    query = (
        select(Prediction.model_name, JobLabel.label, Prediction.probability, Prediction.threshold)
        .add_columns(Prediction.model_version)
        .join(Prediction, Prediction.image_id == JobLabel.image_id)
        .where(JobLabel.job_id == job_id, JobLabel.problem.is_(None))
        .order_by(JobLabel.image_id)
    )
    return [(model, int(label == DISEASE), p, t, v) for model, label, p, t, v in session.execute(query)]


def finding_counts(session: Session, job_id: int) -> dict[str, dict[str, int]]:
    """Per finding column: how many used rows label it, and how many of those are positive."""
    counts: dict[str, dict[str, int]] = {}
    query = select(JobLabel.findings).where(JobLabel.job_id == job_id, JobLabel.problem.is_(None))
    for findings in session.scalars(query):
        for name, value in (findings or {}).items():
            entry = counts.setdefault(name, {"labelled": 0, "positive": 0})
            entry["labelled"] += 1
            entry["positive"] += int(value == 1)
    return counts


def unused_rows(session: Session, job_id: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """The label rows that were not used (no image, several images, bad values, duplicates): some, and how many."""
    where = (JobLabel.job_id == job_id, JobLabel.problem.is_not(None))
    total = session.scalar(select(func.count()).where(*where)) or 0
    query = select(JobLabel.line, JobLabel.path, JobLabel.problem).where(*where).order_by(JobLabel.line).limit(limit)
    return [{"line": line, "path": path, "problem": problem} for line, path, problem in session.execute(query)], total


def images_without_label(session: Session, job_id: int, limit: int) -> tuple[list[str], int]:
    """Paths of the job's images that no used label row matched: some, and how many."""
    labelled = exists().where(JobLabel.image_id == Image.id, JobLabel.problem.is_(None))
    where = (Image.job_id == job_id, ~labelled)
    total = session.scalar(select(func.count(Image.id)).where(*where)) or 0
    paths = session.scalars(select(Image.path).where(*where).order_by(Image.id).limit(limit))
    return list(paths), total
