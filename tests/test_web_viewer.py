"""The viewer's full-image and heat-map routes, the CSV with a token, path search, page size, favicon and notice."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from db.models import Image, ImageStatus
from db.session import session_scope
from models.preprocess import decode_image, to_gray
from tests.web_fixtures import png_bytes, upload

PIPELINE_ORIGINAL = Path(__file__).resolve().parent / "data" / "pipeline" / "originals" / "00000773_001.png"


def _job(client, headers, files: list[tuple[str, bytes]], **form) -> int:
    data = {"files": [upload(name, content) for name, content in files], **form}
    response = client.post("/api/v1/jobs", data=data, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["id"]


def _image_ids(web_db, job_id: int) -> dict[str, int]:
    with session_scope(web_db) as session:
        return dict(session.execute(select(Image.path, Image.id).where(Image.job_id == job_id)).all())


def _gradient_tiff() -> bytes:
    """A 16-bit TIFF, so the route must go through the models' gray conversion, not just copy bytes."""
    pixels = (np.arange(40 * 24, dtype=np.uint16).reshape(24, 40) * 60).astype(np.uint16)
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, format="TIFF")
    return out.getvalue()


def test_full_image_is_rendered_through_the_model_pipeline(web_client, web_auth, web_token, web_db):
    rgba = PIPELINE_ORIGINAL.read_bytes()
    truncated = b"\x89PNG\r\n\x1a\n" + b"x" * 200
    files = [("a/rgba.png", rgba), ("a/deep.tif", _gradient_tiff()), ("a/notes.txt", b"hi"), ("a/bad.png", truncated)]
    job_id = _job(web_client, web_token("alice"), files)
    ids = _image_ids(web_db, job_id)
    alice = web_token("alice")
    for path, original in (("a/rgba.png", rgba), ("a/deep.tif", _gradient_tiff())):
        response = web_client.get(f"/api/v1/images/{ids[path]}/image.png", headers=alice)
        assert response.status_code == 200 and response.mimetype == "image/png", path
        assert response.headers["Cache-Control"] == "private, no-store"
        shown = PILImage.open(io.BytesIO(response.data))
        expected = np.rint(to_gray(decode_image(original)) * 255).astype(np.uint8)
        assert shown.mode == "L" and shown.size == (expected.shape[1], expected.shape[0])
        assert np.array_equal(np.asarray(shown), expected), path
    refused = web_client.get(f"/api/v1/images/{ids['a/notes.txt']}/image.png", headers=alice)
    assert refused.status_code == 404 and "unsupported file type .txt" in refused.get_json()["message"]
    corrupt = web_client.get(f"/api/v1/images/{ids['a/bad.png']}/image.png", headers=alice)
    assert corrupt.status_code == 422 and "cannot be shown" in corrupt.get_json()["message"]
    assert web_client.get("/api/v1/images/999999/image.png", headers=alice).status_code == 404


def test_full_image_only_for_the_owner_or_an_admin(web_client, web_auth, web_token, web_db):
    job_id = _job(web_client, web_token("alice"), [("s/a.png", png_bytes((20, 10)))])
    image_id = _image_ids(web_db, job_id)["s/a.png"]
    url = f"/api/v1/images/{image_id}/image.png"
    assert web_client.get(url).status_code == 401
    assert web_client.get(url, headers=web_token("bob")).status_code == 404
    assert web_client.get(url, headers=web_token("root")).status_code == 200
    web_auth.login("alice")  # the viewer loads it with the session cookie
    with web_client.get(url) as response:
        assert response.status_code == 200 and PILImage.open(io.BytesIO(response.data)).size == (20, 10)


def test_heat_map_route_same_access_and_a_reason_when_there_is_none(
    web_client, web_auth, web_token, web_db, web_settings
):
    job_id = _job(web_client, web_token("alice"), [("s/a.png", png_bytes((20, 10)))])
    image_id = _image_ids(web_db, job_id)["s/a.png"]
    url = f"/api/v1/images/{image_id}/heatmap?model=cnn"
    alice = web_token("alice")
    waiting = web_client.get(url, headers=alice)  # no worker here: the image is still queued
    assert waiting.status_code == 404 and waiting.get_json()["message"].endswith("has no heat map: it is queued")
    with session_scope(web_db) as session:
        session.get(Image, image_id).status = ImageStatus.done
    missing = web_client.get(url, headers=alice)
    assert missing.status_code == 404 and "none was written when it was predicted" in missing.get_json()["message"]
    drawn = png_bytes((20, 10))  # the route serves the worker's file as it is
    web_settings.heatmap_dir.mkdir(exist_ok=True)
    (web_settings.heatmap_dir / f"{image_id}-cnn.png").write_bytes(drawn)
    assert web_client.get(url).status_code == 401
    assert web_client.get(url, headers=web_token("bob")).status_code == 404
    assert web_client.get(url, headers=web_token("root")).data == drawn
    web_auth.login("alice")  # the viewer fetches it with the session cookie
    with web_client.get(url) as response:
        assert response.status_code == 200 and response.mimetype == "image/png" and response.data == drawn
        assert response.headers["Cache-Control"] == "private, no-store"
    unknown = web_client.get(f"/api/v1/images/{image_id}/heatmap?model=ensemble")
    assert unknown.status_code == 404 and "choose model= from cnn, unet" in unknown.get_json()["message"]


@pytest.mark.parametrize(("field", "expected"), [(None, True), ("false", False), ("on", True)])
def test_heat_maps_are_a_per_job_option(web_client, web_token, web_db, field, expected):
    form = {} if field is None else {"heatmaps": field}
    job_id = _job(web_client, web_token("alice"), [("s/a.png", png_bytes())], **form)
    assert web_client.get(f"/api/v1/jobs/{job_id}", headers=web_token("alice")).get_json()["heatmaps"] is expected
    if not expected:
        image_id = _image_ids(web_db, job_id)["s/a.png"]
        refused = web_client.get(f"/api/v1/images/{image_id}/heatmap?model=unet", headers=web_token("alice"))
        assert refused.status_code == 404 and "created without heat maps" in refused.get_json()["message"]
    bad = web_client.post("/api/v1/jobs", data={"heatmaps": "maybe", "open": "true"}, headers=web_token("alice"))
    assert bad.status_code == 400 and "heatmaps must be true or false" in bad.get_json()["message"]


def test_results_csv_accepts_a_bearer_token(web_client, web_token):
    job_id = _job(web_client, web_token("alice"), [("s/a.png", png_bytes()), ("s/b;c, d.txt", b"x")])
    response = web_client.get(f"/jobs/{job_id}/results.csv", headers=web_token("alice"))
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [row["path"] for row in rows] == ["s/a.png", "s/b;c, d.txt"]
    assert web_client.get(f"/jobs/{job_id}/results.csv", headers=web_token("bob")).status_code == 404
    revoked = web_client.get(f"/jobs/{job_id}/results.csv", headers={"Authorization": "Bearer nope"})
    assert revoked.status_code == 401 and "not valid" in revoked.get_data(as_text=True)
    no_one = web_client.get(f"/jobs/{job_id}/results.csv")
    assert no_one.status_code == 302 and "/login" in no_one.headers["Location"]


def test_search_by_path_and_page_size(web_client, web_auth, web_token):
    names = [f"ward{w}/Scan_{i}.png" for w in (1, 2) for i in range(30)] + ["100%_sure.png", "under_score.png"]
    job_id = _job(web_client, web_token("alice"), [(name, png_bytes()) for name in names])
    web_auth.login("alice")
    page = web_client.get(f"/jobs/{job_id}?q=WARD2/scan_1&per_page=25").get_data(as_text=True)
    assert page.count('data-image-id="') == 11  # ward2/Scan_1 and Scan_10..19
    assert "ward1/" not in page and 'value="WARD2/scan_1"' in page and "<option selected>25</option>" in page
    api = web_client.get(f"/api/v1/jobs/{job_id}/results?q=ward&per_page=25").get_json()
    assert (api["total"], api["pages"], len(api["results"])) == (60, 3, 25)
    assert web_client.get(f"/api/v1/jobs/{job_id}/results?q=%25").get_json()["total"] == 1  # % is literal
    assert web_client.get(f"/api/v1/jobs/{job_id}/results?q=r_s").get_json()["total"] == 1  # so is _
    csv_rows = web_client.get(f"/jobs/{job_id}/results.csv?q=ward1/").get_data(as_text=True).strip().splitlines()
    assert len(csv_rows) == 31
    assert web_client.get(f"/jobs/{job_id}?q={'x' * 201}").status_code == 400
    first = web_client.get(f"/jobs/{job_id}?q=ward&per_page=25").get_data(as_text=True)
    assert "Page 1 of 3" in first and f'href="/jobs/{job_id}?q=ward&amp;per_page=25&amp;page=2"' in first


@pytest.mark.parametrize("path", ["/login", "/jobs", "/no/such/page"])
def test_every_page_has_the_notice_and_a_favicon(web_client, web_auth, path):
    web_auth.login("alice")
    page = web_client.get(path).get_data(as_text=True)
    assert "Research use only, not a medical device" in page
    assert 'rel="icon" href="/favicon.ico"' in page
    with web_client.get("/favicon.ico") as icon:
        assert icon.status_code == 200 and icon.mimetype in ("image/vnd.microsoft.icon", "image/x-icon")
        assert PILImage.open(io.BytesIO(icon.data)).format == "ICO"
