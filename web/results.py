"""A job's per-image results: filtering, sorting and pagination in SQL, predictions for a page in one query.

Which models there are is the catalogue's (models/catalogue.py): the filters and the CSV columns follow its served
models, whatever they are called; shadow models never appear here (their rows are in another table).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Mapping

from flask import abort, has_app_context
from sqlalchemy import Select, and_, exists, func, select
from sqlalchemy.orm import Session, aliased

from db.findings import findings_for
from db.models import Image, ImageStatus, Prediction, outputs_by_image
from models.catalogue import Catalogue
from web.extensions import get_catalogue, get_settings
from web.query_args import PageArgs, choice, enum_choice, flag

LABELS = ("healthy", "disease")
SORTS = ("id", "path", "probability")
MAX_QUERY = 200
_CSV_CHUNK = 1000


@dataclass(frozen=True)
class ResultFilter:
    status: ImageStatus | None = None
    label: str | None = None
    model: str = ""  # whose label `label` filters on and whose probability `sort=probability` uses ("": headline)
    disagree: bool = False  # the members of the served ensemble disagree (any two of their labels differ)
    sort: str = "id"
    order: str = "asc"
    q: str = ""  # a substring of the path, case-insensitive
    study: str = ""  # a DICOM StudyInstanceUID: only that study's images
    members: tuple[str, ...] = ()  # the served ensemble's members, for `disagree` (from the catalogue)

    def as_args(self) -> dict[str, str]:
        """The non-default values, as query-string arguments (for links and the CSV export)."""
        args = {
            "status": self.status.value if self.status else "",
            "label": self.label or "",
            "model": self.model,
            "disagree": "1" if self.disagree else "",
            "sort": "" if self.sort == "id" else self.sort,
            "order": "" if self.order == "asc" else self.order,
            "q": self.q,
            "study": self.study,
        }
        return {key: value for key, value in args.items() if value}


def search_text(args: Mapping[str, str]) -> str:
    q = (args.get("q") or "").strip()
    if len(q) > MAX_QUERY:
        abort(400, f"q (a part of the file path to search for) may be at most {MAX_QUERY} characters")
    return q


def parse_filter(args: Mapping[str, str], catalogue: Catalogue | None = None) -> ResultFilter:
    catalogue = catalogue or get_catalogue()
    ensemble = catalogue.ensemble
    return ResultFilter(
        status=enum_choice(args, "status", ImageStatus),
        label=choice(args, "label", LABELS, None),
        model=choice(args, "model", catalogue.served_names, "") or "",
        members=ensemble.members if ensemble else (),
        disagree=flag(args, "disagree"),
        sort=choice(args, "sort", SORTS, "id") or "id",
        order=choice(args, "order", ("asc", "desc"), "asc") or "asc",
        q=search_text(args),
        study=study_uid(args),
    )


def study_uid(args: Mapping[str, str]) -> str:
    study = (args.get("study") or "").strip()
    if len(study) > 64 or any(ch not in "0123456789." for ch in study):
        abort(400, "study must be a DICOM Study Instance UID: digits and dots, at most 64 characters")
    return study


def _filtered(job_id: int, flt: ResultFilter) -> Select:
    query = select(Image).where(Image.job_id == job_id)
    if flt.status is not None:
        query = query.where(Image.status == flt.status)
    if flt.q:
        query = query.where(func.lower(Image.path).contains(flt.q.lower(), autoescape=True))
    if flt.study:
        query = query.where(Image.study_instance_uid == flt.study)
    if flt.label is not None:
        labelled = aliased(Prediction)
        query = query.where(
            exists().where(labelled.image_id == Image.id, _whose(labelled, flt), labelled.label == flt.label)
        )
    if flt.disagree:
        one, other = aliased(Prediction), aliased(Prediction)
        query = query.where(
            exists().where(
                one.image_id == Image.id,
                one.model_name.in_(flt.members),
                other.image_id == Image.id,
                other.model_name.in_(flt.members),
                one.label != other.label,
            )
        )
    return query


def _whose(prediction: Any, flt: ResultFilter) -> Any:
    """The prediction row `model=` names, or the headline row when it names none."""
    return prediction.model_name == flt.model if flt.model else prediction.headline.is_(True)


def _ordered(query: Select, flt: ResultFilter) -> Select:
    descending = flt.order == "desc"
    if flt.sort == "path":
        return query.order_by(Image.path.desc() if descending else Image.path, Image.id)
    if flt.sort == "probability":
        sort_by = aliased(Prediction)
        query = query.outerjoin(sort_by, and_(sort_by.image_id == Image.id, _whose(sort_by, flt)))
        probability = sort_by.probability.desc() if descending else sort_by.probability
        return query.order_by(sort_by.probability.is_(None), probability, Image.id)  # unscored images last
    return query.order_by(Image.id.desc() if descending else Image.id)


def predictions_for(session: Session, image_ids: list[int]) -> dict[int, dict[str, dict[str, Any]]]:
    """Every prediction of these images in one query, as {image_id: {model_name: {...}}}."""
    return outputs_by_image(session, Prediction.model_name, image_ids)


def dicom_to_dict(image: Image) -> dict[str, Any] | None:
    """The DICOM metadata kept for the image (None for other formats); patient id/name only without de-id."""
    if image.sop_instance_uid is None and image.transfer_syntax_uid is None:
        return None
    spacing = None
    if image.pixel_spacing_row_mm is not None:
        spacing = [image.pixel_spacing_row_mm, image.pixel_spacing_column_mm]
    return {
        "study_instance_uid": image.study_instance_uid,
        "series_instance_uid": image.series_instance_uid,
        "sop_instance_uid": image.sop_instance_uid,
        "accession_number": image.accession_number,
        "study_date": image.study_date,
        "view_position": image.view_position,
        "photometric_interpretation": image.photometric_interpretation,
        "bits_stored": image.bits_stored,
        "transfer_syntax_uid": image.transfer_syntax_uid,
        "pixel_spacing_mm": spacing,
        "patient_pseudonym": image.patient_pseudonym,
        "patient_id": image.patient_id,
        "patient_name": image.patient_name,
        "sr_url": f"/api/v1/images/{image.id}/sr.dcm" if image.status == ImageStatus.done else None,
    }


def image_to_dict(
    image: Image, predictions: dict[str, dict[str, Any]], findings: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "id": image.id,
        "filename": image.filename,
        "path": image.path,
        "status": image.status.value,
        "error": image.error,
        "notes": [note for note in (image.notes or "").split("; ") if note],
        "width": image.width,
        "height": image.height,
        "study_instance_uid": image.study_instance_uid,
        "accession_number": image.accession_number,
        "view_position": image.view_position,
        "dicom": dicom_to_dict(image),
        "predictions": predictions,
        "findings": findings or {},
    }


def show_unvalidated_findings() -> bool:
    """RADBATCH_SHOW_UNVALIDATED_FINDINGS as the app was started with; False outside a request."""
    return has_app_context() and get_settings().show_unvalidated_findings


def with_outputs(session: Session, images: list[Image]) -> list[dict]:
    """The images as dicts with their predictions and findings: two queries whatever the count."""
    ids = [image.id for image in images]
    predictions = predictions_for(session, ids)
    findings = findings_for(session, ids, include_unvalidated=show_unvalidated_findings())
    return [image_to_dict(image, predictions.get(image.id, {}), findings.get(image.id)) for image in images]


def count_results(session: Session, job_id: int, flt: ResultFilter) -> int:
    query = _filtered(job_id, flt).with_only_columns(func.count(Image.id))
    return session.scalar(query) or 0


def page_of_images(session: Session, job_id: int, flt: ResultFilter, page: PageArgs) -> tuple[list[Image], int]:
    """One page of the filtered images (without their outputs) and the filtered total: two queries."""
    total = count_results(session, job_id, flt)
    images = list(session.scalars(_ordered(_filtered(job_id, flt), flt).limit(page.per_page).offset(page.offset)))
    return images, total


def results_page(session: Session, job_id: int, flt: ResultFilter, page: PageArgs) -> tuple[list[dict], int]:
    """One page of results and the filtered total: four queries whatever the page size."""
    images, total = page_of_images(session, job_id, flt, page)
    return with_outputs(session, images), total


def iter_results(session: Session, job_id: int, flt: ResultFilter) -> Iterator[dict]:
    """Every filtered result in order, fetched 1,000 at a time (keyset on id when sorted by id)."""
    query = _ordered(_filtered(job_id, flt), flt)
    last_id, offset = 0, 0
    while True:
        if flt.sort == "id" and flt.order == "asc":
            chunk = list(session.scalars(query.where(Image.id > last_id).limit(_CSV_CHUNK)))
        else:
            chunk = list(session.scalars(query.limit(_CSV_CHUNK).offset(offset)))
        if not chunk:
            return
        yield from with_outputs(session, chunk)
        last_id, offset = chunk[-1].id, offset + len(chunk)
        session.expunge_all()  # keep memory flat on a 100,000-image job


def _safe_cell(value: Any) -> Any:
    """Keep a spreadsheet from running a file name as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _blank_if_none(value: Any) -> Any:
    return "" if value is None else value


DICOM_CSV_COLUMNS = ["study_instance_uid", "accession_number", "view_position"]
# db/studies.py: the maximum of the ensemble over frontal views; db/reviews.py: the newest review of the study
STUDY_CSV_COLUMNS = ["study_probability", "study_label", "review_verdict", "review_label", "review_comment"]
PREDICTION_CSV_FIELDS = ("probability", "label", "threshold", "prevalence", "model_version")
CSV_HEADER = ["image_id", "path", "filename", "status", "error", "notes", *DICOM_CSV_COLUMNS, *STUDY_CSV_COLUMNS]


def csv_header(models: Sequence[str]) -> list[str]:
    """CSV_HEADER, then `<model>_<field>` for each served model (the catalogue's order) and PREDICTION_CSV_FIELDS."""
    return CSV_HEADER + [f"{model}_{field}" for model in models for field in PREDICTION_CSV_FIELDS]


def csv_lines(
    rows: Iterator[dict],
    findings: Sequence[str] = (),
    unvalidated: Sequence[str] = (),
    studies: Mapping[str, tuple] | None = None,
    models: Sequence[str] = (),
) -> Iterator[str]:
    """The CSV: `csv_header(models)` (the served models, web.extensions.get_catalogue), then one `finding_<name>`
    probability column per finding (db.findings's job_finding_names: every finding shown for any image of the
    job); a finding in `unvalidated` (shown only when RADBATCH_SHOW_UNVALIDATED_FINDINGS is on) is headed
    `finding_<name>_not_validated`. `studies` gives each study's STUDY_CSV_COLUMNS cells (db/studies.py:
    study_cells_of_job), repeated on every image of the study."""
    studies = studies or {}
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    columns = [f"finding_{name}" + ("_not_validated" if name in unvalidated else "") for name in findings]
    writer.writerow(csv_header(models) + columns)
    for count, row in enumerate(rows, start=1):
        cells = [row["id"], row["path"], row["filename"], row["status"], row["error"] or "", "; ".join(row["notes"])]
        cells += [row[column] or "" for column in DICOM_CSV_COLUMNS]
        cells += list(studies.get(row["study_instance_uid"] or "", ("",) * len(STUDY_CSV_COLUMNS)))
        for model in models:
            prediction = row["predictions"].get(model, {})
            cells += [_blank_if_none(prediction.get(key, "")) for key in PREDICTION_CSV_FIELDS]
        cells += [row["findings"].get(name, {}).get("probability", "") for name in findings]
        writer.writerow([_safe_cell(cell) for cell in cells])
        if count % 200 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
