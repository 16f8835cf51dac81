"""Read stored uploads: decode each, preprocess it for every served model and write its thumbnail.

`read_images` does a batch in a thread pool (Pillow, zlib and NumPy release the GIL while they work), one
pool per worker process, sized by RADBATCH_DECODE_THREADS (0: one thread per core). Each input is made once
per distinct (size, channels), however many models share it, and the thumbnail is cut from that already
reduced input instead of from the full-size picture.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image as PILImage

from db.models import Image
from formats import read_upload
from models.preprocess import ImageDecodeError, crop_padding, preprocess
from models.registry import LoadedModel
from settings import Settings
from storage import Storage, StorageUnavailable, names, storage_for
from worker import metrics

log = logging.getLogger(__name__)

THUMBNAIL_PX = 128


@dataclass
class Decoded:
    width: int  # of the upload itself (a large image is reduced while decoding)
    height: int
    mode: str
    inputs: dict[str, np.ndarray]  # model name -> (size, size, channels)
    notes: list[str] = field(default_factory=list)  # for the row: lateral view, first of several frames...


_pool_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None


def decode_threads(settings: Settings) -> int:
    return settings.decode_threads or len(os.sched_getaffinity(0))


def decode_pool(settings: Settings) -> ThreadPoolExecutor:
    """This process's decoding threads (threads do not survive a fork, so each process makes its own)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            threads = decode_threads(settings)
            _pool = (os.getpid(), ThreadPoolExecutor(max_workers=threads, thread_name_prefix="radbatch-decode"))
        return _pool[1]


def thumbnail_from_input(plane: np.ndarray, width: int, height: int) -> PILImage.Image:
    """An 8-bit gray picture at most THUMBNAIL_PX on a side from a model input plane (the image padded to a
    square and resized): the padding is cut off again, so the thumbnail keeps the upload's aspect ratio."""
    gray = np.clip(np.rint(crop_padding(plane, width, height) * 255.0), 0, 255).astype(np.uint8)
    picture = PILImage.fromarray(gray, mode="L")
    if max(picture.size) > THUMBNAIL_PX:
        picture.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX), PILImage.Resampling.BILINEAR)
    return picture


def write_thumbnail(thumbnail: PILImage.Image, store: Storage, name: str) -> None:
    """Save a thumbnail (or any picture) as PNG under `name` in the store, atomically."""
    out = io.BytesIO()
    thumbnail.save(out, format="PNG", compress_level=1)
    store.put_bytes(name, out.getvalue())


def read_file(image_id: int, stored_name: str | None, models: Mapping[str, LoadedModel], settings: Settings) -> Decoded:
    """Read, decode, preprocess and thumbnail one stored file; ImageDecodeError says what is wrong."""
    if not stored_name:
        raise ImageDecodeError("the upload was not stored, so there is nothing to read")
    clock = metrics.Clock()
    try:
        data = storage_for(settings).read(names.upload(stored_name))
    except FileNotFoundError:
        raise ImageDecodeError("the uploaded file is missing from the server's store") from None
    laps = [clock.lap()]
    upload = read_upload(data, max((model.input_size for model in models.values()), default=0))
    laps.append(clock.lap())
    by_spec: dict[tuple[int, int], np.ndarray] = {}
    for model in models.values():
        spec = (model.input_size, model.channels)
        if spec not in by_spec:
            by_spec[spec] = preprocess(upload.image, size=model.input_size, channels=model.channels)
    inputs = {name: by_spec[(m.input_size, m.channels)] for name, m in models.items()}
    laps.append(clock.lap())
    plane = max(by_spec.values(), key=len)[..., 0]
    thumbnail = thumbnail_from_input(plane, upload.image.width, upload.image.height)
    write_thumbnail(thumbnail, storage_for(settings), names.thumbnail(image_id))
    laps.append(clock.lap())
    for stage, (seconds, cpu_seconds) in zip(metrics.IMAGE_STAGES, laps):
        metrics.observe_image_stage(stage, seconds, cpu_seconds)
    return Decoded(upload.width, upload.height, upload.mode, inputs, upload.notes)


def read_image(image: Image, models: Mapping[str, LoadedModel], settings: Settings) -> Decoded:
    return read_file(image.id, image.stored_name, models, settings)


def _read_safely(image_id: int, stored_name: str | None, models, settings) -> Decoded | str:
    """The decoded image, or the error message for its row: one bad image must not fail the batch."""
    try:
        return read_file(image_id, stored_name, models, settings)
    except ImageDecodeError as error:
        return str(error)
    except StorageUnavailable:
        raise  # not the image's fault: the whole batch waits and is tried again (worker/tasks/predict.py)
    except Exception as error:  # noqa: BLE001
        log.exception("unexpected error on image %d", image_id)
        return f"internal error while reading the image: {type(error).__name__}: {error}"


def read_images(
    images: list[Image], models: Mapping[str, LoadedModel], settings: Settings
) -> tuple[dict[int, Decoded], dict[int, str]]:
    """Read a batch in the decoding threads: (decoded images by id, error messages by id)."""
    jobs = [(image.id, image.stored_name) for image in images]  # ORM rows stay in this thread
    metrics.observe_queue_wait([image.queued_at or image.created_at for image in images])
    clock = metrics.Clock(process=True)
    pool = decode_pool(settings)
    futures = [(image_id, pool.submit(_read_safely, image_id, name, models, settings)) for image_id, name in jobs]
    decoded: dict[int, Decoded] = {}
    errors: dict[int, str] = {}
    for image_id, future in futures:
        result = future.result()
        if isinstance(result, Decoded):
            decoded[image_id] = result
        else:
            errors[image_id] = result
    metrics.observe_batch_stage("read_all", *clock.lap())
    return decoded, errors
