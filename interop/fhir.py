"""A study's results as a FHIR R4 transaction Bundle: one DiagnosticReport (status preliminary: no person has
checked it) and one coded Observation per model result and validated finding, built and validated with
fhir.resources (its R4B models: the R4 shape of DiagnosticReport and Observation).

* DiagnosticReport: LOINC 18748-4 "Diagnostic imaging study", category RAD, identifier the StudyInstanceUID
  (urn:dicom:uid), conclusion in words (with the disclaimer) and conclusionCode SNOMED Abnormal/Normal.
* Observations, status preliminary: the study result of each model (radbatch's codes PSTUDY-<model>, value the
  study probability of disease, interpretation A/N against the model's threshold, the method in a note), and each
  validated finding (its SNOMED CT code, value Present/Absent, the probability and threshold as components).
* The subject is the patient by identifier: the keyed pseudonym (urn:radbatch:patient-pseudonym), or the site's
  PatientID when de-identification is off.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from dicomio import codes as c

LOINC = "http://loinc.org"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
DICOM_UID = "urn:dicom:uid"
PSEUDONYM_SYSTEM = "urn:radbatch:patient-pseudonym"
PATIENT_ID_SYSTEM = "urn:radbatch:site-patient-id"
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "radbatch:fhir")


def _coding(code: Any) -> dict[str, str]:
    system = {"SCT": c.SCT_SYSTEM, c.RADBATCH_SCHEME: c.RADBATCH_SYSTEM}.get(
        code.scheme_designator, code.scheme_designator
    )
    return {"system": system, "code": code.value, "display": code.meaning}


def _urn(*parts: str) -> str:
    return f"urn:uuid:{uuid.uuid5(NAMESPACE, '|'.join(parts))}"


def _probability(value: float) -> dict[str, Any]:
    return {"value": round(float(value), 6), "unit": "probability", "system": "http://unitsofmeasure.org", "code": "1"}


def _subject(study: dict[str, Any]) -> dict[str, Any]:
    if study.get("patient_id"):
        return {"identifier": {"system": PATIENT_ID_SYSTEM, "value": study["patient_id"]}}
    return {"identifier": {"system": PSEUDONYM_SYSTEM, "value": study.get("patient_pseudonym") or "unknown"}}


def _model_observation(study: dict[str, Any], name: str, result: dict[str, Any], common: dict) -> dict[str, Any]:
    flag = "A" if result["label"] == "disease" else "N"
    return common | {
        "resourceType": "Observation",
        "code": {
            "coding": [
                {
                    "system": c.RADBATCH_SYSTEM,
                    "code": f"PSTUDY-{name}",
                    "display": f"Study probability of disease ({name})",
                }
            ],
            "text": f"{name} {result['model_version']}: study probability of disease",
        },
        "valueQuantity": _probability(result["probability"]),
        "interpretation": [
            {"coding": [{"system": INTERPRETATION, "code": flag, "display": "Abnormal" if flag == "A" else "Normal"}]}
        ],
        "referenceRange": [{"high": _probability(result["threshold"]), "text": "disease at or above the threshold"}],
        "device": {"display": f"radbatch {name} {result['model_version']}"},
        "note": [{"text": f"Study probability: {study['result']['method']}. {c.DISCLAIMER}."}],
    }


def _finding_observation(name: str, finding: dict[str, Any], common: dict) -> dict[str, Any]:
    present = finding["label"] == "present"
    return common | {
        "resourceType": "Observation",
        "code": {"coding": [_coding(c.finding_code(name))], "text": name.replace("_", " ")},
        "valueCodeableConcept": {"coding": [_coding(c.PRESENT if present else c.ABSENT)]},
        "component": [
            {
                "code": {"coding": [_coding(c.finding_probability_code(name))]},
                "valueQuantity": _probability(finding["probability"]),
            },
            {"code": {"coding": [_coding(c.THRESHOLD)]}, "valueQuantity": _probability(finding["threshold"])},
        ],
        "note": [{"text": f"Validated finding, maximum over the study's frontal images. {c.DISCLAIMER}."}],
    }


def _conclusion(study: dict[str, Any]) -> str:
    result = study["result"]
    if result.get("probability") is None:
        return f"No study result: {result.get('reason', 'no frontal image was predicted')}. {c.DISCLAIMER}."
    present = [name.replace("_", " ") for name, f in study["findings"].items() if f["label"] == "present"]
    found = f"; findings above threshold: {', '.join(present)}" if present else ""
    return (
        f"AI screening ({result['model']} {result['model_version']}): {result['label']}, study probability of disease "
        f"{result['probability']:.3f} (threshold {result['threshold']:.3f}; {result['method']}){found}. {c.DISCLAIMER}."
    )


def study_bundle(study: dict[str, Any], amended: bool = False) -> dict[str, Any]:
    """The transaction Bundle of a study summary (db/studies.summarise), validated; as JSON-ready dict."""
    uid = study["study_instance_uid"]
    status = "amended" if amended else "preliminary"
    issued = datetime.now(timezone.utc).isoformat(timespec="seconds")
    common = {
        "status": status,
        "subject": _subject(study),
        "issued": issued,
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "imaging"}]}
        ],
    }
    observations = [
        (_urn(uid, "model", name), _model_observation(study, name, result, common))
        for name, result in study.get("models", {}).items()
    ]
    observations += [
        (_urn(uid, "finding", name), _finding_observation(name, finding, common))
        for name, finding in study["findings"].items()
    ]
    report = {
        "resourceType": "DiagnosticReport",
        "status": status,
        "identifier": [{"system": DICOM_UID, "value": f"urn:oid:{uid}"}],
        "category": [{"coding": [{"system": V2_0074, "code": "RAD", "display": "Radiology"}]}],
        "code": {"coding": [{"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}]},
        "subject": _subject(study),
        "issued": issued,
        "result": [{"reference": urn} for urn, _ in observations],
        "conclusion": _conclusion(study),
    }
    if study["result"].get("label"):
        report["conclusionCode"] = [{"coding": [_coding(c.LABEL_CODES[study["result"]["label"]])]}]
    entries = [(_urn(uid, "report"), report), *observations]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": urn, "resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
            for urn, resource in entries
        ],
    }
    return Bundle.model_validate(bundle).model_dump(mode="json", exclude_none=True)
