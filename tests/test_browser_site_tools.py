"""In Chromium against the real stack: upload a labels CSV on the job page and see the ROC and the metrics; purge a
job with its button (dismissed once, then confirmed) and find its rows and files gone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from db.models import Image
from db.session import session_scope
from tests.browser_fixtures import BrowserSession
from tests.conftest import PIPELINE_IMAGES, Stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.parametrize("e2e_database_url", ["sqlite"], indirect=True),
]
IMAGES = sorted(PIPELINE_IMAGES.glob("*.png"))


def _finished_job(stack: Stack, name: str, count: int) -> dict:
    job = stack.api.create_job([(f"ward/{p.name}", p.read_bytes()) for p in IMAGES[:count]], name=name)
    finished = stack.api.wait_finished(job["id"])
    assert finished["status"] == "done" and finished["done"] == count
    return finished


def test_uploading_labels_shows_the_roc_and_the_metrics(browser: BrowserSession, tmp_path: Path):
    stack, page = browser.stack, browser.page
    job = _finished_job(stack, "labelled", 8)
    labels = tmp_path / "labels.csv"
    rows = [f"{p.name},{'disease' if i % 2 else 'healthy'}" for i, p in enumerate(IMAGES[:8])]
    labels.write_text("path,label\n" + "\n".join(rows + ["not/in/the/job.png,disease"]) + "\n")
    browser.login()
    page.goto(f"/jobs/{job['id']}")
    evaluation = page.locator("#evaluation")
    expect(evaluation.locator("#evaluation-results")).to_contain_text("No labels yet for this job.")
    evaluation.scroll_into_view_if_needed()
    browser.shot("no-labels-yet")

    page.get_by_label("Labels CSV").set_input_files(labels)
    browser.shot("labels-chosen")
    evaluation.get_by_role("button", name="Upload labels").click()
    page.wait_for_url(re.compile(rf"/jobs/{job['id']}#evaluation$"))
    expect(page.locator(".flash")).to_have_text(
        "Labels stored: 8 of 9 rows matched an image; 1 rows not used, 0 images without a label"
        " (listed under Evaluation)."
    )
    roc = page.locator("img#roc")
    expect(roc).to_be_visible()
    page.wait_for_function(
        "() => { const roc = document.getElementById('roc'); return roc.complete && roc.naturalWidth > 0; }"
    )
    assert roc.bounding_box()["width"] > 300
    roc_response = page.request.get(roc.get_attribute("src"))
    assert roc_response.ok and roc_response.headers["content-type"].startswith("image/svg+xml")
    assert roc_response.text().count("<path") >= 3  # a curve per model at least

    expected = stack.api.http.get(f"{stack.api.base}/jobs/{job['id']}/evaluation", timeout=30).json()
    metrics = page.locator("table.metrics tbody tr")
    expect(metrics.locator("td:first-child")).to_have_text(["cnn", "unet", "ensemble"])
    for row, name in zip(metrics.all(), ["cnn", "unet", "ensemble"], strict=True):
        model = expected["models"][name]
        cells = row.locator("td").all_inner_texts()
        assert cells[1] == str(model["n"]) == "8"
        assert cells[2].startswith(f"{model['auc']:.3f}")
        tn, fp, fn, tp = (model["confusion_matrix"][k] for k in ("tn", "fp", "fn", "tp"))
        assert cells[8] == f"{tn} / {fp} / {fn} / {tp}" and tn + fp + fn + tp == 8
    expect(evaluation.locator("details summary.error")).to_have_text("1 label rows not used")
    expect(evaluation.locator("details td.path")).to_have_text(["not/in/the/job.png"])
    evaluation.scroll_into_view_if_needed()
    browser.shot("roc-and-metrics")
    assert browser.unexpected_problems() == []


def _stored_files(stack: Stack, job_id: int) -> list[Path]:
    """The job's uploads and thumbnails, and whatever else on disk is named after its images (heat maps, SRs)."""
    home = stack.settings.home
    with session_scope(stack.sessions) as session:
        images = session.scalars(select(Image).where(Image.job_id == job_id)).all()
        found = [stack.settings.upload_dir / image.stored_name for image in images]
        found += [stack.settings.thumbnail_dir / f"{image.id}.png" for image in images]
        for image in images:
            found += list(home.glob(f"heatmaps/{image.id}-*.png")) + list(home.glob(f"sr/{image.id}.dcm"))
    return found


def test_purging_a_job_from_its_page(browser: BrowserSession):
    stack, page = browser.stack, browser.page
    job, kept = _finished_job(stack, "to purge", 3), _finished_job(stack, "to keep", 1)
    files, kept_files = _stored_files(stack, job["id"]), _stored_files(stack, kept["id"])
    assert len(files) >= 6 and all(path.is_file() for path in files + kept_files)
    browser.login()
    page.goto(f"/jobs/{job['id']}")
    browser.shot("job-page")

    dialogs: list[str] = []

    def answer(dialog, accept: bool) -> None:
        dialogs.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda dialog: answer(dialog, accept=False))
    page.get_by_role("button", name="Delete permanently").click()
    expect(page).to_have_url(re.compile(rf"/jobs/{job['id']}$"))
    assert dialogs == [dialogs[0]] and dialogs[0].startswith(f"Delete job {job['id']} for good?")
    assert stack.api.job(job["id"])["status"] == "done" and all(path.is_file() for path in files)
    browser.shot("dismissed-nothing-deleted")

    page.once("dialog", lambda dialog: answer(dialog, accept=True))
    page.get_by_role("button", name="Delete permanently").click()
    page.wait_for_url(re.compile(r"/jobs$"))
    expect(page.locator(".flash")).to_have_text(
        f"Job {job['id']} deleted for good: 3 images and {len(files)} files removed."
    )
    expect(page.locator(f'a[href="/jobs/{job["id"]}"]')).to_have_count(0)
    expect(page.locator(f'a[href="/jobs/{kept["id"]}"]').first).to_be_visible()
    browser.shot("purged")
    assert stack.api.http.get(f"{stack.api.base}/jobs/{job['id']}", timeout=30).status_code == 404
    assert not any(path.exists() for path in files)
    assert all(path.is_file() for path in kept_files)
    page.goto(f"/jobs/{job['id']}")
    expect(page.locator("main")).to_contain_text("404")
    browser.shot("gone")
    assert browser.unexpected_problems(f"/jobs/{job['id']}") == []
