"""The coded concepts every report radbatch sends out uses (DICOM SR, FHIR, HL7 v2): one table, so that a result
means the same thing in each. SNOMED CT for findings and labels, DICOM (DCM) for SR structure, and radbatch's
private scheme 99RADBATCH for the model outputs no standard code names (probabilities, thresholds)."""

from __future__ import annotations

from pydicom.sr.coding import Code

SCT_SYSTEM = "http://snomed.info/sct"
RADBATCH_SCHEME = "99RADBATCH"
RADBATCH_SYSTEM = "urn:radbatch:codes"  # the same private codes, as a FHIR system
DISCLAIMER = "Research use only, not for diagnosis"

CHEST_RADIOGRAPH = Code("399208008", "SCT", "Plain chest X-ray")
CLINICAL_FINDING = Code("404684003", "SCT", "Clinical finding")
FINDING = Code("121071", "DCM", "Finding")
COMMENT = Code("121106", "DCM", "Comment")
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")
LABEL_CODES = {
    "disease": Code("263654008", "SCT", "Abnormal"),
    "healthy": Code("17621005", "SCT", "Normal"),
}
PRESENT = Code("52101004", "SCT", "Present")
ABSENT = Code("2667000", "SCT", "Absent")
PROBABILITY = Code("PDISEASE", RADBATCH_SCHEME, "Probability of disease")
STUDY_PROBABILITY = Code("PSTUDY", RADBATCH_SCHEME, "Study probability of disease")
THRESHOLD = Code("THRESHOLD", RADBATCH_SCHEME, "Decision threshold")
NO_UNITS = Code("1", "UCUM", "no units")

# NIH ChestX-ray14 finding names -> SNOMED CT
FINDING_CODES = {
    "Atelectasis": Code("46621007", "SCT", "Atelectasis"),
    "Cardiomegaly": Code("8186001", "SCT", "Cardiomegaly"),
    "Consolidation": Code("95436008", "SCT", "Lung consolidation"),
    "Edema": Code("19242006", "SCT", "Pulmonary edema"),
    "Effusion": Code("60046008", "SCT", "Pleural effusion"),
    "Emphysema": Code("87433001", "SCT", "Pulmonary emphysema"),
    "Fibrosis": Code("51615001", "SCT", "Fibrosis of lung"),
    "Hernia": Code("84089009", "SCT", "Hiatal hernia"),
    "Infiltration": Code("409609008", "SCT", "Radiographic infiltrate of lung"),
    "Mass": Code("126952004", "SCT", "Mass of lung"),
    "Nodule": Code("786838002", "SCT", "Pulmonary nodule"),
    "Pleural_Thickening": Code("44608003", "SCT", "Pleural thickening"),
    "Pneumonia": Code("233604007", "SCT", "Pneumonia"),
    "Pneumothorax": Code("36118008", "SCT", "Pneumothorax"),
}


def finding_code(name: str) -> Code:
    """The SNOMED CT code of an NIH finding; a private code for one the table does not know."""
    return FINDING_CODES.get(name) or Code(f"F-{name[:14]}", RADBATCH_SCHEME, name.replace("_", " "))


def finding_probability_code(name: str) -> Code:
    return Code(f"P-{name[:14]}", RADBATCH_SCHEME, f"Probability of {name.replace('_', ' ').lower()}")
