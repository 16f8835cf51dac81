"""A radiologist's review of a study's result: agree, disagree (with the correct label and findings) or unsure,
with a comment. The newest review of a (job, study) is the one that counts.

Reviews are site labels: an agreeing or disagreeing review labels the study's frontal images (the ones the study
result counts) in the job's label set (db/labels.py; rows with path `review:<StudyInstanceUID>`, replaced by a newer
review), so the job's evaluation page counts them with any uploaded labels. "unsure" labels nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import JSON, DateTime, ForeignKey, Index, String, Text, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from db.labels import JobLabel, LabelSet
from db.models import Base, User, iso, utcnow

VERDICTS = ("agree", "disagree", "unsure")
LABELS = ("healthy", "disease")
REVIEW_PATH = "review:"


class Review(Base):
    __tablename__ = "reviews"
    __table_args__ = (Index("ix_reviews_job_study", "job_id", "study_instance_uid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    study_instance_uid: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    username: Mapped[str] = mapped_column(String(80))
    verdict: Mapped[str] = mapped_column(String(16))  # agree | disagree | unsure
    label: Mapped[Optional[str]] = mapped_column(String(16))  # the reviewer's label: the study result's when agreeing
    findings: Mapped[Optional[list[str]]] = mapped_column(JSON)  # findings the reviewer says are present
    comment: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "job_id": self.job_id,
            "study_instance_uid": self.study_instance_uid,
            "reviewer": self.username,
            "verdict": self.verdict,
            "label": self.label,
            "findings": self.findings,
            "comment": self.comment,
            "created_at": iso(self.created_at),
        }


def latest_reviews(session: Session, job_ids: list[int]) -> dict[tuple[int, str], Review]:
    """The newest review of each (job, study) of these jobs."""
    found: dict[tuple[int, str], Review] = {}
    if not job_ids:
        return found
    for review in session.scalars(select(Review).where(Review.job_id.in_(job_ids)).order_by(Review.id)):
        found[(review.job_id, review.study_instance_uid)] = review
    return found


def record_review(
    session: Session,
    user: User,
    job_id: int,
    study_uid: str,
    verdict: str,
    label: str | None,
    findings: list[str],
    comment: str,
    labelled_image_ids: list[int],
) -> Review:
    """Store a review and label the study's counted images with it (flushed, not committed)."""
    review = Review(
        job_id=job_id,
        study_instance_uid=study_uid,
        user_id=user.id,
        username=user.username,
        verdict=verdict,
        label=label,
        findings=findings or None,
        comment=comment or None,
    )
    session.add(review)
    path = f"{REVIEW_PATH}{study_uid}"
    session.execute(delete(JobLabel).where(JobLabel.job_id == job_id, JobLabel.path == path))
    if verdict != "unsure" and label in LABELS:
        label_set = session.get(LabelSet, job_id)
        if label_set is None:
            label_set = LabelSet(
                job_id=job_id, uploaded_by=user.username, rows=0, matched=0, findings=[], ignored_columns=[]
            )
            session.add(label_set)
        label_set.uploaded_at = utcnow()  # a new key: the cached evaluation is recomputed
        label_set.rows += len(labelled_image_ids)
        label_set.matched += len(labelled_image_ids)
        session.add_all(
            JobLabel(job_id=job_id, line=0, path=path, image_id=image_id, label=label)
            for image_id in labelled_image_ids
        )
    session.flush()
    return review
