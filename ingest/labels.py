"""A site's labels CSV for a job: parse it and match each row to one of the job's images.

Columns `path` and `label` (healthy/disease, or 0/1), any case; optional 0/1 columns named after NIH
ChestX-ray14 findings (`Effusion`, ...) are kept for per-finding evaluation; other columns are ignored and
never stored (they may hold patient data). A row matches the image whose relative path equals its path;
failing that, the one image whose path ends with it (so `a.png` or `sub/a.png` finds `study/sub/a.png`),
or whose path it ends with. Every row that cannot be used is kept with the reason, so nothing is dropped.
"""

from __future__ import annotations

import bisect
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
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        try:
            headers = [h for h in (reader.fieldnames or []) if h is not None]
        except csv.Error as error:
            raise LabelFileError(f"the labels CSV is malformed in its header line: {error}") from None
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
    """The job's images by relative path, for the three ways a CSV path may name one; each lookup costs time in
    proportion to the CSV path's length (times log n), whatever the depth of the paths, and the index holds each
    image path once (a suffix table would grow with depth squared)."""

    _MODULUS = (1 << 61) - 1

    def __init__(self, images: list[tuple[int, str]]):
        self.by_path: dict[str, list[int]] = {}
        self.by_hash: dict[tuple[int, int], list[tuple[int, str]]] = {}
        for image_id, path in images:
            self.by_path.setdefault(path, []).append(image_id)
            components = path.split("/")
            key = (self._suffix_hashes(components)[-1], len(components))
            self.by_hash.setdefault(key, []).append((image_id, path))
        ordered = sorted((path[::-1], image_id) for image_id, path in images)
        self.reversed_paths = [reversed_path for reversed_path, _ in ordered]
        self.reversed_ids = [image_id for _, image_id in ordered]

    @classmethod
    def _suffix_hashes(cls, components: list[str]) -> list[int]:
        """A hash of the last k components, for k = 1 .. len(components), each in O(1) from the one before."""
        hashes, running = [], 0
        for component in reversed(components):
            running = (running * 1_000_003 + (hash(component) & 0xFFFFFFFFFFFF) + 1) % cls._MODULUS
            hashes.append(running)
        return hashes

    def _ending_with(self, path: str) -> list[int]:
        """Images whose path ends with `/path`: their reversed paths start with the reversed `path/`."""
        prefix = path[::-1] + "/"
        low = bisect.bisect_left(self.reversed_paths, prefix)
        high = bisect.bisect_left(self.reversed_paths, prefix[:-1] + "0")  # "0" sorts right after "/"
        return self.reversed_ids[low:high]

    def _ended_by(self, path: str) -> list[int]:
        """Images whose whole path is the longest proper trailing part of `path` that any image has."""
        components = path.split("/")
        hashes = self._suffix_hashes(components)
        for length in range(len(components) - 1, 0, -1):
            found = self.by_hash.get((hashes[length - 1], length), [])
            matching = [image_id for image_id, image_path in found if path.endswith("/" + image_path)]
            if matching:
                return matching
        return []

    def find(self, path: str) -> tuple[int | None, str | None]:
        """(image id, None) or (None, why not)."""
        for find in (self.by_path.get, self._ending_with, self._ended_by):
            found = find(path) or []
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
