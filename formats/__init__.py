"""The reader registry: every input format registers its detection, reader and metadata extractor once
(`formats.registry`). Ingest, the worker and the image endpoint go through it. DICOM comes first: content decides,
whatever a file is called."""

from formats import dicom, pillow  # noqa: F401  (each registers its formats)
from formats.registry import (
    DETECTION_BYTES,
    FORMATS,
    Format,
    NotAnImage,
    Picture,
    Prepared,
    accepted,
    detect,
    extensions,
    named,
    read_upload,
)

__all__ = [
    "DETECTION_BYTES",
    "FORMATS",
    "Format",
    "NotAnImage",
    "Picture",
    "Prepared",
    "accepted",
    "detect",
    "extensions",
    "named",
    "read_upload",
]
