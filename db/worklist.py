"""The triage worklist: finished studies nobody has reviewed yet, most suspicious first (the ensemble's study
probability, db/studies.py: the maximum over frontal images), with filters for study date, source and job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from db.jobs import visible_jobs
from db.models import Image, ImageStatus, Job, Prediction, User
from db.reviews import latest_reviews
from db.studies import frontal_view


@dataclass(frozen=True)
class WorklistFilter:
    date_from: str = ""  # YYYYMMDD, study date
    date_to: str = ""
    source: str = ""  # the calling AE title or retrieval source in the job's name ("DICOM from X", "Retrieval from X")
    job_id: int | None = None


def worklist(session: Session, user: User, flt: WorklistFilter) -> list[dict[str, Any]]:
    ensemble = and_(Prediction.image_id == Image.id, Prediction.headline.is_(True))
    query = (
        select(Image.job_id, Image.study_instance_uid, Image.status, Image.view_position, Image.notes)
        .add_columns(Image.accession_number, Image.study_date, Job.name, Prediction.probability, Prediction.threshold)
        .join(Job, Job.id == Image.job_id)
        .outerjoin(Prediction, ensemble)
        .where(Image.study_instance_uid.is_not(None))
        .order_by(Image.id)
    )
    query = visible_jobs(query, user)
    if flt.job_id is not None:
        query = query.where(Image.job_id == flt.job_id)
    if flt.date_from:
        query = query.where(Image.study_date >= flt.date_from)
    if flt.date_to:
        query = query.where(Image.study_date <= flt.date_to)
    if flt.source:
        query = query.where(Job.name.contains(f" from {flt.source} at ", autoescape=True))
    studies: dict[tuple[int, str], dict[str, Any]] = {}
    for job_id, uid, status, view, notes, accession, date, job_name, probability, threshold in session.execute(query):
        item = studies.setdefault(
            (job_id, uid),
            {
                "job_id": job_id,
                "job_name": job_name,
                "study_instance_uid": uid,
                "accession_number": accession,
                "study_date": date,
                "views": [],
                "images": 0,
                "waiting": 0,
                "probability": None,
                "threshold": None,
            },
        )
        item["images"] += 1
        item["views"].append(view or "unknown")
        item["waiting"] += status in ImageStatus.unfinished()
        counted = status == ImageStatus.done and probability is not None and frontal_view(view, notes)
        if counted and (item["probability"] is None or probability > item["probability"]):
            item["probability"], item["threshold"] = probability, threshold
    reviewed = latest_reviews(session, sorted({job_id for job_id, _ in studies}))
    items = [item for key, item in studies.items() if not item.pop("waiting") and key not in reviewed]
    for item in items:
        item["views"] = list(dict.fromkeys(item["views"]))
        p, t = item["probability"], item["threshold"]
        item["label"] = None if p is None else ("disease" if p >= t else "healthy")
    return sorted(items, key=lambda i: (i["probability"] is None, -(i["probability"] or 0), i["job_id"]))
