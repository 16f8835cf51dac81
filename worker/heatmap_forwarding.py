"""Heat maps to the PACS as DICOM (RADBATCH_DICOM_FORWARD_HEATMAPS): for each predicted image of a finished study
and each heat map the worker drew for it (worker/heatmaps.py), a Secondary Capture labelled "AI heat map, not for
diagnosis" (dicomio/heatmap_sc.py), sent after the study's SR by the same forwarding task."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import numpy as np
from PIL import Image as PILImage
from pydicom.dataset import Dataset
from sqlalchemy.orm import Session, sessionmaker

from db.models import Image
from dicomio.forward import c_store, parse_destination
from dicomio.heatmap_sc import MAX_SIDE, heatmap_sc, overlay
from dicomio.read import DicomError, read_header
from formats import read_upload
from models.catalogue import load_catalogue
from models.preprocess import ImageDecodeError, to_gray
from settings import Settings
from storage import Storage, names, storage_for
from worker.forwarding import WAITING, finished_study

log = logging.getLogger(__name__)


def heatmap_datasets(session: Session, settings: Settings, image_id: int) -> Iterator[Dataset]:
    """The Secondary Captures of the study's heat maps (none while the study is waiting)."""
    images = finished_study(session, image_id)
    if images is None or images == WAITING:
        return
    for image in images:
        yield from _of_image(settings, image)


def _of_image(settings: Settings, image: Image) -> Iterator[Dataset]:
    store = storage_for(settings)
    versions = {p.model_name: p.model_version for p in image.predictions}
    served = load_catalogue(settings.models_dir).heatmap_models
    maps = {model: _read_if_there(store, names.heatmap(image.id, model)) for model in served if model in versions}
    maps = {model: png for model, png in maps.items() if png is not None}
    if not maps:
        return
    try:
        data = store.read(names.upload(image.stored_name))
        header = read_header(io.BytesIO(data))
        gray = np.rint(to_gray(read_upload(data, target_size=MAX_SIDE).image) * 255).astype(np.uint8)
    except (FileNotFoundError, DicomError, ImageDecodeError, OSError) as error:
        log.warning("image %d: no heat map forwarded: %s", image.id, error)
        return
    for model, png in maps.items():
        with PILImage.open(io.BytesIO(png)) as heat:
            sc = heatmap_sc(header, overlay(gray, heat), model, versions[model])
        if sc is None:
            log.info("image %d: no heat map forwarded: its orientation is unknown", image.id)
            return
        yield sc


def _read_if_there(store: Storage, name: str) -> bytes | None:
    """The file's bytes; None when the worker drew no such heat map (one request, not an exists check and a read)."""
    try:
        return store.read(name)
    except FileNotFoundError:
        return None


def forward_heatmaps(sessions: sessionmaker[Session], settings: Settings, image_id: int) -> int:
    """Send the study's heat maps to RADBATCH_DICOM_FORWARD; how many; ForwardError if the destination refuses one."""
    destination = parse_destination(settings.dicom_forward)
    sent = 0
    with sessions() as session:
        for heat_map in heatmap_datasets(session, settings, image_id):
            c_store(heat_map, destination, settings.dicom_aet)
            sent += 1
    return sent
