"""Study-level results: a DICOM study's images (grouped by StudyInstanceUID) and one result for the study.

The study probability is the headline model's (the catalogue's, models/catalogue.py: the ensemble as shipped; the
worker marks its rows `headline`) probability of disease, the MAXIMUM over the study's predicted FRONTAL
(PA/AP, or no view recorded) images: a study is as suspicious as its most suspicious frontal image. Lateral and
oblique views are predicted and listed, flagged, but never counted, because the models were trained on frontal
views. The study label compares that maximum with the headline model's threshold (the one the image of the maximum was
scored with). Findings are the served (validated) ones the worker stored, each the maximum over the same frontal
images, present when at or above its own threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.findings import findings_for
from db.jobs import visible_jobs
from db.models import Image, ImageStatus, Job, Prediction, User, outputs_by_image, split_notes
from db.reviews import latest_reviews
from dicomio.checks import LATERAL_VIEWS, OBLIQUE_VIEWS
from dicomio.deidentify import accession_pseudonym

OUTPUT_CHUNK = 500
METHOD = (
    "the maximum of the headline model's probability of disease over the study's predicted frontal (PA/AP) images; "
    "lateral and oblique views are shown but not counted (the models were trained on frontal views)"
)
NON_FRONTAL_NOTES = ("lateral view", "oblique view")


def is_frontal(image: Image) -> bool:
    """PA/AP or no view recorded, and not flagged lateral or oblique on ingest."""
    return frontal_view(image.view_position, image.notes)


def frontal_view(view_position: str | None, notes: str | None) -> bool:
    view = (view_position or "").strip().upper()
    if view in LATERAL_VIEWS or view in OBLIQUE_VIEWS:
        return False
    return not any(note.startswith(NON_FRONTAL_NOTES) for note in split_notes(notes))


def job_study_images(session: Session, job_id: int, study_uid: str) -> list[Image]:
    """The study's images in one job (what a forwarded report covers), oldest first, each instance once."""
    query = select(Image).where(Image.job_id == job_id, Image.study_instance_uid == study_uid).order_by(Image.id)
    return _one_per_instance(session.scalars(query))


def visible_study_images(session: Session, user: User, study_uid: str) -> list[Image]:
    """The study's images in the caller's jobs (every job for an admin), oldest first; an instance sent twice
    counts once (its newest predicted copy)."""
    query = visible_jobs(
        select(Image).join(Job, Job.id == Image.job_id).where(Image.study_instance_uid == study_uid), user
    )
    return _one_per_instance(session.scalars(query.order_by(Image.id)))


def _one_per_instance(images: Iterable[Image]) -> list[Image]:
    kept: dict[str, Image] = {}
    for image in images:
        key = image.sop_instance_uid or f"image-{image.id}"
        if key not in kept or image.status == ImageStatus.done or kept[key].status != ImageStatus.done:
            kept[key] = image
    return sorted(kept.values(), key=lambda image: image.id)


def job_studies_page(session: Session, job_id: int, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """One page of a job's studies, summarised, in the order their first image arrived; and how many there are."""
    first_seen = (
        select(Image.study_instance_uid, func.min(Image.id).label("first_image"))
        .where(Image.job_id == job_id, Image.study_instance_uid.is_not(None))
        .group_by(Image.study_instance_uid)
    )
    total = session.scalar(select(func.count()).select_from(first_seen.subquery())) or 0
    ordered = first_seen.order_by(func.min(Image.id)).limit(limit).offset(offset)
    uids = [uid for uid, _ in session.execute(ordered)]
    grouped: dict[str, list[Image]] = {uid: [] for uid in uids}
    images = select(Image).where(Image.job_id == job_id, Image.study_instance_uid.in_(uids)).order_by(Image.id)
    for image in session.scalars(images):
        grouped[image.study_instance_uid].append(image)
    return summarise_many(session, [_one_per_instance(group) for group in grouped.values()]), total


def studies_by_accession(session: Session, user: User, accession: str, secret: str) -> list[str]:
    """StudyInstanceUIDs whose stored accession is `accession` as the site knows it: kept as sent (no
    de-identification) or its keyed pseudonym (de-identification on)."""
    candidates = {accession, accession_pseudonym(accession, secret)}
    query = visible_jobs(
        select(Image.study_instance_uid)
        .join(Job, Job.id == Image.job_id)
        .where(Image.accession_number.in_(candidates)),
        user,
    )
    return sorted({uid for uid in session.scalars(query.distinct()) if uid})


def study_results_of_job(session: Session, job_id: int) -> dict[str, tuple[float, str]]:
    """StudyInstanceUID -> (study probability, label) for every study of the job with a predicted frontal image,
    in one query (the CSV's study columns on any size of job)."""
    query = (
        select(Image.study_instance_uid, Image.view_position, Image.notes)
        .add_columns(Prediction.probability, Prediction.threshold)
        .join(Prediction, Prediction.image_id == Image.id)
        .where(Image.job_id == job_id, Image.status == ImageStatus.done, Prediction.headline.is_(True))
        .where(Image.study_instance_uid.is_not(None))
    )
    best: dict[str, tuple[float, float]] = {}
    for uid, view, notes, probability, threshold in session.execute(query):
        if frontal_view(view, notes) and (uid not in best or probability > best[uid][0]):
            best[uid] = (probability, threshold)
    return {uid: (p, "disease" if p >= t else "healthy") for uid, (p, t) in best.items()}


def study_cells_of_job(session: Session, job_id: int) -> dict[str, tuple]:
    """StudyInstanceUID -> (study probability, label, review verdict, reviewed label, review comment) for the CSV."""
    results = study_results_of_job(session, job_id)
    reviews = {uid: review for (_, uid), review in latest_reviews(session, [job_id]).items()}
    cells = {}
    for uid in set(results) | set(reviews):
        probability, label = results.get(uid, ("", ""))
        review = reviews.get(uid)
        reviewed = (review.verdict, review.label or "", review.comment or "") if review else ("", "", "")
        cells[uid] = (probability, label, *reviewed)
    return cells


def summarise_many(session: Session, studies: Sequence[list[Image]]) -> list[dict[str, Any]]:
    """Summaries of several studies' images, with two queries per 500 images for all their outputs."""
    ids = [image.id for images in studies for image in images]
    predictions: dict[int, dict[str, dict]] = {}
    findings: dict[int, dict[str, dict]] = {}
    for start in range(0, len(ids), OUTPUT_CHUNK):
        chunk = ids[start : start + OUTPUT_CHUNK]
        predictions |= outputs_by_image(session, Prediction.model_name, chunk)
        findings |= findings_for(session, chunk)
    reviews = latest_reviews(session, sorted({image.job_id for images in studies for image in images}))
    summaries = [summarise(images, predictions, findings) for images in studies]
    for summary in summaries:
        found = [reviews.get((job_id, summary["study_instance_uid"])) for job_id in summary["job_ids"]]
        newest = max((review for review in found if review), key=lambda review: review.id, default=None)
        summary["review"] = newest.to_dict() if newest else None
    return summaries


def summarise(
    images: list[Image], predictions: dict[int, dict[str, dict]], findings: dict[int, dict[str, dict]]
) -> dict[str, Any]:
    """The study-level result of one study's images (see the module's docstring)."""
    first = images[0]
    frontal_done = [i for i in images if is_frontal(i) and i.status == ImageStatus.done and _ensemble(predictions, i)]
    unfinished = sum(image.status.is_unfinished for image in images)
    return {
        "study_instance_uid": first.study_instance_uid,
        "accession_number": next((i.accession_number for i in images if i.accession_number), None),
        "study_date": next((i.study_date for i in images if i.study_date), None),
        "patient_pseudonym": first.patient_pseudonym,
        "patient_id": first.patient_id,  # these two only with RADBATCH_DEIDENTIFY=false
        "patient_name": first.patient_name,
        "views": list(dict.fromkeys(image.view_position or "unknown" for image in images)),
        "status": "in progress" if unfinished else "done",
        "job_ids": sorted({image.job_id for image in images}),
        "result": _study_result(frontal_done, predictions, images),
        "models": _model_results(frontal_done, predictions),
        "findings": _study_findings(frontal_done, findings),
        "images": [_image_entry(image, predictions) for image in images],
    }


def _headline_name(predictions: dict[int, dict[str, dict]], image: Image) -> str | None:
    return next((name for name, p in predictions.get(image.id, {}).items() if p.get("headline")), None)


def _ensemble(predictions: dict[int, dict[str, dict]], image: Image) -> dict[str, Any] | None:
    """The image's headline prediction (the row the worker marked), if any."""
    name = _headline_name(predictions, image)
    return predictions[image.id][name] if name else None


def _study_result(frontal: list[Image], predictions: dict[int, dict[str, dict]], images: list[Image]) -> dict[str, Any]:
    excluded = [image.id for image in images if not is_frontal(image)]
    if not frontal:
        reason = "no frontal image has been predicted yet" if any(map(is_frontal, images)) else "no frontal image"
        return {"model": None, "probability": None, "label": None, "method": METHOD, "reason": reason}
    top = max(frontal, key=lambda image: _ensemble(predictions, image)["probability"])
    best = _ensemble(predictions, top)
    label = "disease" if best["probability"] >= best["threshold"] else "healthy"
    return {
        "model": _headline_name(predictions, top),
        "model_version": best["model_version"],
        "probability": best["probability"],
        "threshold": best["threshold"],
        "label": label,
        "method": METHOD,
        "from_image_id": top.id,
        "counted_image_ids": [image.id for image in frontal],
        "not_counted_image_ids": excluded,
    }


def _model_results(frontal: list[Image], predictions: dict[int, dict[str, dict]]) -> dict[str, dict[str, Any]]:
    """Each model's study-level result by the same rule as the ensemble's: its maximum over the frontal images."""
    models: dict[str, dict[str, Any]] = {}
    for image in frontal:
        for name, prediction in predictions.get(image.id, {}).items():
            if name not in models or prediction["probability"] > models[name]["probability"]:
                label = "disease" if prediction["probability"] >= prediction["threshold"] else "healthy"
                models[name] = {
                    "probability": prediction["probability"],
                    "threshold": prediction["threshold"],
                    "label": label,
                    "model_version": prediction["model_version"],
                }
    return models


def _study_findings(frontal: list[Image], findings: dict[int, dict[str, dict]]) -> dict[str, dict[str, Any]]:
    study: dict[str, dict[str, Any]] = {}
    for image in frontal:
        for name, finding in findings.get(image.id, {}).items():
            if name not in study or finding["probability"] > study[name]["probability"]:
                present = finding["probability"] >= finding["threshold"]
                study[name] = {
                    "probability": finding["probability"],
                    "threshold": finding["threshold"],
                    "label": "present" if present else "absent",
                    "from_image_id": image.id,
                }
    return dict(sorted(study.items()))


def _image_entry(image: Image, predictions: dict[int, dict[str, dict]]) -> dict[str, Any]:
    ensemble = _ensemble(predictions, image) or {}
    return {
        "id": image.id,
        "job_id": image.job_id,
        "sop_instance_uid": image.sop_instance_uid,
        "series_instance_uid": image.series_instance_uid,
        "view_position": image.view_position,
        "frontal": is_frontal(image),
        "status": image.status.value,
        "error": image.error,
        "notes": split_notes(image.notes),
        "probability": ensemble.get("probability"),
        "label": ensemble.get("label"),
        "viewer_url": f"/jobs/{image.job_id}/images/{image.id}",
        "sr_url": f"/api/v1/images/{image.id}/sr.dcm" if image.status == ImageStatus.done else None,
    }
