"""In Chromium against the real stack: the worklist shows the finished studies most suspicious first, and a
radiologist's disagreeing review is saved, takes the study off the list and is stored with its comment."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from db.reviews import Review
from db.session import session_scope
from tests.browser_fixtures import BrowserSession
from tests.test_web_reviews import STUDIES, seeded

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.parametrize("e2e_database_url", ["sqlite"], indirect=True),
]
FINISHED = {accession: study for accession, study in STUDIES.items() if study[2]}


def test_the_worklist_order_and_a_review(browser: BrowserSession) -> None:
    stack, page = browser.stack, browser.page
    job_id, uids = seeded(stack.sessions, owner=stack.username, studies=FINISHED)
    browser.login()
    page.goto("/worklist")
    page.get_by_label("Job").fill(str(job_id))
    page.get_by_role("button", name="Apply").click()
    rows = page.locator("#worklist tbody tr.study")
    expect(rows).to_have_count(3)
    expect(rows.locator("td:nth-child(2)")).to_have_text(["ACC-HIGH", "ACC-MID", "ACC-LOW"])
    expect(rows.first.locator("td.probability")).to_have_text("0.910")
    browser.shot("worklist")
    first = rows.first
    first.get_by_label("verdict").select_option("disagree")
    first.get_by_label("correct label").select_option("healthy")
    first.get_by_label("comment").fill("old scar, no acute change")
    first.get_by_role("button", name="Save review").click()
    expect(page.locator("#worklist-status")).to_have_text(f"Saved: disagree for study {uids['ACC-HIGH']}.")
    expect(rows.locator("td:nth-child(2)")).to_have_text(["ACC-MID", "ACC-LOW"])
    browser.shot("reviewed")
    with session_scope(stack.sessions) as session:
        (review,) = session.scalars(select(Review).where(Review.job_id == job_id)).all()
        assert (review.verdict, review.label, review.comment, review.username) == (
            "disagree",
            "healthy",
            "old scar, no acute change",
            stack.username,
        )
    assert browser.unexpected_problems() == []
