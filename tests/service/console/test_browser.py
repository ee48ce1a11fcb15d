"""The console driven in Debian's headless Chromium against the real service: sign in, filter the leads, open a
lead, adjust it with a reason, accept and reject from the MQL queue (on a store of a few crafted leads). The
README's screenshots come from ``test_demo_browser.py``, on the demo's store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, DevTools
from tests.service.conftest import Live
from tests.service.console.conftest import PASSWORD


def fill(browser: DevTools, values: dict[str, str]) -> None:
    """Type into the fields ``values`` names (CSS selector → value), as a person would before submitting."""
    for selector, value in values.items():
        found = browser.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return false;"
            f" e.value = {json.dumps(value)}; return true; }})()"
        )
        assert found, selector


def texts(browser: DevTools, selector: str) -> list[str]:
    return browser.evaluate(
        f"Array.from(document.querySelectorAll({json.dumps(selector)})).map(e => e.textContent.trim())"
    )


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
        fill(browser, {"#email": "sam@acme.example", "#password": PASSWORD})
        browser.click("#sign-in")
        assert browser.evaluate("location.pathname") == "/console/leads"
        assert texts(browser, "#leads tbody td:first-child a") == ["CO-WARM", "CO-HOT", "CO-XSS", "CO-COLD"]

        fill(browser, {"#q": "globex", "#sort": "lead_id"})
        browser.click("#apply")
        assert texts(browser, "#leads tbody td:first-child a") == ["CO-COLD", "CO-HOT"]
        browser.click("#leads a[href='/console/leads/CO-HOT']")
        assert texts(browser, "#lead-title") == ["Hana Hot CO-HOT"]

        fill(browser, {"#journey-crm-suite form.adjust input[name=points]": "7",
                        "#journey-crm-suite form.adjust input[name=reason]": "<i>called back</i>"})  # fmt: skip
        browser.click("#journey-crm-suite form.adjust button")
        assert texts(browser, "#notice") == ["Adjustment recorded: the next run scores it."]
        assert texts(browser, "#adjustments td.reason") == ["<i>called back</i>"]  # text, not markup
        assert texts(browser, "#adjustments td.author") == ["sam@acme.example"]
        assert texts(browser, "#audit td.action") == ["adjust"]
        assert browser.evaluate("document.querySelectorAll('#journey-crm-suite svg .mark').length") == 1

        browser.click("header a[href='/console/queue']")  # the menu, as a person goes there
        assert texts(browser, "#queue tr.item td:nth-child(2) a") == ["CO-HOT", "CO-WARM"]
        browser.click("tr[data-lead='CO-HOT'] form.accept button")
        assert texts(browser, "#notice") == ["Accepted."]
        fill(browser, {"tr[data-lead='CO-WARM'] form.reject select": "wrong-persona"})
        browser.click("tr[data-lead='CO-WARM'] form.reject button")
        assert texts(browser, "#notice") == ["Rejected and sent back to nurture."]
        assert texts(browser, "#queue tr.item") == []
        problems = browser.problems()
    finally:
        browser.close()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)
    assert problems == []
