"""The editors' edition page in a real browser (Debian's chromium driven by Playwright, against
the app served by uvicorn on 127.0.0.1), scripts off: both preview frames show the email, a
changed subject shows in both before deciding, and the Approve button approves. Screenshots go
to tests/artifacts/ for a person to look at."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, BrowserContext, expect

from digest.models import Edition, EditionStatus
from digest.store import Store
from tests.web.test_browser import ARTIFACTS, DESKTOP, base_url, browser
from tests.web.test_editor import TOKEN, app, edition, make_app, settings

__all__ = ["app", "base_url", "browser", "edition", "make_app", "settings"]


def _editor_context(browser: Browser) -> BrowserContext:
    """A desktop browser, scripts off, signed in as an editor by basic auth."""
    return browser.new_context(
        viewport={"width": DESKTOP["width"], "height": DESKTOP["height"]},
        java_script_enabled=False,
        http_credentials={"username": "ana", "password": TOKEN},
    )


@pytest.fixture
def shots() -> Iterator[dict[str, Path]]:
    ARTIFACTS.mkdir(exist_ok=True)
    paths = {
        "edition": ARTIFACTS / "web-editor-edition-desktop.png",
        "approved": ARTIFACTS / "web-editor-approved-desktop.png",
    }
    for path in paths.values():
        path.unlink(missing_ok=True)
    yield paths


def test_preview_frames_and_approve_in_a_browser(
    browser: Browser,
    base_url: str,
    app: FastAPI,
    edition: Edition,
    store: Store,
    shots: dict[str, Path],
) -> None:
    context = _editor_context(browser)
    page = context.new_page()
    page.goto(f"{base_url}/editions/{edition.id}")
    expect(page.get_by_role("heading", name=edition.subject)).to_be_visible()
    for name, width in (("desktop", 600), ("phone", 375)):
        frame = page.frame(name=name)
        assert frame is not None, name
        frame.wait_for_load_state()
        expect(frame.locator("body")).to_contain_text(edition.title)
        expect(frame.locator("body")).to_contain_text("Item 3")
        box = page.locator(f'iframe[name="{name}"]').bounding_box()
        assert box is not None and round(box["width"]) in (width, width + 2), (name, box)
    # The email's own layout fits the phone frame.
    phone = page.frame(name="phone")
    assert phone is not None
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    page.screenshot(path=str(shots["edition"]), full_page=True)

    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text("Approved.")
    saved = store.edition(edition.id)
    assert saved is not None and saved.status is EditionStatus.APPROVED
    page.screenshot(path=str(shots["approved"]))
    context.close()

    for shot in shots.values():
        assert shot.is_file() and shot.stat().st_size > 1000, shot


def test_a_subject_change_shows_in_both_frames_before_deciding(
    browser: Browser, base_url: str, app: FastAPI, edition: Edition, store: Store
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    before = ARTIFACTS / "web-editor-subject-before-desktop.png"
    after = ARTIFACTS / "web-editor-subject-after-desktop.png"
    for path in (before, after):
        path.unlink(missing_ok=True)
    subject = "Ceasefire week: what the talks left open"
    context = _editor_context(browser)
    page = context.new_page()
    page.goto(f"{base_url}/editions/{edition.id}")

    def frames_show(title: str) -> None:
        """Each frame's inbox lines and its email carry ``title``; the email is all there."""
        for name in ("desktop", "phone"):
            figure = page.locator("figure").filter(has=page.locator(f'iframe[name="{name}"]'))
            expect(figure.locator(".inbox strong")).to_have_text(title)
            expect(figure.locator(".inbox")).to_contain_text(edition.preheader)
            # After a save the page (and so each frame) loads again: wait for the new email, not
            # whatever frame is there at this instant.
            email = page.frame_locator(f'iframe[name="{name}"]')
            expect(email.locator("title")).to_have_js_property("textContent", title)
            expect(email.locator("body")).to_contain_text("Item 3")

    frames_show(edition.subject)
    page.screenshot(path=str(before), full_page=True)

    page.get_by_label("Subject", exact=True).fill(subject)
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status")).to_contain_text("Saved.")
    expect(page.get_by_role("heading", level=1)).to_have_text(subject)
    frames_show(subject)
    page.screenshot(path=str(after), full_page=True)
    saved = store.edition(edition.id)
    assert saved is not None and saved.subject == subject
    assert saved.status is EditionStatus.DRAFT  # to decide on, as changed
    assert page.get_by_role("button", name="Approve").is_visible()
    context.close()
    for shot in (before, after):
        assert shot.is_file() and shot.stat().st_size > 1000, shot
