"""Ingest: how a file enters radbatch, whatever brought it (portal, REST API, CLI, and the DICOM network listeners).

`add_files` checks each file, stores it under a generated name and creates its image row (a DICOM file is
de-identified first, and a DICOMDIR gets no row: `ingest.dicom`); `queue_pending` commits and then sends the
job's pending images to the workers. Imports `db`, `broker` and `models` (never TensorFlow); never `web` or
`worker`.
"""

from ingest.durable import sync_stored
from ingest.files import (
    Incoming,
    StorageFull,
    add_files,
    clean_relative_path,
    clean_text,
    discard_stored,
    discarded_unless_committed,
)
from ingest.instances import (
    count_resent,
    held_copies,
    identical,
    identity_problem,
    instance_identity,
    instance_path,
    note_namesake,
    pixel_bytes,
    stored_pixels,
    uid_problem,
)
from ingest.queueing import QueueUnavailable, queue_pending

__all__ = [
    "Incoming",
    "QueueUnavailable",
    "StorageFull",
    "add_files",
    "clean_relative_path",
    "clean_text",
    "discard_stored",
    "discarded_unless_committed",
    "count_resent",
    "held_copies",
    "identical",
    "identity_problem",
    "note_namesake",
    "pixel_bytes",
    "stored_pixels",
    "uid_problem",
    "instance_identity",
    "instance_path",
    "queue_pending",
    "sync_stored",
]
