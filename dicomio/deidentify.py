"""De-identification of a DICOM data set on ingest, and the keyed pseudonym of its patient.

The PS3.15 Basic Application Level Confidentiality Profile (Table E.1-1) comes from the
dicom-anonymizer package (Kitware, BSD-3-Clause), whose tag table is generated from the standard
(edition 2026c): names, birth date, IDs, addresses, institution, physicians, operators and free-text
descriptions and comments are removed, emptied or replaced, and private tags are removed. On top:

* Retain UIDs Option (DCM 113110): Study, Series and SOP Instance UIDs (and every other UID) are
  kept, so results can be grouped by study, an SR can reference the image it reports on, and the
  PACS can match both. UIDs are opaque identifiers assigned by the modality; keeping them is what the
  option exists for, and it is declared in the data set as the profile requires.
* Dates and times the profile says to empty become zero-length (the library writes 00010101).
* The source AE titles in the file meta header are removed.
* PatientID becomes a keyed pseudonym, HMAC-SHA256 of the original ID under the application's secret
  key, so one patient's images still group together and nobody without the key can reverse it.
* AccessionNumber becomes a keyed pseudonym too ("RB" and 14 hex digits of HMAC-SHA256 of "accession:" and
  the number, 16 characters as its VR allows), the same for every image of a study, so the job page can list
  studies by accession and the site can match one back: `GET /api/v1/studies?accession=<the site's number>`
  computes the pseudonym with the same key.
* PatientIdentityRemoved = YES, DeidentificationMethod and DeidentificationMethodCodeSequence
  (113100 Basic Application Confidentiality Profile, 113110 Retain UIDs Option) are set.

Pixel data are not cleaned (no Clean Pixel Data Option): an image that says it has burned-in
annotation gets a warning.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

from dicomanonymizer import simpledicomanonymizer as anonymizer
from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

PROFILE_EDITION = "dicomfields_2026c"
PSEUDONYM_CHARS = 32
BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile")
RETAIN_UIDS = ("113110", "Retain UIDs Option")
METHOD = [
    "PS3.15 Basic Profile (dicom-anonymizer 2026c)",
    "Retain UIDs Option",
    "PatientID: HMAC-SHA256 pseudonym",
    "AccessionNumber: HMAC-SHA256 pseudonym",
]
ACCESSION_PREFIX = "RB"
ACCESSION_DIGITS = 14  # with the prefix, the 16 characters of an SH value
FILE_META_AE_TITLES = ((0x0002, 0x0016), (0x0002, 0x0017), (0x0002, 0x0018))


@dataclass(frozen=True)
class PatientIdentity:
    """What the database may keep about the patient. `patient_id`/`patient_name` only when de-identification is off."""

    pseudonym: str | None
    patient_id: str | None = None
    patient_name: str | None = None
    deidentified: bool = True
    warnings: list[str] = field(default_factory=list)


def patient_pseudonym(patient_id: str | None, secret: str | bytes) -> str | None:
    """Keyed pseudonym of a PatientID (32 hex digits of HMAC-SHA256), or None for a missing ID."""
    patient_id = (patient_id or "").strip()
    if not patient_id:
        return None
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, patient_id.encode(), hashlib.sha256).hexdigest()[:PSEUDONYM_CHARS]


def accession_pseudonym(accession: str | None, secret: str | bytes) -> str | None:
    """Keyed pseudonym of an AccessionNumber ("RB" + 14 hex digits, upper case), or None for a missing one."""
    accession = (accession or "").strip()
    if not accession:
        return None
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, f"accession:{accession}".encode(), hashlib.sha256).hexdigest()
    return ACCESSION_PREFIX + digest[:ACCESSION_DIGITS].upper()


def _keep(dataset: Dataset, tag: tuple[int, int]) -> None:
    """Retain UIDs Option: leave the element as it is."""


def _zero_length(dataset: Dataset, tag: tuple[int, int]) -> None:
    if tag in dataset:
        dataset[tag].value = None


def _delete(dataset: Dataset, tag: tuple[int, int]) -> None:
    if tag in dataset:
        del dataset[tag]


@functools.cache
def _profile_rules() -> dict:
    tables = dicom_anonymization_database_selector(PROFILE_EDITION)
    rules = anonymizer.initialize_actions(PROFILE_EDITION)
    rules.update({tag: _keep for tag in tables["U_TAGS"] + tables["X_Z_U_STAR_TAGS"]})
    for tag in tables["Z_TAGS"]:
        try:
            if dictionary_VR(tag) in ("DA", "DT", "TM"):
                rules[tag] = _zero_length
        except KeyError:
            continue
    rules.update({tag: _delete for tag in FILE_META_AE_TITLES})
    return rules


@functools.cache
def _ordered_rules() -> tuple[tuple[tuple[int, ...], int | None, Callable], ...]:
    """What `anonymize_dataset` applies with our rules as its extra rules: its base rules updated with ours, in
    its order, each with the tag's number (None for a repeating group such as 60xx,3000)."""
    rules = anonymizer.initialize_actions()
    rules.update(_profile_rules())
    return tuple((tag, (tag[0] << 16 | tag[1]) if len(tag) == 2 else None, action) for tag, action in rules.items())


def _rules_for(ds: Dataset) -> dict:
    """The rules that can change `ds`: every repeating-group rule, and each single-tag rule whose element is there
    (in the file meta for group 0002). A single-tag rule acts only on its own element and does nothing when it is
    missing, so the result is that of every rule, without a dictionary look-up per rule of the profile."""
    present = set(ds.keys())
    meta = set(ds.file_meta.keys()) if hasattr(ds, "file_meta") else set()
    return {
        tag: action
        for tag, number, action in _ordered_rules()
        if number is None or number in (meta if tag[0] == 0x0002 else present)
    }


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return item


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    return str(value).strip() or None if value is not None else None


def deidentify(ds: Dataset, secret: str | bytes, enabled: bool = True) -> PatientIdentity:
    """De-identify `ds` in place (when `enabled`) and say what the database may keep about the patient.

    With `enabled=False` the data set is left untouched and the identity carries PatientID and
    PatientName for the site's own use (the pseudonym is still computed, so grouping works either way).
    """
    patient_id = _text(ds, "PatientID")
    pseudonym = patient_pseudonym(patient_id, secret)
    accession = accession_pseudonym(_text(ds, "AccessionNumber"), secret)
    if not enabled:
        return PatientIdentity(pseudonym, patient_id, _text(ds, "PatientName"), deidentified=False)
    warnings = []
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        warnings.append("burned-in annotation: the pixels may show patient details; they are not cleaned")
    rules = _rules_for(ds)
    anonymizer.anonymize_dataset(ds, delete_private_tags=True, base_rules_gen=lambda: rules)
    ds.PatientID = pseudonym or ""
    ds.PatientName = ""
    ds.AccessionNumber = accession or ""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    ds.DeidentificationMethodCodeSequence = Sequence([_code(*BASIC_PROFILE), _code(*RETAIN_UIDS)])
    return PatientIdentity(pseudonym, warnings=warnings)
