"""The pages in a real browser: Debian's chromium driven by Playwright, against the app served
by uvicorn on 127.0.0.1. Untick a section and save, then unsubscribe with the page's button;
screenshots at phone and desktop widths go to tests/artifacts/ for a person to look at."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, expect, sync_playwright

from digest.models import Subscriber, SubscriberStatus
from digest.store import Store
from tests.conftest import ROOT
from tests.servers import serve_app
from tests.web.conftest import link

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"
PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        if os.environ.get("DIGEST_TEST_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is required here (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def base_url(app: FastAPI) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, in a thread, until the test ends."""
    with serve_app(app) as url:
        yield url


def test_preferences_and_unsubscribe_in_a_browser(
    browser: Browser, base_url: str, store: Store, add: Callable[..., Subscriber]
) -> None:
    sub = add("browser@example.org", name="Ana Lima")
    ARTIFACTS.mkdir(exist_ok=True)
    shots = {
        "phone": ARTIFACTS / "web-preferences-phone.png",
        "desktop": ARTIFACTS / "web-preferences-desktop.png",
        "unsubscribe": ARTIFACTS / "web-unsubscribe-phone.png",
        "dark": ARTIFACTS / "web-subscribe-phone-dark.png",
    }
    for shot in shots.values():
        shot.unlink(missing_ok=True)

    context = browser.new_context(viewport=PHONE, device_scale_factor=2, java_script_enabled=False)
    page = context.new_page()
    page.goto(base_url + link(sub, "preferences"))
    expect(page.get_by_role("heading", name="Your email preferences")).to_be_visible()
    # The page's own stylesheet applied (the policy allows it by hash): the card is narrow
    # and nothing overflows the phone's width.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert page.locator("main").evaluate("e => getComputedStyle(e).borderTopStyle") == "solid"
    page.screenshot(path=str(shots["phone"]), full_page=True)

    page.get_by_label("Diplomacy Watch").uncheck()
    page.get_by_role("button", name="Save my choices").click()
    expect(page.get_by_role("status")).to_contain_text("Saved.")
    saved = store.subscriber(sub.id)
    assert saved is not None
    assert saved.sections == {"qiosk", "analysis"}
    assert saved.status is SubscriberStatus.ACTIVE

    desktop = browser.new_context(viewport=DESKTOP, java_script_enabled=False)
    wide = desktop.new_page()
    wide.goto(base_url + link(sub, "preferences"))
    expect(wide.get_by_label("Diplomacy Watch")).not_to_be_checked()
    wide.screenshot(path=str(shots["desktop"]), full_page=True)
    desktop.close()

    page.goto(base_url + link(sub, "unsubscribe"))
    page.screenshot(path=str(shots["unsubscribe"]), full_page=True)
    after_get = store.subscriber(sub.id)
    assert after_get is not None and after_get.status is SubscriberStatus.ACTIVE
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    left = store.subscriber(sub.id)
    assert left is not None and left.status is SubscriberStatus.UNSUBSCRIBED
    assert store.subscriber_events(sub.id)[-1]["cause"] == "unsubscribe page"
    context.close()

    dark = browser.new_context(viewport=PHONE, color_scheme="dark", java_script_enabled=False)
    night = dark.new_page()
    night.goto(base_url + "/subscribe")
    background = night.locator("body").evaluate("e => getComputedStyle(e).backgroundColor")
    assert background == "rgb(18, 20, 22)"
    night.screenshot(path=str(shots["dark"]), full_page=True)
    dark.close()

    for shot in shots.values():
        assert shot.is_file() and shot.stat().st_size > 1000, shot
