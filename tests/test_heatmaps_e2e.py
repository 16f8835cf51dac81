"""Heat maps end to end: uploaded over HTTP, drawn by the real worker in the same batch as the predictions, served
by `GET /api/v1/images/<id>/heatmap?model=...`: the image's aspect ratio, not constant, and on an X-ray with a
synthetic bright blob that raises both models' disease probability, the peak lies on the blob; a job created
with heatmaps=false gets none."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage

from tests.conftest import PIPELINE_IMAGES, PIPELINE_ORIGINALS, Stack

pytestmark = pytest.mark.e2e

MODELS = ("cnn", "unet")
# A soft bright blob (a Gaussian, amplitude 0.5 of full scale) in the left lower lung field of a real 128-px
# X-ray: both models' disease probability rises with it (checked below). Found by scanning blob positions and
# sizes over the committed test images; around this one, shifts of several pixels keep the result.
BLOB_IMAGE, BLOB_CENTRE, BLOB_SIGMA, BLOB_AMPLITUDE = "00002633_021.png", (52, 82), 12.0, 0.5
BLOB_RADIUS = 1.5 * BLOB_SIGMA  # the blob region: where it adds at least a third of its amplitude


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(np.clip(np.rint(pixels * 255), 0, 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def blob_pair() -> tuple[bytes, bytes]:
    """(the X-ray with the blob, the same X-ray without it), both 8-bit gray PNGs."""
    gray = np.asarray(PILImage.open(PIPELINE_IMAGES / BLOB_IMAGE).convert("L"), dtype=np.float64) / 255
    rows, cols = np.mgrid[0 : gray.shape[0], 0 : gray.shape[1]]
    x, y = BLOB_CENTRE
    blob = BLOB_AMPLITUDE * np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * BLOB_SIGMA**2))
    return _png(gray + blob), _png(gray)


def tall_image() -> bytes:
    """A portrait (3:4) crop of a full-size X-ray."""
    original = PILImage.open(PIPELINE_ORIGINALS / "00000773_001.png").convert("L")
    return _png(np.asarray(original.crop((200, 0, 200 + 768, 1024)), dtype=np.float64) / 255)


def fetch_heatmap(stack: Stack, image_id: int, model: str) -> np.ndarray:
    response = stack.api.http.get(f"{stack.api.base}/images/{image_id}/heatmap", params={"model": model}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["Cache-Control"] == "private, no-store"
    picture = PILImage.open(io.BytesIO(response.content))
    assert picture.mode == "P" and picture.info["transparency"] == bytes(range(256))  # value v is v/255 opaque
    return np.asarray(picture)  # the values: the normalised map


@pytest.fixture(scope="module")
def heat_job(e2e_stack: Stack) -> dict:
    with_blob, without = blob_pair()
    files = [("blob.png", with_blob), ("twin.png", without), ("tall.png", tall_image()), ("notes.txt", b"text")]
    job = e2e_stack.api.create_job(files, name="heat maps")
    finished = e2e_stack.api.wait_finished(job["id"])
    assert (finished["done"], finished["failed"]) == (3, 1)
    return {row["path"]: row for row in e2e_stack.api.results(job["id"])}


def test_a_heat_map_has_the_image_aspect_ratio_and_is_not_constant(e2e_stack: Stack, heat_job: dict) -> None:
    for model in MODELS:
        for path, size in (("tall.png", (96, 128)), ("blob.png", (128, 128))):
            heat = fetch_heatmap(e2e_stack, heat_job[path]["id"], model)
            assert (heat.shape[1], heat.shape[0]) == size, (model, path)  # 768 x 1024 -> 96 x 128: the same 3:4
            values = heat.astype(float)
            assert values.max() == 255 and values.min() < 128 and values.std() > 10, (model, path)
            assert len(np.unique(heat)) > 20, (model, path)


def test_the_peak_falls_on_a_blob_the_models_react_to(e2e_stack: Stack, heat_job: dict) -> None:
    blob, twin = heat_job["blob.png"], heat_job["twin.png"]
    for model in MODELS:
        with_blob, without = blob["predictions"][model]["probability"], twin["predictions"][model]["probability"]
        assert with_blob > without + 0.05, f"{model} does not react to the blob: {without:.3f} -> {with_blob:.3f}"
        heat = fetch_heatmap(e2e_stack, blob["id"], model)
        rows, cols = np.nonzero(heat == heat.max())
        distance = np.hypot(cols + 0.5 - BLOB_CENTRE[0], rows + 0.5 - BLOB_CENTRE[1])  # pixel centres
        assert distance.max() <= BLOB_RADIUS, f"{model}: peak {distance.max():.1f} px from the blob's centre"


def test_no_heat_map_is_a_clear_404(e2e_stack: Stack, heat_job: dict) -> None:
    def get(image_id: int, model: str):
        return e2e_stack.api.http.get(f"{e2e_stack.api.base}/images/{image_id}/heatmap", params={"model": model})

    failed = get(heat_job["notes.txt"]["id"], "cnn")
    assert failed.status_code == 404 and "failed: unsupported file type .txt" in failed.json()["message"]
    for model in ("ensemble", "", "seed-cnn"):
        wrong = get(heat_job["blob.png"]["id"], model)
        assert wrong.status_code == 404 and "choose model= from cnn, unet" in wrong.json()["message"], model
    assert get(999_999_999, "cnn").status_code == 404


def test_a_job_without_heat_maps_gets_none(e2e_stack: Stack) -> None:
    parts = [("files", ("plain.png", (PIPELINE_IMAGES / BLOB_IMAGE).read_bytes(), "image/png"))]
    response = e2e_stack.api.http.post(f"{e2e_stack.api.base}/jobs", data={"heatmaps": "false"}, files=parts)
    assert response.status_code == 201 and response.json()["heatmaps"] is False
    assert e2e_stack.api.wait_finished(response.json()["id"])["done"] == 1
    (row,) = e2e_stack.api.results(response.json()["id"])
    assert not list(e2e_stack.settings.heatmap_dir.glob(f"{row['id']}-*.png"))
    refused = e2e_stack.api.http.get(f"{e2e_stack.api.base}/images/{row['id']}/heatmap", params={"model": "cnn"})
    assert refused.status_code == 404 and "created without heat maps" in refused.json()["message"]
