"""Open report.html in headless Chromium and check what a reviewer would see.

Chromium is Debian's ``chromium`` package at /usr/bin/chromium, driven through the
DevTools protocol by Playwright's Python package. The tests check that the page
renders, requests nothing beyond its own file, logs no console errors and runs no
script, both on the shared end-to-end audit run and on a synthetic run with a
hostile caption.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from report_helpers import HOSTILE_CAPTION, make_synthetic_run

from dejavu.report import write_report

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed at /usr/bin/chromium "
    "(apt-get install -y chromium)",
)


@dataclass
class LoadedPage:
    """A page opened from disk, with everything it did while loading."""

    page: object
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        yield context
        context.close()


def _open(browser, html: Path) -> LoadedPage:
    page = browser.new_page()
    loaded = LoadedPage(page)
    page.on("request", lambda request: loaded.requests.append(request.url))
    page.on(
        "console",
        lambda message: (
            loaded.console_errors.append(message.text)
            if message.type == "error"
            else None
        ),
    )
    page.on("pageerror", lambda error: loaded.page_errors.append(str(error)))

    def record_dialog(dialog):
        loaded.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record_dialog)
    page.goto(html.resolve().as_uri(), wait_until="load")
    return loaded


@pytest.fixture(scope="module")
def audit_page(browser, scene_audit, tmp_path_factory):
    # Copy the run so that writing the report leaves the shared fixture untouched.
    run = tmp_path_factory.mktemp("browser-audit") / "run"
    shutil.copytree(scene_audit, run, ignore=shutil.ignore_patterns("cache"))
    html = write_report(run, redact="blur")
    loaded = _open(browser, html)
    yield loaded
    loaded.page.close()


@pytest.fixture(scope="module")
def hostile_page(browser, tmp_path_factory):
    run = make_synthetic_run(
        tmp_path_factory.mktemp("browser-hostile") / "run", hostile=True
    )
    loaded = _open(browser, write_report(run, redact="blur", gallery_size=20))
    yield loaded
    loaded.page.close()


@pytest.fixture(scope="module")
def ids_page(browser, tmp_path_factory):
    run = make_synthetic_run(tmp_path_factory.mktemp("browser-ids") / "run")
    loaded = _open(browser, write_report(run, redact="ids"))
    yield loaded
    loaded.page.close()


def test_browser_report_shows_verdict(audit_page):
    headline = audit_page.page.locator("#verdict h2").inner_text()
    assert headline in ("Memorization detected", "No memorization detected")


def test_browser_report_verdict_is_visible(audit_page):
    assert audit_page.page.locator("#verdict").is_visible()


def test_browser_report_requests_only_its_file(audit_page):
    own = audit_page.page.url
    others = [url for url in audit_page.requests if url != own]
    assert [url for url in others if not url.startswith("data:")] == []


def test_browser_report_logs_no_console_errors(audit_page):
    assert audit_page.console_errors == []


def test_browser_report_raises_no_page_errors(audit_page):
    assert audit_page.page_errors == []


def test_browser_report_images_decode(audit_page):
    broken = audit_page.page.evaluate(
        "Array.from(document.images)"
        ".filter(image => !image.complete || image.naturalWidth === 0).length"
    )
    assert broken == 0


def test_browser_report_draws_plots(audit_page):
    assert audit_page.page.locator("figure.plot svg").count() >= 5


def test_browser_report_screenshot_is_not_blank(audit_page, tmp_path):
    path = tmp_path / "report.png"
    audit_page.page.screenshot(path=str(path), full_page=False)
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 10


def test_browser_hostile_caption_shows_as_text(hostile_page):
    captions = hostile_page.page.locator(".caption").all_inner_texts()
    assert HOSTILE_CAPTION in captions


def test_browser_hostile_caption_opens_no_dialog(hostile_page):
    assert hostile_page.dialogs == []


def test_browser_hostile_caption_adds_no_elements(hostile_page):
    count = hostile_page.page.evaluate(
        "document.querySelectorAll('script, img[src=\"x\"], b, i').length"
    )
    assert count == 0


def test_browser_hostile_report_logs_no_console_errors(hostile_page):
    assert hostile_page.console_errors == []


def test_browser_ids_report_loads_no_images(ids_page):
    assert ids_page.page.evaluate("document.images.length") == 0


def test_browser_ids_report_shows_verdict(ids_page):
    assert ids_page.page.locator("#verdict").is_visible()
