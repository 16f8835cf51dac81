"""NIH ChestX-ray14 layout: an `images/` folder plus `Data_Entry_2017.csv`.

Wang X, Peng Y, Lu L, Lu Z, Bagheri M, Summers RM. ChestX-ray8: Hospital-scale Chest
X-ray Database and Benchmarks on Weakly-Supervised Classification and Localization of
Common Thorax Diseases. IEEE CVPR 2017. Data: https://nihcc.app.box.com/v/ChestXray-NIHCC
(NIH Clinical Center). Label 0 = "No Finding" (healthy), 1 = any finding (disease).
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from models.preprocess import load_and_preprocess

log = logging.getLogger(__name__)

LABELS_CSV = "Data_Entry_2017.csv"
SOURCES_CSV = "sources.csv"
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Record:
    image: str  # NIH "Image Index", the file name
    patient: str
    label: int  # 1 = disease, 0 = No Finding
    findings: str
    view: str
    upsampled: bool  # reached us at 64 px and was upsampled (sources.csv)
    source: str = ""  # where the copy came from (sources.csv `source`, without commit and path); "" if unknown
    sex: str = ""  # NIH `Patient Gender`: "F" | "M" | "" if absent
    age: int | None = None  # NIH `Patient Age` in years; None if absent or unreadable

    def has_finding(self, finding: str) -> bool:
        return finding in self.findings.split("|")


def load_records(data_dir: Path, exclude_upsampled: bool = False) -> list[Record]:
    """One record per CSV row whose image file exists, in CSV order."""
    data_dir = Path(data_dir)
    images_dir, labels_csv = data_dir / "images", data_dir / LABELS_CSV
    for required in (images_dir, labels_csv):
        if not required.exists():
            raise FileNotFoundError(f"{required} not found: expected the NIH layout (images/ + {LABELS_CSV})")
    sources = read_sources(data_dir / SOURCES_CSV)
    records, missing = [], 0
    with labels_csv.open(newline="") as handle:
        for row in csv.DictReader(handle):
            name = row["Image Index"]
            if not (images_dir / name).exists():
                missing += 1
                continue
            records.append(
                Record(
                    image=name,
                    patient=row["Patient ID"],
                    label=int(row["Finding Labels"].strip() != "No Finding"),
                    findings=row["Finding Labels"],
                    view=row.get("View Position", ""),
                    upsampled=sources.get(name, ("", False))[1],
                    source=sources.get(name, ("", False))[0],
                    sex=(row.get("Patient Gender") or "").strip().upper(),
                    age=parse_age(row.get("Patient Age") or ""),
                )
            )
    if missing:
        log.warning("%d rows of %s have no image file and were skipped", missing, labels_csv)
    if exclude_upsampled:
        records = [r for r in records if not r.upsampled]
    return records


def parse_age(value: str) -> int | None:
    """NIH ages are years, written `57` or, in some copies, `057Y`; anything else is None."""
    digits = value.strip().upper().removesuffix("Y")
    return int(digits) if digits.isdigit() else None


def source_name(source: str) -> str:
    """`github:owner/repo@commit:path` -> `github:owner/repo`: the copy an image came from."""
    return source.split("@", 1)[0]


def read_sources(sources_csv: Path) -> dict[str, tuple[str, bool]]:
    """{image: (source, upsampled from 64 px)} from sources.csv; empty if the folder has none."""
    if not sources_csv.exists():
        return {}
    with sources_csv.open(newline="") as handle:
        return {
            row["Image Index"]: (source_name(row.get("source") or ""), row.get("upsampled_from_64px") == "1")
            for row in csv.DictReader(handle)
        }


def patient_split(records: list[Record], seed: int = 42, test_fraction: float = 0.15, val_fraction: float = 0.15):
    """{image: split}: patient-wise (no patient in two splits), stratified by label as far as groups allow."""
    labels = np.array([r.label for r in records])
    groups = np.array([r.patient for r in records])
    indices = np.arange(len(records))

    def take_one_fold(idx: np.ndarray, fraction: float, fold_seed: int) -> tuple[np.ndarray, np.ndarray]:
        splitter = StratifiedGroupKFold(n_splits=round(1 / fraction), shuffle=True, random_state=fold_seed)
        rest, held = next(splitter.split(idx, labels[idx], groups[idx]))
        return idx[rest], idx[held]

    train_val, test = take_one_fold(indices, test_fraction, seed)
    train, validation = take_one_fold(train_val, val_fraction / (1 - test_fraction), seed + 1)
    assignment = {}
    for split, idx in (("train", train), ("validation", validation), ("test", test)):
        for i in idx:
            assignment[records[i].image] = split
    return assignment


def write_split(path: Path, records: list[Record], assignment: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "patient", "label", "split"])
        for r in records:
            writer.writerow([r.image, r.patient, r.label, assignment[r.image]])


def read_split(path: Path) -> dict[str, str]:
    with Path(path).open(newline="") as handle:
        return {row["image"]: row["split"] for row in csv.DictReader(handle)}


def load_or_create_split(path: Path, records: list[Record], seed: int = 42) -> dict[str, str]:
    """Read the split file if it exists (reproducible); otherwise create it and write it there."""
    path = Path(path)
    if path.exists():
        assignment = read_split(path)
        unknown = [r.image for r in records if r.image not in assignment]
        if unknown:
            raise ValueError(f"{len(unknown)} images (e.g. {unknown[0]}) are not in split file {path}")
        return assignment
    assignment = patient_split(records, seed=seed)
    write_split(path, records, assignment)
    log.info("wrote a new patient-wise split to %s", path)
    return assignment


def split_report(records: list[Record], assignment: dict[str, str]) -> dict:
    """Counts per split: images, patients, disease, healthy, upsampled."""
    report = {}
    for split in SPLITS:
        chosen = [r for r in records if assignment.get(r.image) == split]
        report[split] = {
            "images": len(chosen),
            "patients": len({r.patient for r in chosen}),
            "disease": sum(r.label for r in chosen),
            "healthy": sum(1 - r.label for r in chosen),
            "upsampled_from_64px": sum(r.upsampled for r in chosen),
            "views": dict(Counter(r.view for r in chosen)),
        }
    return report


def load_arrays(
    data_dir: Path, records: list[Record], size: int, channels: int, cache_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed images (n, size, size, channels) and labels (n,), through models.preprocess."""
    images_dir = Path(data_dir) / "images"
    cache = None
    if cache_dir is not None:
        names = "|".join(r.image for r in records)
        key = hashlib.sha256(f"{Path(data_dir).resolve()}|{size}|{names}".encode()).hexdigest()[:16]
        cache = Path(cache_dir) / f"images-{key}.npy"
        if cache.exists():
            gray = np.load(cache)
            return np.repeat(gray, channels, axis=-1), np.array([r.label for r in records], dtype=np.float32)
    with ThreadPoolExecutor(max_workers=4) as pool:
        planes = list(pool.map(lambda r: load_and_preprocess(images_dir / r.image, size=size, channels=1), records))
    gray = np.stack(planes) if planes else np.zeros((0, size, size, 1), np.float32)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, gray)
    return np.repeat(gray, channels, axis=-1), np.array([r.label for r in records], dtype=np.float32)
