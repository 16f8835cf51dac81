"""Shadow predictions: what a `shadow` model (models/catalogue.py) said about each image, with its version.

They live in their own table so that nothing that reads `predictions` (results, CSV, SR, forwarding, webhooks,
studies) can ever show them; only the admin comparison (web/comparison.py) reads them, paired with the served
headline row of the same image and, where the site uploaded labels, its label.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ForeignKey, Index, UniqueConstraint, and_, select
from sqlalchemy.orm import Mapped, Session, aliased, mapped_column

from db.labels import DISEASE, JobLabel
from db.models import Base, Image, ModelOutput, Prediction


class ShadowPrediction(ModelOutput, Base):
    __tablename__ = "shadow_predictions"
    __table_args__ = (
        UniqueConstraint("image_id", "model_name", "model_version", name="uq_shadow_image_model_version"),
        Index("ix_shadow_model_version", "model_name", "model_version"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)


@dataclass(frozen=True)
class PairedRow:
    image_id: int
    path: str
    version: str  # the shadow model's
    probability: float  # the shadow model's
    label: str
    reference_version: str
    reference_probability: float  # the reference (served) model's
    reference_label: str
    truth: int | None  # the site's label, 1 for disease, None without one


def paired_rows(session: Session, job_id: int, shadow: str, reference: str) -> list[PairedRow]:
    """Every image of the job that both the shadow model and the served `reference` scored, oldest first, with its
    label when the site uploaded one (a label row with a problem does not count)."""
    served = aliased(Prediction)
    label = aliased(JobLabel)
    query = (
        select(Image.id, Image.path, ShadowPrediction, served, label.label)
        .join(ShadowPrediction, ShadowPrediction.image_id == Image.id)
        .join(served, and_(served.image_id == Image.id, served.model_name == reference))
        .outerjoin(label, and_(label.image_id == Image.id, label.job_id == job_id, label.problem.is_(None)))
        .where(Image.job_id == job_id, ShadowPrediction.model_name == shadow)
        .order_by(Image.id, ShadowPrediction.id)
    )
    rows: dict[int, PairedRow] = {}
    for image_id, path, mine, theirs, truth in session.execute(query):
        rows[image_id] = PairedRow(  # the newest shadow version of an image wins
            image_id,
            path,
            mine.model_version,
            mine.probability,
            mine.label,
            theirs.model_version,
            theirs.probability,
            theirs.label,
            None if truth is None else int(truth == DISEASE),
        )
    return list(rows.values())
