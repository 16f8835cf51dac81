"""In Chromium against the real stack: the job page's filters, path search and page size, and the image viewer
(zoom, window/level, next/previous across pages, the worker's heat maps as an overlay)."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image as PILImage
from playwright.sync_api import expect

from tests.browser_fixtures import BrowserSession, overlapping_text
from tests.conftest import PIPELINE_IMAGES, PIPELINE_ORIGINALS, Stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.parametrize("e2e_database_url", ["sqlite"], indirect=True),
]


@pytest.fixture(scope="module")
def finished_job(e2e_stack: Stack) -> dict:
    """A finished job: 24 images in study/a and study/b, a large RGBA original, a text file and an empty file."""
    files = [
        (f"study/{'a' if i % 2 else 'b'}/{p.name}", p.read_bytes())
        for i, p in enumerate(sorted(PIPELINE_IMAGES.glob("*.png")))
    ]
    original = PIPELINE_ORIGINALS / "00000773_001.png"
    files += [(f"originals/{original.name}", original.read_bytes()), ("notes/read me.txt", b"text"), ("empty.png", b"")]
    job = e2e_stack.api.create_job(files, name="browser job")
    e2e_stack.api.wait_finished(job["id"])
    return {"id": job["id"], "results": e2e_stack.api.results(job["id"], per_page=100)}


def _rows(page):
    return page.locator("table.results tbody tr[data-image-id]")


def _apply(page):
    page.locator("form.filters").get_by_role("button", name="Apply").click()
    page.wait_for_load_state()


def test_filters_search_and_page_size(browser: BrowserSession, finished_job: dict):
    page, results = browser.page, finished_job["results"]
    browser.login()
    page.goto(f"/jobs/{finished_job['id']}")
    expect(_rows(page)).to_have_count(27)
    browser.shot("all-rows")
    page.locator("select[name=status]").select_option("failed")
    _apply(page)
    expect(_rows(page)).to_have_count(2)
    expect(page.locator("table.results .badge")).to_have_text(["failed", "failed"])
    expect(page.locator("td.path")).to_contain_text(["unsupported file type .txt", "empty file"])
    browser.shot("failed-only")
    page.get_by_role("link", name="clear").click()
    page.get_by_label("Path contains").fill("STUDY/A/")
    _apply(page)
    expect(_rows(page)).to_have_count(12)
    expect(page.locator("td.path")).to_have_text([re.compile(r"^study/a/")] * 12)
    browser.shot("search")
    page.locator("select[name=label]").select_option("disease")
    page.locator("select[name=sort]").select_option("probability")
    page.locator("select[name=order]").select_option("desc")
    _apply(page)
    wanted = [
        r for r in results if r["path"].startswith("study/a/") and r["predictions"]["ensemble"]["label"] == "disease"
    ]
    expect(_rows(page)).to_have_count(len(wanted))
    shown = [float(text) for text in page.locator("tr td:nth-child(6) .prob").all_inner_texts()]  # the ensemble
    assert shown == sorted(shown, reverse=True) and len(shown) == len(wanted)
    browser.shot("disease-by-probability")
    page.get_by_role("link", name="clear").click()
    page.get_by_label("Per page").select_option("25")
    _apply(page)
    expect(_rows(page)).to_have_count(25)
    expect(page.locator("nav.pager")).to_contain_text("Page 1 of 2 (27 total)")
    page.get_by_role("link", name="Next →").click()
    expect(_rows(page)).to_have_count(2)
    expect(page.get_by_label("Per page")).to_have_value("25")
    browser.shot("page-2-of-25")
    assert browser.unexpected_problems() == []


def _zoom_percent(page) -> int:
    return int(re.search(r"(\d+)%", page.locator("#viewer-zoom").inner_text()).group(1))


def _image_drawn(page) -> bool:
    """Whether OpenSeadragon's canvas shows something other than black."""
    return page.evaluate(
        """() => {
          const canvas = document.querySelector('#viewer-canvas .openseadragon-canvas canvas');
          const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
          for (let i = 0; i < pixels.length; i += 4 * 97) if (pixels[i] > 30) return true;
          return false;
        }"""
    )


def test_viewer_zoom_window_level_and_next_previous(browser: BrowserSession, finished_job: dict):
    page = browser.page
    done = [r for r in finished_job["results"] if r["status"] == "done"]
    browser.login()
    page.goto(f"/jobs/{finished_job['id']}?status=done&per_page=5")  # small pages: next/previous must cross them
    with page.expect_response(re.compile(r"/api/v1/images/\d+/image\.png$")) as image_response:
        _rows(page).nth(3).click()
    assert image_response.value.status == 200
    full = PILImage.open(io.BytesIO(image_response.value.body()))
    assert full.size == (128, 128) and full.mode == "L"
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    expect(page.locator("#viewer-path")).to_have_text(done[3]["path"])
    expect(page.locator("#viewer-position")).to_have_text(f"4 of {len(done)}")
    expect(page.locator("#viewer-zoom")).to_have_text(re.compile(r"zoom \d+%"))
    page.wait_for_function("() => document.querySelector('#viewer-canvas canvas').width > 0")
    page.wait_for_timeout(500)  # OpenSeadragon fades the image in
    assert _image_drawn(page)
    expected = [f"{done[3]['predictions'][m]['probability']:.3f}" for m in ("cnn", "unet", "ensemble")]
    expect(page.locator("#viewer-predictions tr td:nth-child(2)")).to_have_text(expected)
    expect(page.locator("#viewer-predictions tr td:nth-child(4)")).to_have_text(
        [f"{done[3]['predictions'][m]['threshold']:.3f}" for m in ("cnn", "unet", "ensemble")]
    )
    prevalence = done[3]["predictions"]["ensemble"]["prevalence"]
    expect(page.locator("#viewer-prevalence")).to_contain_text(f"disease prevalence of {prevalence:.3f}")
    findings = done[3]["findings"]
    assert findings, "the worker served no findings"
    shown = [
        f"{n}: {f['probability']:.3f} {f['label']} (threshold {f['threshold']:.3f}, {f['operating_point']})"
        for n, f in findings.items()
    ]
    expect(page.locator("#viewer-findings li")).to_have_text(shown)
    expect(page.locator("#heatmap-controls")).to_be_visible()  # the worker drew both models' heat maps
    browser.shot("viewer-open", full_page=False)

    before = _zoom_percent(page)
    box = page.locator("#viewer-canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -400)
    page.wait_for_function(
        f"() => parseInt(document.querySelector('#viewer-zoom').textContent.match(/\\d+/)[0]) > {before}"
    )
    browser.shot("zoomed-in", full_page=False)

    page.locator("#wl-contrast").fill("180")
    page.locator("#wl-brightness").fill("130")
    canvas_filter = page.locator("#viewer-canvas .openseadragon-canvas canvas").first.evaluate("(c) => c.style.filter")
    assert canvas_filter == "brightness(130%) contrast(180%)"
    browser.shot("window-level", full_page=False)

    page.locator("#viewer-canvas").click()  # focus back on the image: on a slider the arrows move the slider
    page.keyboard.press("ArrowRight")
    expect(page.locator("#viewer-path")).to_have_text(done[4]["path"])
    page.keyboard.press("ArrowRight")  # the next page of results, loaded through the API
    expect(page.locator("#viewer-position")).to_have_text(f"6 of {len(done)}")
    expect(page.locator("#viewer-path")).to_have_text(done[5]["path"])
    browser.shot("next-page", full_page=False)
    for _ in range(5):
        page.keyboard.press("ArrowLeft")
        page.wait_for_timeout(100)
    expect(page.locator("#viewer-position")).to_have_text(f"1 of {len(done)}")
    expect(page.locator("#viewer-path")).to_have_text(done[0]["path"])
    expect(page.locator("#viewer-prev")).to_be_disabled()
    browser.shot("first-image", full_page=False)
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    assert browser.unexpected_problems() == []


@pytest.mark.parametrize("width, height", [(1280, 800), (1440, 900), (1920, 1080), (2560, 1440)])
def test_the_viewer_panel_text_never_overlaps(browser: BrowserSession, finished_job: dict, width: int, height: int):
    page = browser.page
    page.set_viewport_size({"width": width, "height": height})
    browser.login()
    page.goto(f"/jobs/{finished_job['id']}?status=done")
    _rows(page).first.click()
    expect(page.locator("#viewer-findings li").first).to_be_visible()  # the longest panel: findings and prevalence
    expect(page.locator("#viewer-prevalence")).to_be_visible()
    browser.shot(f"viewer-{width}x{height}", full_page=False)
    assert overlapping_text(page, ".viewer-side") == []


def test_viewer_shows_why_a_failed_file_has_no_image(browser: BrowserSession, finished_job: dict):
    page = browser.page
    browser.login()
    page.goto(f"/jobs/{finished_job['id']}?status=failed")
    _rows(page).first.click()
    expect(page.locator("#viewer-message")).to_contain_text("This image cannot be shown")
    expect(page.locator("#viewer-error")).to_contain_text("unsupported file type .txt")
    expect(page.locator("#viewer-predictions")).to_contain_text("none: the file failed")
    expect(page.locator("#viewer-full")).to_be_hidden()
    browser.shot("failed-file", full_page=False)
    assert browser.unexpected_problems("/heatmap", "/image.png") == []


def _overlay_drawn(page) -> dict:
    """The overlay image's natural size and how many of its pixels are not fully transparent (read from a canvas:
    the image is a blob: URL of this page, so the canvas is not tainted)."""
    return page.evaluate(
        """() => {
          const image = document.querySelector('img.heatmap');
          const canvas = Object.assign(document.createElement('canvas'),
                                       { width: image.naturalWidth, height: image.naturalHeight });
          const context = canvas.getContext('2d');
          context.drawImage(image, 0, 0);
          const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
          let visible = 0;
          for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) visible += 1;
          return { width: image.naturalWidth, height: image.naturalHeight, visible };
        }"""
    )


def test_viewer_heatmap_overlay_from_the_worker(browser: BrowserSession, finished_job: dict):
    """The worker's Grad-CAM maps from GET /api/v1/images/<id>/heatmap?model=...: toggled, per model, with opacity."""
    page = browser.page
    browser.login()
    page.goto(f"/jobs/{finished_job['id']}?status=done")
    with page.expect_response(re.compile(r"/api/v1/images/\d+/heatmap\?model=unet$")) as unet_response:
        _rows(page).first.click()
    assert unet_response.value.status == 200
    expect(page.locator("#heatmap-controls")).to_be_visible()
    expect(page.locator("#heatmap-model option")).to_have_text(["cnn", "unet"])
    expect(page.locator("img.heatmap")).to_have_count(0)
    page.get_by_label("Show").check()
    overlay = page.locator("img.heatmap")
    expect(overlay).to_be_visible()
    page.wait_for_function("() => document.querySelector('img.heatmap').complete")
    drawn = _overlay_drawn(page)
    assert (drawn["width"], drawn["height"]) == (128, 128)  # a 128-px upload: its map has its size and shape
    assert 0 < drawn["visible"] < 128 * 128  # non-empty, and transparent where nothing points to disease
    assert overlay.bounding_box()["width"] > 300  # stretched over the whole image
    page.get_by_label("Opacity").fill("80")
    assert overlay.evaluate("(image) => image.style.opacity") == "0.8"
    browser.shot("heatmap-cnn", full_page=False)
    cnn_source = overlay.get_attribute("src")
    page.locator("#heatmap-model").select_option("unet")
    page.wait_for_function(
        "(before) => { const img = document.querySelector('img.heatmap'); return img.src !== before && img.complete; }",
        arg=cnn_source,
    )
    assert _overlay_drawn(page)["visible"] > 0
    browser.shot("heatmap-unet", full_page=False)
    page.get_by_label("Show").uncheck()
    expect(overlay).to_have_count(0)
    assert browser.unexpected_problems() == []
