"""The names of every file radbatch keeps, relative to the store's root: the one place the layout is spelled out.

An upload is `uploads/<stored name>`; the files derived from image 12 are `thumbnails/12.png` and
`heatmaps/12-<model>.png` (one per model that drew one). SR documents are made on request from the upload and
the predictions, so none is stored.
"""

from __future__ import annotations

from collections.abc import Iterable

UPLOADS, THUMBNAILS, HEATMAPS = "uploads", "thumbnails", "heatmaps"
# every model that may draw a heat map (models.registry.MODEL_NAMES; tests/test_architecture.py keeps them equal)
HEATMAP_MODELS = ("cnn", "unet", "seed-cnn", "seed-unet")
FOLDERS = (UPLOADS, THUMBNAILS, HEATMAPS)


def upload(stored_name: str) -> str:
    if not stored_name or "/" in stored_name or stored_name.startswith("."):
        raise ValueError(f"not a stored name: {stored_name!r}")
    return f"{UPLOADS}/{stored_name}"


def thumbnail(image_id: int) -> str:
    return f"{THUMBNAILS}/{int(image_id)}.png"


def heatmap(image_id: int, model: str) -> str:
    if not model or "/" in model:
        raise ValueError(f"not a model name: {model!r}")
    return f"{HEATMAPS}/{int(image_id)}-{model}.png"


def derived(image_id: int, models: Iterable[str] = HEATMAP_MODELS) -> list[str]:
    """Every derived file image `image_id` may have (by default with a heat map of any model)."""
    return [thumbnail(image_id)] + [heatmap(image_id, model) for model in models]
