"""Every piece of DICOM reading, writing and metadata: parsing and refusing what is no X-ray image (`read`,
`checks`), the display pipeline and the codecs pydicom lacks (`display`, `j2k`, `jpeg12`), metadata
(`metadata`), de-identification and preparation on ingest (`deidentify`, `prepare`, `instances`), the SR
(`sr`) and C-STORE to another AE (`forward`). No TensorFlow, and never db, web, worker, ingest or listener: the
listener and DICOMweb call it.
"""

from pydicom import config as _pydicom_config

# Received files are checked by our own rules, which name the problem on the image's row (`dicomio.uids`,
# `dicomio.checks`); pydicom's per-value warnings would only repeat them in the logs, once per odd value.
_pydicom_config.settings.reading_validation_mode = _pydicom_config.IGNORE
