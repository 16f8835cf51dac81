"""In Chromium against the real stack (gunicorn, Celery worker, Redis, SQLite): log in, upload a folder through the
folder picker and files by drag and drop, and watch a job page go live to "done" without a reload."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser_fixtures import BrowserSession
from tests.conftest import PIPELINE_IMAGES

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.parametrize("e2e_database_url", ["sqlite"], indirect=True),  # one database is enough for the UI
]
IMAGES = sorted(PIPELINE_IMAGES.glob("*.png"))
DONE_TIMEOUT_MS = 90_000


def _rows(browser: BrowserSession):
    return browser.page.locator("table.results tbody tr[data-image-id]")


def test_login_notice_and_favicon(browser: BrowserSession):
    page = browser.page
    page.goto("/jobs")
    expect(page).to_have_url(re.compile(r"/login\?next=/jobs$"))
    expect(page.get_by_role("note")).to_contain_text("Research use only, not a medical device")
    browser.shot("login-page")
    page.get_by_label("User name").fill(browser.stack.username)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("form .error")).to_have_text("Wrong user name or password.")
    browser.shot("wrong-password")
    browser.login()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    expect(page.locator("header .who")).to_have_text(browser.stack.username)
    expect(page.get_by_role("note")).to_contain_text("not a medical device")
    browser.shot("logged-in")
    icon_href = page.locator('link[rel="icon"][sizes]').get_attribute("href")
    icon = page.request.get(icon_href)
    assert icon.ok and icon.headers["content-type"] in ("image/vnd.microsoft.icon", "image/x-icon")
    assert browser.unexpected_problems("/login") == []  # the wrong password answers 401


def test_folder_upload_through_the_folder_picker(browser: BrowserSession, tmp_path: Path):
    folder = tmp_path / "ward 7"
    for day in ("day 1", "day 2"):
        (folder / day).mkdir(parents=True)
    for i, source in enumerate(IMAGES[:6]):
        shutil.copy(source, folder / f"day {1 + i % 2}" / source.name)
    (folder / "day 1" / "notes.txt").write_text("not an image")
    (folder / ".DS_Store").write_bytes(b"finder junk")  # hidden: never sent
    page = browser.page
    browser.login()
    page.goto("/upload")
    page.locator("#pick-folder").set_input_files(folder)
    expect(page.locator("#selection")).to_contain_text("7 files selected")
    browser.shot("folder-chosen")
    page.locator("#start").click()
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("ward 7")
    browser.shot("job-page")
    expect(page.locator("#job-status .badge")).to_have_text("done", timeout=DONE_TIMEOUT_MS)
    expect(_rows(browser)).to_have_count(7)
    expect(page.locator("td.path", has_text="ward 7/day 1/notes.txt")).to_contain_text("unsupported file type .txt")
    expect(page.locator("td.path", has_text=f"ward 7/day 2/{IMAGES[1].name}")).to_have_count(1)
    expect(page.locator("table.results .prob")).to_have_count(6 * 3)  # cnn, unet and ensemble per image
    browser.shot("done")
    assert browser.unexpected_problems() == []


DROP_NAMES = ["a;b, c.png", "Ünïcødé 日本.png", 'it\'s "quoted".png']
MAKE_TRANSFER = """(files) => {
  const transfer = new DataTransfer();
  for (const f of files) {
    const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], f.name, { type: "image/png" }));
  }
  return transfer;
}"""


def test_drag_and_drop_of_files(browser: BrowserSession):
    files = [
        {"name": name, "data": base64.b64encode(IMAGES[i].read_bytes()).decode()} for i, name in enumerate(DROP_NAMES)
    ]
    page = browser.page
    browser.login()
    page.goto("/upload")
    transfer = page.evaluate_handle(MAKE_TRANSFER, files)
    page.dispatch_event("#drop", "dragenter", {"dataTransfer": transfer})
    page.dispatch_event("#drop", "dragover", {"dataTransfer": transfer})
    expect(page.locator("#drop")).to_have_class(re.compile(r"\bover\b"))
    browser.shot("dragging")
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    expect(page.locator("#selection")).to_contain_text("3 files selected")
    browser.shot("dropped")
    page.locator("#job-name").fill("dropped files")
    page.locator("#start").click()
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    expect(page.locator("#job-status .badge")).to_have_text("done", timeout=DONE_TIMEOUT_MS)
    expect(page.locator("td.path")).to_have_text(DROP_NAMES)
    expect(page.locator("table.results .prob")).to_have_count(3 * 3)
    browser.shot("done")
    assert browser.unexpected_problems() == []


def test_live_job_page_reaches_done_without_a_reload(browser: BrowserSession):
    stack, page = browser.stack, browser.page
    first = [(f"live/{p.name}", p.read_bytes()) for p in IMAGES[:4]]
    job = stack.api.create_job(first, name="watched live", is_open=True)  # open: nothing can finish yet
    browser.login()
    page.goto(f"/jobs/{job['id']}")
    page.evaluate("window.sameDocument = true")  # gone if the page reloads
    expect(page.locator("#cancel-job")).to_be_visible()
    expect(page.locator("#job-finished")).to_have_text("")
    expect(page.locator("#job-status .badge")).to_have_text("queued")
    browser.shot("open-job")
    stack.api.add_files(job["id"], [(f"live/more/{p.name}", p.read_bytes()) for p in IMAGES[4:10]])
    stack.api.close(job["id"])
    expect(page.locator("#job-status .badge")).to_have_text("done", timeout=DONE_TIMEOUT_MS)
    expect(page.locator("#cancel-job")).to_be_hidden()
    expect(page.locator("#job-finished")).to_have_text(re.compile(r"· finished \d{4}-\d\d-\d\d \d\d:\d\d UTC"))
    expect(page.locator("table.results .prob")).to_have_count(10 * 3)
    assert page.evaluate("window.sameDocument") is True
    thumbnails = page.locator("td.thumb img")
    assert all(src.endswith("v=done") for src in thumbnails.evaluate_all("(images) => images.map((i) => i.src)"))
    page.wait_for_function("() => document.querySelector('td.thumb img').naturalWidth === 128")  # not the placeholder
    finished_at = stack.api.job(job["id"])["finished_at"]
    assert finished_at[:16].replace("T", " ") in page.locator("#job-finished").inner_text()
    browser.shot("done")
    assert browser.unexpected_problems() == []
