"""Typed SQLAlchemy 2 models: users, API tokens, jobs, images and their predictions."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    select,
    true,
)
from sqlalchemy.orm import DeclarativeBase, InstrumentedAttribute, Mapped, Session, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class JobStatus(str, enum.Enum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"

    @classmethod
    def finished(cls) -> tuple[JobStatus, ...]:
        """Every image was processed (or the job was cancelled): nothing more will happen to it."""
        return (cls.done, cls.failed, cls.cancelled)

    @property
    def is_finished(self) -> bool:
        return self in JobStatus.finished()


class ImageStatus(str, enum.Enum):
    pending = "pending"  # stored, not yet handed to a worker (open job still filling a batch)
    queued = "queued"  # its batch task is on Redis
    done = "done"
    failed = "failed"
    cancelled = "cancelled"

    @classmethod
    def unfinished(cls) -> tuple[ImageStatus, ...]:
        """Still waiting for a worker: stored but not yet predicted, failed or cancelled."""
        return (cls.pending, cls.queued)

    @property
    def is_unfinished(self) -> bool:
        return self in ImageStatus.unfinished()


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC; SQLite hands back naive datetimes that were stored as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat()


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # Carried in every login cookie; incrementing it (logout, password change) ends all of the user's sessions.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user", cascade="all, delete-orphan")


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex; the token itself is never stored
    name: Mapped[str] = mapped_column(String(120), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))

    user: Mapped[User] = relationship(back_populates="tokens")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_user_created", "user_id", "created_at"),
        Index("ix_jobs_status_created", "status", "created_at"),
        Index("ix_jobs_created", "created_at"),  # the admin's all-users history
        {"sqlite_autoincrement": True},  # ids are never reused after a purge (PostgreSQL sequences never are)
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[JobStatus] = mapped_column(Enum(JobStatus, native_enum=False, length=16), default=JobStatus.queued)
    is_open: Mapped[bool] = mapped_column(Boolean, default=False)  # still accepting files
    heatmaps: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())  # the worker draws them
    priority: Mapped[str] = mapped_column(String(8), default="normal", server_default="normal")  # broker.LANES
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    resent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # identical DICOM received again
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))

    user: Mapped[User] = relationship()
    images: Mapped[list[Image]] = relationship(back_populates="job", cascade="all, delete-orphan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status.value,
            "is_open": self.is_open,
            "heatmaps": self.heatmaps,
            "priority": self.priority,
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "resent": self.resent or 0,
            "created_at": iso(self.created_at),
            "finished_at": iso(self.finished_at),
        }


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (
        Index("ix_images_job_status", "job_id", "status"),
        Index("ix_images_status_queued", "status", "queued_at"),  # the recovery sweep
        Index("ix_images_job_sha256", "job_id", "sha256"),  # resuming an upload
        Index("ix_images_job_study", "job_id", "study_instance_uid"),  # results filtered by study
        Index("ix_images_patient_pseudonym", "patient_pseudonym"),
        Index("ix_images_processed", "processed_at"),  # drift monitoring's window of days (db/drift.py)
        {"sqlite_autoincrement": True},  # a purged image's id, and so its file names, are never reused
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255))  # the client's base name, for display only
    path: Mapped[str] = mapped_column(Text)  # relative path inside the uploaded folder, for display only
    stored_name: Mapped[Optional[str]] = mapped_column(String(64))  # generated; None if the file was refused
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)  # held-back files may declare any size
    status: Mapped[ImageStatus] = mapped_column(
        Enum(ImageStatus, native_enum=False, length=16), default=ImageStatus.pending
    )
    error: Mapped[Optional[str]] = mapped_column(Text)
    width: Mapped[Optional[int]] = mapped_column(Integer)  # of the upload itself, before any reduction
    height: Mapped[Optional[int]] = mapped_column(Integer)
    mode: Mapped[Optional[str]] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    processed_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    sha256: Mapped[Optional[str]] = mapped_column(String(64))  # of the stored bytes; None if the file was refused
    queued_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))  # when its last message was sent
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # deliveries that started work on it
    notes: Mapped[Optional[str]] = mapped_column(Text)  # "; "-separated warnings on a predicted image (lateral view...)
    # DICOM uploads only (dicomio/prepare.py), as the stored (de-identified unless RADBATCH_DEIDENTIFY=false) file says.
    study_instance_uid: Mapped[Optional[str]] = mapped_column(String(64))
    series_instance_uid: Mapped[Optional[str]] = mapped_column(String(64))
    sop_instance_uid: Mapped[Optional[str]] = mapped_column(String(64))
    accession_number: Mapped[Optional[str]] = mapped_column(String(64))
    study_date: Mapped[Optional[str]] = mapped_column(String(16))  # DICOM DA, YYYYMMDD
    view_position: Mapped[Optional[str]] = mapped_column(String(32))
    photometric_interpretation: Mapped[Optional[str]] = mapped_column(String(32))
    bits_stored: Mapped[Optional[int]] = mapped_column(Integer)
    transfer_syntax_uid: Mapped[Optional[str]] = mapped_column(String(64))
    pixel_spacing_row_mm: Mapped[Optional[float]] = mapped_column(Float)
    pixel_spacing_column_mm: Mapped[Optional[float]] = mapped_column(Float)
    patient_pseudonym: Mapped[Optional[str]] = mapped_column(String(64))  # HMAC-SHA256 of PatientID
    patient_id: Mapped[Optional[str]] = mapped_column(String(64))  # only with RADBATCH_DEIDENTIFY=false
    patient_name: Mapped[Optional[str]] = mapped_column(String(255))  # only with RADBATCH_DEIDENTIFY=false
    modality: Mapped[Optional[str]] = mapped_column(String(16))  # DICOM Modality (DX, CR...); None for other formats
    # the model input's gray-level mean and standard deviation after preprocessing, for drift monitoring
    pixel_mean: Mapped[Optional[float]] = mapped_column(Float)
    pixel_std: Mapped[Optional[float]] = mapped_column(Float)

    job: Mapped[Job] = relationship(back_populates="images")
    predictions: Mapped[list[Prediction]] = relationship(back_populates="image", cascade="all, delete-orphan")

    def set_columns(self, values: Mapping[str, Any]) -> None:
        """Set columns by name; a string longer than its column (a malformed file) is cut rather than failing."""
        for name, value in values.items():
            length = getattr(Image.__table__.c[name].type, "length", None)
            setattr(self, name, value[:length] if length and isinstance(value, str) else value)


NOTE_SEPARATOR = "; "


def join_notes(notes: Iterable[str]) -> str | None:
    """Notes for an image's `notes` column, each once, in order."""
    return NOTE_SEPARATOR.join(dict.fromkeys(note for note in notes if note)) or None


def split_notes(text: str | None) -> list[str]:
    """The notes of an image's `notes` column, as `join_notes` wrote them."""
    return [note for note in (text or "").split(NOTE_SEPARATOR) if note]


class ModelOutput:
    """The columns of one model's output for one image: served (`Prediction`) or shadow (db.shadow)."""

    model_name: Mapped[str] = mapped_column(String(32))
    model_version: Mapped[str] = mapped_column(String(64))
    probability: Mapped[float] = mapped_column(Float)  # calibrated probability of disease
    label: Mapped[str] = mapped_column(String(16))  # "healthy" | "disease"
    threshold: Mapped[float] = mapped_column(Float)
    # the disease rate probability and threshold are expressed at (RADBATCH_PREVALENCE, else the model's trained
    # one); None for predictions stored before it was recorded
    prevalence: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Prediction(ModelOutput, Base):
    """One served model's output for one image; an ensemble is stored as a model of its own. `headline` marks the
    row of the catalogue's headline model (models/catalogue.py), the one a study's result is taken from."""

    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("image_id", "model_name", name="uq_predictions_image_model"),
        Index("ix_predictions_model_label", "model_name", "label"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    headline: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    image: Mapped[Image] = relationship(back_populates="predictions")


def outputs_by_image(
    session: Session, key: InstrumentedAttribute[str], image_ids: list[int]
) -> dict[int, dict[str, dict[str, Any]]]:
    """A per-image output table's rows for these images in one query, as {image_id: {key: {...}}} keyed by
    `key` (Prediction.model_name, FindingPrediction.finding) in its order."""
    found: dict[int, dict[str, dict[str, Any]]] = {}
    if not image_ids:
        return found
    table = key.class_
    query = select(table).where(table.image_id.in_(image_ids)).order_by(table.image_id, key)
    for row in session.scalars(query):
        found.setdefault(row.image_id, {})[getattr(row, key.key)] = {
            "probability": row.probability,
            "label": row.label,
            "threshold": row.threshold,
            "prevalence": row.prevalence,
            "model_version": row.model_version,
        } | ({"headline": row.headline} if key.key == "model_name" else {})
    return found


class IdempotencyKey(Base):
    """The first successful response to a request sent with an `Idempotency-Key` header, replayed to its retries."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_key"),
        Index("ix_idempotency_keys_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    job_id: Mapped[Optional[int]] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)  # dies with it
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of the method, path, form fields and file contents
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[str] = mapped_column(Text)  # the JSON body
    location: Mapped[Optional[str]] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
