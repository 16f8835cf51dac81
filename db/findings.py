"""Per-finding probabilities of an image (models/findings.py): one row per image and served finding."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import DateTime, Float, ForeignKey, Index, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from db.labels import JobLabel
from db.models import Base, Image, outputs_by_image, utcnow


class FindingPrediction(Base):
    __tablename__ = "findings"
    __table_args__ = (
        UniqueConstraint("image_id", "finding", name="uq_findings_image_finding"),
        Index("ix_findings_finding_label", "finding", "label"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    finding: Mapped[str] = mapped_column(String(32))  # NIH's name, e.g. "Effusion"
    model_version: Mapped[str] = mapped_column(String(64))  # of the findings heads
    probability: Mapped[float] = mapped_column(Float)  # calibrated probability that the finding is present
    label: Mapped[str] = mapped_column(String(16))  # "present" | "absent"
    threshold: Mapped[float] = mapped_column(Float)
    # the finding's own rate its probability and threshold are expressed at (models.findings.FindingHeads.shift)
    prevalence: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def findings_for(session: Session, image_ids: list[int]) -> dict[int, dict[str, dict[str, Any]]]:
    """Every finding of these images in one query, as {image_id: {finding: {...}}}, findings by name."""
    return outputs_by_image(session, FindingPrediction.finding, image_ids)


def job_finding_names(session: Session, job_id: int) -> list[str]:
    """The findings predicted for any image of the job, sorted by name (the CSV's finding columns)."""
    query = (
        select(FindingPrediction.finding)
        .join(Image, Image.id == FindingPrediction.image_id)
        .where(Image.job_id == job_id)
        .distinct()
    )
    return sorted(session.scalars(query))


def scored_findings(session: Session, job_id: int) -> list[tuple[str, int, float, float, str]]:
    """(finding, label as 0/1, probability, threshold, heads version) for every matched label row that labels
    a finding the image has a probability for."""
    query = (
        select(JobLabel.findings, FindingPrediction.finding, FindingPrediction.probability)
        .add_columns(FindingPrediction.threshold, FindingPrediction.model_version)
        .join(FindingPrediction, FindingPrediction.image_id == JobLabel.image_id)
        .where(JobLabel.job_id == job_id, JobLabel.problem.is_(None), JobLabel.findings.is_not(None))
        .order_by(JobLabel.image_id, FindingPrediction.finding)
    )
    return [
        (finding, int(labels[finding]), probability, threshold, version)
        for labels, finding, probability, threshold, version in session.execute(query)
        if finding in (labels or {})
    ]
