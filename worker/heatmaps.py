"""Heat maps of a batch: Grad-CAM (models/gradcam.py) of each served model that has them, from the outputs the
batch's inference already made, written as PNGs to `$RADBATCH_HOME/heatmaps/<image id>-<model>.png`.

A heat map has the image's aspect ratio (the square padding of the model input is cut off again) and the size
of the image inside the model's input square (at most 128 px a side); the viewer stretches it over the image.
It is an 8-bit palette PNG whose pixel values are the normalised map (0..255, 255 at the peak): the palette is
matplotlib's `turbo` colour map, and its transparency (tRNS) makes value v as opaque as v/255, so a browser
shows it in colour and the overlay leaves the image untouched where nothing points to disease. One byte per
pixel is also what keeps drawing it cheap (a quarter of an RGBA PNG's encoding). A heat map that fails is logged and
skipped: it never fails its image.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import cache

import numpy as np
from PIL import Image as PILImage

from models import gradcam
from models.preprocess import crop_padding
from models.registry import LoadedModel
from settings import Settings
from storage import Storage, names, storage_for
from worker.reading import Decoded, decode_pool
from worker.reading import write_thumbnail as write_png
from worker.scoring import ModelOutputs

log = logging.getLogger(__name__)

COLOUR_MAP = "turbo"


OPACITY = bytes(range(256))  # the tRNS chunk: value v is v/255 opaque


@cache
def _palette() -> bytes:
    from matplotlib import colormaps

    return np.rint(colormaps[COLOUR_MAP](np.arange(256))[:, :3] * 255).astype(np.uint8).tobytes()


def picture(heat: np.ndarray) -> PILImage.Image:
    """A palette picture of a normalised map (uint8): its values index the colour map and its own opacity."""
    shown = PILImage.fromarray(np.ascontiguousarray(heat, dtype=np.uint8))  # 2-D uint8: mode L
    shown.putpalette(_palette())
    shown.info["transparency"] = OPACITY  # saved as tRNS
    return shown


def render(square: np.ndarray, width: int, height: int) -> PILImage.Image:
    """The picture of one Grad-CAM square for an image of `width` x `height` pixels."""
    return picture(gradcam.normalise(crop_padding(square, width, height)))


def _write(square: np.ndarray, found: Decoded, store: Storage, name: str) -> bool:
    try:
        write_png(render(square, found.width, found.height), store, name)
        return True
    except OSError as error:  # a full disk or an unreachable store: the prediction itself is still stored
        log.warning("heat map %s not written: %s", name, error)
        return False


def write_heatmaps(
    models: Mapping[str, LoadedModel],
    outputs: dict[str, ModelOutputs],
    decoded: dict[int, Decoded],
    skip: set[int],
    settings: Settings,
) -> int:
    """Draw and write the heat maps of every image not in `skip` (those that failed, and any whose job wants
    none); returns how many were written."""
    jobs = []
    store = storage_for(settings)
    for name, kept in outputs.items():
        try:
            squares = models[name].heatmaps(kept.outputs)
        except (gradcam.HeatmapError, ValueError, FloatingPointError) as error:
            log.warning("no heat maps from %s for a batch of %d: %s", name, len(kept.ids), error)
            continue
        jobs += [
            (square, decoded[i], store, names.heatmap(i, name)) for i, square in zip(kept.ids, squares) if i not in skip
        ]
    if not jobs:
        return 0
    return sum(decode_pool(settings).map(lambda job: _write(*job), jobs))  # PNG encoding releases the GIL
