"""What drift monitoring reads: one plain record per image predicted in a window, from the rows radbatch keeps.

Nothing is recorded for monitoring alone but each image's pixel mean and standard deviation after preprocessing
(written by the worker with its results) and its DICOM Modality. The source comes from the job's name, which every
entry point sets: the DICOM listener's "DICOM from <AE> at ...", STOW-RS's "STOW-RS from <user> at ...", a
retrieval's "Retrieval from <source> at ..."; any other job is an upload (portal, API or CLI). The daily
summaries therefore last as long as the images do: a purged job leaves them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from db.models import Image, ImageStatus, Job, Prediction

SOURCES = {"DICOM from ": "c-store", "STOW-RS from ": "stow-rs", "Retrieval from ": "retrieval"}
UPLOAD = "upload"
SIZE_BUCKETS = ((256, "<=256 px"), (1024, "257-1024 px"), (2048, "1025-2048 px"))
BYTES_BUCKETS = ((100_000, "<100 kB"), (1_000_000, "100 kB-1 MB"), (10_000_000, "1-10 MB"))
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I", "F")


@dataclass
class ImageFacts:
    image_id: int
    job_id: int
    day: date
    source: str
    format: str
    bit_depth: str
    size: str
    file_size: str
    view: str
    modality: str
    pixel_mean: float | None
    pixel_std: float | None
    probabilities: dict[str, float] = field(default_factory=dict)  # by model name, ensemble included
    prevalences: dict[str, float | None] = field(default_factory=dict)  # the prevalence each probability is at
    labels: dict[str, str] = field(default_factory=dict)


def source_of(job_name: str) -> str:
    return next((source for prefix, source in SOURCES.items() if job_name.startswith(prefix)), UPLOAD)


def _bucket(value: int | None, buckets: tuple[tuple[int, str], ...], top: str) -> str:
    if value is None:
        return "unknown"
    return next((name for limit, name in buckets if value <= limit), top)


def _format(image: Image | Row) -> str:
    if image.transfer_syntax_uid or image.sop_instance_uid:
        return "dicom"
    name = (image.filename or "").rpartition("/")[2]
    suffix = name.rpartition(".")[2].lower() if "." in name.strip(".") else ""
    return {"jpeg": "jpg", "tif": "tiff"}.get(suffix, suffix) or "unknown"


def _bit_depth(image: Image | Row) -> str:
    if image.bits_stored:
        return str(image.bits_stored)
    if image.mode:
        return "16" if image.mode in SIXTEEN_BIT_MODES else "8"
    return "unknown"


FACT_COLUMNS = (
    Image.id,
    Image.job_id,
    Image.processed_at,
    Image.filename,
    Image.transfer_syntax_uid,
    Image.sop_instance_uid,
    Image.bits_stored,
    Image.mode,
    Image.width,
    Image.height,
    Image.size_bytes,
    Image.view_position,
    Image.modality,
    Image.pixel_mean,
    Image.pixel_std,
)


def facts_of(image: Image | Row, job_name: str) -> ImageFacts:
    side = max(image.width or 0, image.height or 0) or None
    found_format = _format(image)
    return ImageFacts(
        image_id=image.id,
        job_id=image.job_id,
        day=image.processed_at.date(),
        source=source_of(job_name),
        format=found_format,
        bit_depth=_bit_depth(image),
        size=_bucket(side, SIZE_BUCKETS, ">2048 px"),
        file_size=_bucket(image.size_bytes, BYTES_BUCKETS, ">10 MB"),
        view=image.view_position.upper() if image.view_position else "unknown",
        modality=image.modality or ("unknown" if found_format == "dicom" else "none (not DICOM)"),
        pixel_mean=image.pixel_mean,
        pixel_std=image.pixel_std,
    )


def image_facts(session: Session, since: datetime, job_id: int | None = None) -> list[ImageFacts]:
    """Every image predicted since `since` (of one job, if given), oldest first, with its predictions."""
    query = (
        select(*FACT_COLUMNS, Job.name.label("job_name"))
        .join(Job, Job.id == Image.job_id)
        .where(Image.status == ImageStatus.done, Image.processed_at >= since)
        .order_by(Image.processed_at, Image.id)
    )
    if job_id is not None:
        query = query.where(Image.job_id == job_id)
    found = {row.id: facts_of(row, row.job_name) for row in session.execute(query)}
    ids = list(found)
    for start in range(0, len(ids), 5000):  # an IN list of bounded length
        chunk = ids[start : start + 5000]
        rows = session.execute(
            select(
                Prediction.image_id,
                Prediction.model_name,
                Prediction.probability,
                Prediction.label,
                Prediction.prevalence,
            ).where(Prediction.image_id.in_(chunk))
        )
        for image_id, model, probability, label, prevalence in rows:
            found[image_id].probabilities[model] = probability
            found[image_id].prevalences[model] = prevalence
            found[image_id].labels[model] = label
    return list(found.values())
