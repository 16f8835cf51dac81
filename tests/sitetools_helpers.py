"""Helpers shared by the labels, evaluation, retention, audit and webhook tests."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from db.jobs import refresh_job
from db.models import Image, ImageStatus, Prediction
from db.session import session_scope
from tests.web_fixtures import png_bytes, upload

THRESHOLDS = {"cnn": 0.4, "unet": 0.5, "ensemble": 0.45}


def create_job(client, headers: dict[str, str], paths: list[str], **form) -> int:
    files = [upload(path, png_bytes()) for path in paths]
    response = client.post("/api/v1/jobs", data={"files": files, **form}, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["id"]


def image_ids(sessions: sessionmaker[Session], job_id: int) -> dict[str, int]:
    with session_scope(sessions) as session:
        return dict(session.execute(select(Image.path, Image.id).where(Image.job_id == job_id)).all())


def predict(sessions: sessionmaker[Session], job_id: int, scores: dict[str, tuple[float, float]]) -> None:
    """Store predictions as a worker would: {path: (cnn, unet)}, the ensemble their mean; those images become done."""
    ids = image_ids(sessions, job_id)
    with session_scope(sessions) as session:
        for path, (cnn, unet) in scores.items():
            for name, p in (("cnn", cnn), ("unet", unet), ("ensemble", (cnn + unet) / 2)):
                label = "disease" if p >= THRESHOLDS[name] else "healthy"
                session.add(
                    Prediction(
                        image_id=ids[path],
                        model_name=name,
                        headline=name == "ensemble",  # the worker marks the headline model's row
                        model_version=f"{name}-test",
                        probability=p,
                        label=label,
                        threshold=THRESHOLDS[name],
                    )
                )
        session.execute(update(Image).where(Image.id.in_([ids[p] for p in scores])).values(status=ImageStatus.done))
        refresh_job(session, job_id)
