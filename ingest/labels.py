"""A site's labels CSV for a job: parse it and match each row to one of the job's images.

Columns `path` and `label` (healthy/disease, or 0/1), any case; optional 0/1 columns named after NIH
ChestX-ray14 findings (`Effusion`, ...) are kept for per-finding evaluation; other columns are ignored and
never stored (they may hold patient data). A row matches the image whose relative path equals its path;
failing that, the one image whose path ends with it (so `a.png` or `sub/a.png` finds `study/sub/a.png`),
or whose path it ends with. Every row that cannot be used is kept with the reason, so nothing is dropped.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.labels import DISEASE, HEALTHY, LabelRow, LabelSet, replace_labels
from db.models import Image
from ingest.files import clean_relative_path

NIH_FINDINGS = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Effusion",
    "Emphysema",
    "Fibrosis",
    "Hernia",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pleural_Thickening",
    "Pneumonia",
    "Pneumothorax",
)
LABEL_WORDS = {HEALTHY: HEALTHY, "0": HEALTHY, DISEASE: DISEASE, "1": DISEASE}
_FINDING_BY_KEY = {name.lower().replace(" ", "_"): name for name in NIH_FINDINGS}


class LabelFileError(ValueError):
    """The file cannot be read as a labels CSV at all (a message for the person who sent it)."""


@dataclass(frozen=True)
class Columns:
    path: str
    label: str
    findings: dict[str, str]  # finding name -> header as written
    ignored: list[str]


def _delimiters(text: str) -> list[str]:
    """The sniffed delimiter first, then the usual ones: whichever gives a header with `path` and `label` wins."""
    try:
        sniffed = [csv.Sniffer().sniff(text[:4096], delimiters=",;\t").delimiter]
    except csv.Error:
        sniffed = []
    return sniffed + [d for d in (",", ";", "\t") if d not in sniffed]


def read_csv(data: bytes) -> tuple[Columns, list[dict[str, str]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise LabelFileError(f"the labels file is not UTF-8 text ({error.reason} at byte {error.start})") from None
    if not text.strip():
        raise LabelFileError("the labels file is empty; send a CSV with a header line 'path,label'")
    for delimiter in _delimiters(text):
        reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
        headers = [h for h in (reader.fieldnames or []) if h is not None]
        by_key = {h.strip().lower(): h for h in headers}
        if "path" in by_key and "label" in by_key:
            break
    else:
        raise LabelFileError(
            f"the labels CSV needs the columns 'path' and 'label'; its first line is {text.splitlines()[0][:120]!r}"
        )
    findings = {_FINDING_BY_KEY[k]: h for k, h in by_key.items() if k in _FINDING_BY_KEY}
    used = {by_key["path"], by_key["label"], *findings.values()}
    columns = Columns(by_key["path"], by_key["label"], findings, [h for h in headers if h not in used])
    try:
        return columns, list(reader)
    except csv.Error as error:
        raise LabelFileError(f"the labels CSV is malformed at line {reader.line_num}: {error}") from None


class ImageIndex:
    """The job's images by relative path and by every trailing part of it."""

    def __init__(self, images: list[tuple[int, str]]):
        self.by_path: dict[str, list[int]] = {}
        self.by_tail: dict[str, list[int]] = {}
        for image_id, path in images:
            self.by_path.setdefault(path, []).append(image_id)
            parts = path.split("/")
            for start in range(1, len(parts)):
                self.by_tail.setdefault("/".join(parts[start:]), []).append(image_id)

    def find(self, path: str) -> tuple[int | None, str | None]:
        """(image id, None) or (None, why not)."""
        parts = path.split("/")
        candidates = [
            self.by_path.get(path, []),
            self.by_tail.get(path, []),  # the CSV gives the end of the image's path, or only its file name
            *(self.by_path.get("/".join(parts[start:]), []) for start in range(1, len(parts))),  # ... or more
        ]
        for found in candidates:
            if len(found) == 1:
                return found[0], None
            if len(found) > 1:
                return None, f"matches {len(found)} images; give more of the path"
        return None, "no image of this job has this path or file name"


def _finding_values(row: dict[str, str], columns: Columns) -> tuple[dict[str, int], str | None]:
    values: dict[str, int] = {}
    for name, header in columns.findings.items():
        raw = (row.get(header) or "").strip()
        if raw == "":
            continue  # not labelled for this finding
        if raw not in ("0", "1"):
            return {}, f"{header} must be 0 or 1 (or empty), got {raw[:40]!r}"
        values[name] = int(raw)
    return values, None


def match_rows(columns: Columns, rows: list[dict[str, str]], index: ImageIndex) -> list[LabelRow]:
    matched: list[LabelRow] = []
    first_line: dict[int, int] = {}
    for number, row in enumerate(rows, start=2):
        raw_path = (row.get(columns.path) or "").strip()
        path = clean_relative_path(raw_path) if raw_path else ""
        label = LABEL_WORDS.get((row.get(columns.label) or "").strip().lower())
        findings, problem = _finding_values(row, columns)
        image_id = None
        if not path:
            problem = "no path"
        elif label is None:
            problem = f"label must be healthy or disease (or 0/1), got {(row.get(columns.label) or '')[:40]!r}"
        if problem is None:
            image_id, problem = index.find(path)
        if image_id is not None and image_id in first_line:
            problem, image_id = f"line {first_line[image_id]} already labels this image", None
        elif image_id is not None:
            first_line[image_id] = number
        matched.append(LabelRow(number, raw_path[:1024], image_id, label, findings or None, problem))
    return matched


def store_labels(session: Session, job_id: int, data: bytes, uploaded_by: str) -> LabelSet:
    """Parse `data`, match it to the job's images and replace the job's labels (the caller commits)."""
    columns, rows = read_csv(data)
    images = session.execute(select(Image.id, Image.path).where(Image.job_id == job_id)).all()
    matched = match_rows(columns, rows, ImageIndex([(image_id, path) for image_id, path in images]))
    return replace_labels(session, job_id, uploaded_by, matched, sorted(columns.findings), columns.ignored)
