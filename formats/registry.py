"""The file formats radbatch reads, each registered once: how its content is told apart, the reader that turns a
stored file into a picture for `models.preprocess`, and what ingest stores of it and keeps on its row.

Formats are told by content, tried in the order they were registered: a `.png` that holds DICOM is read as DICOM
(`any_name`), and the picture formats are read under any picture format's name. A new format is one `register` call
(see `formats.pillow` and `formats.dicom`); ingest, the worker and the image endpoint need no edit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

from dicomio.prepare import PreparedDicom as Prepared  # what a prepare step returns: bytes to store, columns, notes
from models.preprocess import ACCEPTED, ImageDecodeError

DETECTION_BYTES = 4096  # enough to tell a DICOM data set without a preamble from other content


class NotAnImage(Exception):
    """The file is valid but holds no image (a DICOMDIR, an index of DICOM files): ingest keeps no row for it."""


@dataclass
class Picture:
    """A decoded upload: the picture `preprocess` takes, the upload's own size, and notes for its row."""

    image: Image.Image
    width: int
    height: int
    mode: str
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Format:
    name: str
    extensions: tuple[str, ...]  # lower case, with the dot: what a file of this format is usually called
    detect: Callable[[bytes], bool]  # from the first DETECTION_BYTES of the file
    read: Callable[[bytes, int], Picture]  # (file, the side it is going to) -> picture; ImageDecodeError says why not
    stored_extension: str  # ingest stores the file as <generated name><stored_extension>
    content_is_not: str  # "the content of this .x file is not <content_is_not>" when the name promises this format
    any_name: bool = False  # read whatever the file is called; else only under a name of a format without any_name
    # On ingest, (file, secret key, de-identify?, what the caller already parsed or None) -> Prepared; raises
    # ImageDecodeError with a message for the row, or NotAnImage. None: stored as received, streamed.
    prepare: Callable[[bytes, str, bool, object], Prepared] | None = None


FORMATS: list[Format] = []


def register(fmt: Format) -> Format:
    FORMATS.append(fmt)
    return fmt


def detect(head: bytes) -> Format | None:
    """The format of a file from its first bytes, or None if no registered format reads it."""
    return next((fmt for fmt in FORMATS if fmt.detect(head)), None)


def named(extension: str) -> Format | None:
    """The format a file name's extension promises, or None."""
    return next((fmt for fmt in FORMATS if extension in fmt.extensions), None)


def accepted(head: bytes, extension: str) -> Format | None:
    """The format to read a file as, or None. DICOM is read whatever the name; the picture formats only under a
    picture format's name (a `.jpg` that holds a PNG is read as PNG, a `.txt` that holds one is refused)."""
    found, promised = detect(head), named(extension)
    if found is not None and (found.any_name or (promised is not None and not promised.any_name)):
        return found
    return None


def extensions() -> list[str]:
    """Every extension a registered format is known by (for the upload page's file filter)."""
    return sorted({extension for fmt in FORMATS for extension in fmt.extensions})


def read_upload(data: bytes, target_size: int) -> Picture:
    """Decode a stored file with its format's reader; `target_size` is the largest side it is going to (a large
    image may be reduced towards it while decoding). ImageDecodeError says what is wrong."""
    fmt = detect(data[:DETECTION_BYTES])
    if fmt is None:
        raise ImageDecodeError(f"not an image: the content is not PNG, JPEG, BMP, TIFF or DICOM; {ACCEPTED}")
    return fmt.read(data, target_size)
