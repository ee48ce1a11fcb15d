"""The console driven in Debian's headless Chromium against the real service: sign in, filter the leads, open a
lead, adjust it with a reason, accept and reject from the MQL queue. The run writes the README's screenshots."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, DevTools
from tests.service.conftest import Live
from tests.service.console.conftest import PASSWORD, screenshot_dir


def _fill(browser: DevTools, values: dict[str, str]) -> None:
    """Type into the fields ``values`` names (CSS selector → value), as a person would before submitting."""
    for selector, value in values.items():
        found = browser.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return false;"
            f" e.value = {json.dumps(value)}; return true; }})()"
        )
        assert found, selector


def _texts(browser: DevTools, selector: str) -> list[str]:
    return browser.evaluate(
        f"Array.from(document.querySelectorAll({json.dumps(selector)})).map(e => e.textContent.trim())"
    )


def _screenshot(browser: DevTools, name: str) -> None:
    shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    folder = screenshot_dir()
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(base64.b64decode(shot["data"]))


@pytest.mark.slow
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_sign_in_filter_open_adjust_accept_and_reject_in_chromium(console: Live, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium is not installed here (`apt-get install -y chromium`; .ci/run installs it)")
    browser = DevTools(tmp_path / "chromium-profile")
    try:
        browser.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
        browser.load(f"{console.base}/console/leads")
        assert browser.evaluate("location.pathname") == "/console/login"
        _fill(browser, {"#email": "sam@acme.example", "#password": PASSWORD})
        browser.click("#sign-in")
        assert browser.evaluate("location.pathname") == "/console/leads"
        assert _texts(browser, "#leads tbody td:first-child a") == ["CO-HOT", "CO-WARM", "CO-XSS", "CO-COLD"]
        _screenshot(browser, "console-leads.png")

        _fill(browser, {"#q": "globex", "#sort": "lead_id"})
        browser.click("#apply")
        assert _texts(browser, "#leads tbody td:first-child a") == ["CO-COLD", "CO-HOT"]
        browser.click("#leads a[href='/console/leads/CO-HOT']")
        assert _texts(browser, "#lead-title") == ["Hana Hot CO-HOT"]

        _fill(browser, {"#journey-crm-suite form.adjust input[name=points]": "7",
                        "#journey-crm-suite form.adjust input[name=reason]": "<i>called back</i>"})  # fmt: skip
        browser.click("#journey-crm-suite form.adjust button")
        assert _texts(browser, "#notice") == ["Adjustment recorded: the next run scores it."]
        assert _texts(browser, "#adjustments td.reason") == ["<i>called back</i>"]  # text, not markup
        assert _texts(browser, "#adjustments td.author") == ["sam@acme.example"]
        assert _texts(browser, "#audit td.action") == ["adjust"]
        assert browser.evaluate("document.querySelectorAll('#journey-crm-suite svg .mark').length") == 1
        _screenshot(browser, "console-lead.png")

        browser.click("header a[href='/console/queue']")  # the menu, as a person goes there
        assert _texts(browser, "#queue tr.item td:nth-child(2) a") == ["CO-HOT", "CO-WARM"]
        _screenshot(browser, "console-queue.png")
        browser.click("tr[data-lead='CO-HOT'] form.accept button")
        assert _texts(browser, "#notice") == ["Accepted."]
        _fill(browser, {"tr[data-lead='CO-WARM'] form.reject select": "wrong-persona"})
        browser.click("tr[data-lead='CO-WARM'] form.reject button")
        assert _texts(browser, "#notice") == ["Rejected and sent back to nurture."]
        assert _texts(browser, "#queue tr.item") == []
        problems = browser.problems()
    finally:
        browser.close()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)
    assert problems == []
