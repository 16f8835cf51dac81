"""Fixtures for the browser tests: Playwright driving Debian's Chromium against the end-to-end stack.

Loaded from tests/conftest.py. Chromium is /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it);
Playwright never downloads a browser of its own. Without Chromium the tests skip, except under CI=true, where
they fail. Every test saves a screenshot per step under var/test-artifacts/<test>/ (git-ignored).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import Stack, skip_or_fail
from tests.services import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = REPO_ROOT / "var" / "test-artifacts"
TIMEOUT_MS = 20_000


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.when == "call":
        item.browser_call_failed = report.failed
    return report


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """One headless Chromium per test module."""
    if not CHROMIUM.exists():
        skip_or_fail(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium; .ci/run does it)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        skip_or_fail("the playwright package is missing (make deps installs requirements.txt)")
    expect.set_options(timeout=TIMEOUT_MS)  # a busy 2-core CI machine is slower than Playwright's 5 s default
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class BrowserSession:
    """A page of a fresh browser context on the stack, the HTTP problems it met, and numbered screenshots."""

    page: object
    stack: Stack
    folder: Path
    problems: list[str] = field(default_factory=list)
    steps: int = 0

    def shot(self, step: str, full_page: bool = True) -> Path:
        """Save `NN-step.png`; a modal dialog looks right only in the viewport (full_page=False)."""
        self.steps += 1
        path = self.folder / f"{self.steps:02d}-{step}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def login(self) -> None:
        self.page.goto("/login")
        self.page.get_by_label("User name").fill(self.stack.username)
        self.page.get_by_label("Password").fill(self.stack.password)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url("**/jobs")

    def unexpected_problems(self, *allowed: str) -> list[str]:
        """Failed requests, console errors and page errors, less those mentioning any of `allowed`."""
        return [problem for problem in self.problems if not any(text in problem for text in allowed)]


# Every line box of text under `root` (a CSS selector) as [text, left, top, width, height], hidden elements left out.
TEXT_BOXES_JS = """(root) => {
  const walker = document.createTreeWalker(document.querySelector(root), NodeFilter.SHOW_TEXT);
  const boxes = [];
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!node.textContent.trim()) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    for (const r of range.getClientRects()) {
      if (r.width > 0 && r.height > 0) boxes.push([node.textContent.trim().slice(0, 40), r.x, r.y, r.width, r.height]);
    }
  }
  return boxes;
}"""


def overlapping_text(page, root: str, tolerance: float = 0.5) -> list[tuple[str, str]]:
    """Pairs of text boxes under `root` that are drawn over each other (more than `tolerance` px both ways)."""
    boxes = page.evaluate(TEXT_BOXES_JS, root)
    return [
        (a[0], b[0])
        for i, a in enumerate(boxes)
        for b in boxes[i + 1 :]
        if min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]) > tolerance
        and min(a[2] + a[4], b[2] + b[4]) - max(a[2], b[2]) > tolerance
    ]


@pytest.fixture
def browser(chromium, e2e_stack: Stack, request: pytest.FixtureRequest) -> Iterator[BrowserSession]:
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    context = chromium.new_context(base_url=e2e_stack.base_url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    session = BrowserSession(page=page, stack=e2e_stack, folder=folder)
    page.on("response", lambda r: r.status >= 400 and session.problems.append(f"{r.status} {r.request.method} {r.url}"))
    page.on("console", lambda m: m.type == "error" and session.problems.append(f"console: {m.text} {m.location}"))
    page.on("pageerror", lambda error: session.problems.append(f"page error: {error}"))
    try:
        yield session
    finally:
        if getattr(request.node, "browser_call_failed", False):
            session.shot("failure")  # what the page showed when the test failed
        context.close()
