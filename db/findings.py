"""Per-finding probabilities of an image (models/findings.py): one row per image and finding head.

Every head's output is stored; a row with `validated` false belongs to a finding that failed the validation rule
(models.findings) and is read only when the caller asks for unvalidated findings (RADBATCH_SHOW_UNVALIDATED_FINDINGS).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Index, String, UniqueConstraint, select, true
from sqlalchemy.orm import Mapped, Session, mapped_column

from db.labels import JobLabel
from db.models import Base, Image, utcnow


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
    validated: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # how the threshold was chosen, e.g. "specificity 0.90 on validation"; None for rows from older heads
    operating_point: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def _shown(query, include_unvalidated: bool):
    return query if include_unvalidated else query.where(FindingPrediction.validated.is_(True))


def findings_for(
    session: Session, image_ids: list[int], include_unvalidated: bool = False
) -> dict[int, dict[str, dict[str, Any]]]:
    """The validated findings of these images (all with `include_unvalidated`) in one query, as
    {image_id: {finding: {...}}}, findings by name."""
    found: dict[int, dict[str, dict[str, Any]]] = {}
    if not image_ids:
        return found
    query = select(FindingPrediction).where(FindingPrediction.image_id.in_(image_ids))
    query = _shown(query, include_unvalidated).order_by(FindingPrediction.image_id, FindingPrediction.finding)
    for row in session.scalars(query):
        found.setdefault(row.image_id, {})[row.finding] = {
            "probability": row.probability,
            "label": row.label,
            "threshold": row.threshold,
            "prevalence": row.prevalence,
            "model_version": row.model_version,
            "validated": row.validated,
            "operating_point": row.operating_point,
        }
    return found


def job_finding_names(session: Session, job_id: int, include_unvalidated: bool = False) -> list[str]:
    """The findings shown for any image of the job, sorted by name (the CSV's finding columns)."""
    query = (
        select(FindingPrediction.finding)
        .join(Image, Image.id == FindingPrediction.image_id)
        .where(Image.job_id == job_id)
        .distinct()
    )
    return sorted(session.scalars(_shown(query, include_unvalidated)))


def scored_findings(
    session: Session, job_id: int, include_unvalidated: bool = False
) -> list[tuple[str, int, float, float, str]]:
    """(finding, label as 0/1, probability, threshold, heads version) for every matched label row that labels
    a finding the image has a probability for."""
    query = (
        select(JobLabel.findings, FindingPrediction.finding, FindingPrediction.probability)
        .add_columns(FindingPrediction.threshold, FindingPrediction.model_version)
        .join(FindingPrediction, FindingPrediction.image_id == JobLabel.image_id)
        .where(JobLabel.job_id == job_id, JobLabel.problem.is_(None), JobLabel.findings.is_not(None))
        .order_by(JobLabel.image_id, FindingPrediction.finding)
    )
    query = _shown(query, include_unvalidated)
    return [
        (finding, int(labels[finding]), probability, threshold, version)
        for labels, finding, probability, threshold, version in session.execute(query)
        if finding in (labels or {})
    ]
