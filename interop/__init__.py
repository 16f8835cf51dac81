"""Results out to clinical systems beyond PACS: FHIR R4 (DiagnosticReport + Observations) and HL7 v2 ORU^R01.
Built from a study summary (db/studies.py) with the codes of dicomio/codes.py; no database or web access here."""
