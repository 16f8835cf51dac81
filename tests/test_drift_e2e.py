"""Drift monitoring over the wire: a job of heavily blurred chest X-rays crosses the drift threshold on the API,
on /metrics and on the admin page (Chromium); a job of unaltered test-split images, like the validation reference,
crosses nothing. Both go through the real upload, queue and worker."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml
from PIL import Image, ImageFilter
from playwright.sync_api import expect
from sqlalchemy import select

from db.audit import AuditEvent
from db.session import session_scope
from db.users import add_token, create_user
from models.drift import P_THRESHOLD, PSI_THRESHOLD
from tests.browser_fixtures import BrowserSession
from tests.conftest import Stack
from tests.services import REPO_ROOT
from training.train import DEFAULT_SPLIT

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("e2e_database_url", ["sqlite"], indirect=True)]
SAMPLE = 24
SEED = 2  # a fixed draw of test-split images; other draws behave alike (docs/monitoring.md)
BLUR_RADIUS = 6  # px on the 128-px images: far beyond any scanner's softness
ADMIN_PASSWORD = "drift admin password"
ALERTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"


def _test_split_sample(images: Path) -> list[Path]:
    with DEFAULT_SPLIT.open(newline="") as handle:
        names = sorted(row["image"] for row in csv.DictReader(handle) if row["split"] == "test")
    chosen = np.random.default_rng(SEED).choice(len(names), SAMPLE, replace=False)
    return [images / names[i] for i in chosen]


def _blurred(path: Path) -> bytes:
    buffer = io.BytesIO()
    Image.open(path).filter(ImageFilter.GaussianBlur(BLUR_RADIUS)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def drift_jobs(e2e_stack: Stack, shared_images: Path) -> dict:
    """An administrator's token and two finished jobs of the same images: as they are, and blurred."""
    sample = _test_split_sample(shared_images)
    jobs = {
        "like": e2e_stack.api.create_job([(f"like/{p.name}", p.read_bytes()) for p in sample], name="drift like"),
        "blurred": e2e_stack.api.create_job([(f"blur/{p.name}", _blurred(p)) for p in sample], name="drift blurred"),
    }
    for job in jobs.values():
        assert e2e_stack.api.wait_finished(job["id"])["done"] == SAMPLE
    username = f"drift-admin-{e2e_stack.settings.home.name}"
    with session_scope(e2e_stack.sessions) as session:
        admin = create_user(session, username, ADMIN_PASSWORD, is_admin=True)
        token = add_token(session, admin, name="drift")
    return {"ids": {key: job["id"] for key, job in jobs.items()}, "token": token, "username": username}


def _report(stack: Stack, token: str, **params) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return requests.get(f"{stack.api.base}/monitoring/drift", params=params, headers=headers, timeout=60)


def test_blurred_images_cross_the_drift_threshold_and_images_like_the_reference_do_not(e2e_stack, drift_jobs):
    token, ids = drift_jobs["token"], drift_jobs["ids"]
    assert _report(e2e_stack, e2e_stack.token, days=30).status_code == 403  # administrators only

    like = _report(e2e_stack, token, days=30, job=ids["like"]).json()
    assert like["window"]["images"] == SAMPLE and like["drift"] == []
    figures = {f["figure"]: f for f in like["window"]["figures"]}
    assert {"pixel_mean", "pixel_std", "probability:ensemble", "positive:ensemble", "disagreement"} <= set(figures)
    assert all(f["n"] == SAMPLE and not f["drift"] for f in figures.values())
    assert all(f["p_value"] >= P_THRESHOLD for f in figures.values())  # nothing beyond chance

    blurred = _report(e2e_stack, token, days=30, job=ids["blurred"]).json()
    assert blurred["window"]["images"] == SAMPLE
    assert {"pixel_std", "probability:cnn", "probability:unet", "probability:ensemble"} <= set(blurred["drift"])
    shifted = {f["figure"]: f for f in blurred["window"]["figures"]}["pixel_std"]
    assert shifted["psi"] > PSI_THRESHOLD and shifted["p_value"] < P_THRESHOLD
    assert shifted["value"] < figures["pixel_std"]["value"]  # blur takes contrast away
    day = blurred["daily"][-1]
    assert day["inputs"]["source"] == {"upload": SAMPLE} and day["inputs"]["format"] == {"png": SAMPLE}
    assert sum(day["outputs"]["ensemble"]["histogram"]) == SAMPLE

    assert _report(e2e_stack, token, days=0).status_code == 400
    with session_scope(e2e_stack.sessions) as session:
        reads = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "drift.view", AuditEvent.username == drift_jobs["username"])
        ).all()
        assert sorted(event.job_id for event in reads) == sorted(ids.values())
        assert all(event.detail["images"] == SAMPLE for event in reads)

    scraped = requests.get(f"{e2e_stack.base_url}/metrics", timeout=60).text
    images = re.search(r"^radbatch_drift_images (\S+)$", scraped, re.M)
    assert images and float(images.group(1)) >= 2 * SAMPLE
    assert re.search(r'^radbatch_drift_psi\{figure="pixel_std"\} \S+$', scraped, re.M)
    assert re.search(r'^radbatch_drift_detected\{figure="probability:ensemble"\} [01]\.0$', scraped, re.M)
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    alerted = {name for rule in rules for name in re.findall(r"radbatch_[a-z_]+", rule["expr"])}
    assert alerted and all(re.search(rf"^{name}\b", scraped, re.M) for name in alerted)  # the alert reads real series


@pytest.mark.browser
def test_the_admin_page_shows_the_drift_and_its_plot(browser: BrowserSession, drift_jobs):
    page = browser.page
    page.goto("/login")
    page.get_by_label("User name").fill(drift_jobs["username"])
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/jobs")
    page.get_by_role("link", name="Drift", exact=True).click()
    page.get_by_label("Job").fill(str(drift_jobs["ids"]["blurred"]))
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#drift-verdict")).to_contain_text("Drift: ")
    expect(page.locator("table.drift-figures tr.error").first).to_contain_text("yes")
    page.wait_for_function(
        "() => { const c = document.getElementById('drift-chart'); return c.complete && c.naturalWidth > 0; }"
    )
    assert page.locator("#drift-chart").bounding_box()["width"] > 600
    browser.shot("drift-blurred")
    page.get_by_label("Job").fill(str(drift_jobs["ids"]["like"]))
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#drift-verdict")).to_have_text("No drift over this window.")
    browser.shot("drift-like-the-reference")
    assert browser.unexpected_problems() == []
