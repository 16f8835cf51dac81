"""Ingest: how a file enters radbatch, whatever brought it (portal, REST API, CLI, and the DICOM network listeners).

`add_files` checks each file, stores it under a generated name and creates its image row (a DICOM file is
de-identified first, and a DICOMDIR gets no row: each format's `prepare` in the reader registry, `formats`);
`queue_pending` commits and then sends the job's pending images to the workers. Imports `db`, `broker`, `formats`
(never TensorFlow); never `web` or `worker`.
"""

from db.text import clean_text
from ingest.durable import sync_stored
from ingest.files import (
    Incoming,
    StorageFull,
    add_files,
    clean_relative_path,
    discard_stored,
    discarded_unless_committed,
)
from ingest.instances import count_resent, held_copies, identical, instance_path, note_namesake, stored_pixels
from ingest.queueing import QueueUnavailable, queue_pending
from ingest.receive import queue_received, receive

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
    "note_namesake",
    "stored_pixels",
    "instance_path",
    "queue_pending",
    "queue_received",
    "receive",
    "sync_stored",
]
