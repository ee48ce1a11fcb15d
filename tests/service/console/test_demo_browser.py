"""The console on the demo's store (``leadscore demo`` at a small size, run here), in headless Chromium: the
pages people look at, and an email previewed as a lead from the nurture page. It writes the README's
screenshots into ``docs/``."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from store.users import add_user
from tests.browser import CHROMIUM, DevTools
from tests.service.conftest import ROOT, Live
from tests.service.console.conftest import PASSWORD, SESSION_SECRET, screenshot_dir
from tests.service.console.test_browser import fill, texts

DEMO = ["--days", "10", "--leads", "300", "--events", "6000"]


@pytest.fixture(scope="module")
def demo_console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """``leadscore demo`` into a fresh folder (its own Prefect home), then the service over its store."""
    root = tmp_path_factory.mktemp("demo-console")
    drop = ("LEADSCORE_DATABASE_URL", "LEADSCORE_OUTBOX_DIR", "LEADSCORE_SMTP_HOST", "PREFECT_API_URL")
    env = {name: value for name, value in os.environ.items() if name not in drop}
    env |= {"PYTHONPATH": str(ROOT), "PREFECT_HOME": str(root / "prefect"), "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}  # fmt: skip
    command = [sys.executable, "-m", "flows.cli", "demo", "--workdir", str(root / "demo"), *DEMO]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    service = Live(f"sqlite:///{root / 'demo' / 'leadscore.db'}", root, session_secret=SESSION_SECRET)
    try:
        add_user(service.engine, "ada@acme-cloud.example", "Ada Admin", "admin", PASSWORD)
        yield service
    finally:
        service.close()


def _screenshot(browser: DevTools, name: str) -> None:
    """The page as a person sees it on a 1280 × 900 screen (long pages cut at the fold)."""
    shot = browser.call("Page.captureScreenshot", format="png")
    folder = screenshot_dir()
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(base64.b64decode(shot["data"]))


def _enrolled(live: Live) -> str:
    """A lead the demo enrolled in the crm-warm-up track (the first by lead id)."""
    sql = ("SELECT l.lead_id FROM nurture_enrolments e JOIN leads l ON l.key = e.lead_key "
           "WHERE e.track = 'crm-warm-up' ORDER BY l.lead_id LIMIT 1")  # fmt: skip
    with live.engine.connect() as conn:
        return conn.execute(text(sql)).scalar_one()


@pytest.mark.slow
def test_demo_store_pages_and_an_email_previewed_as_a_lead_in_chromium(demo_console: Live, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium is not installed here (`apt-get install -y chromium`; .ci/run installs it)")
    lead = _enrolled(demo_console)
    browser = DevTools(tmp_path / "chromium-profile")
    try:
        browser.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
        browser.load(f"{demo_console.base}/console/leads")
        fill(browser, {"#email": "ada@acme-cloud.example", "#password": PASSWORD})
        browser.click("#sign-in")
        assert len(texts(browser, "#leads tbody tr")) == 50  # a page of the demo's journeys, best first
        scores = [float(s) for s in texts(browser, "#leads td.score")]
        assert scores == sorted(scores, reverse=True)
        _screenshot(browser, "console-leads.png")

        browser.click("#leads tbody tr:first-child a")
        assert browser.evaluate("document.querySelectorAll('svg.chart').length") >= 1
        _screenshot(browser, "console-lead.png")

        browser.click("header a[href='/console/queue']")
        assert len(texts(browser, "#queue tr.item")) > 0
        assert len(texts(browser, "#queue tr.overdue .alerted")) > 0  # the demo's daily runs alerted the owners
        _screenshot(browser, "console-queue.png")

        browser.click("header a[href='/console/nurture']")
        fill(browser, {"#track-crm-warm-up form.preview input[name=lead]": lead})
        browser.click("#track-crm-warm-up form.preview button")
        assert browser.evaluate("location.pathname") == "/console/nurture/preview"
        subject = texts(browser, "#subject")[0]
        assert subject and texts(browser, "#text")[0]
        srcdoc = browser.evaluate("document.querySelector('#html').srcdoc")
        assert "<html" in srcdoc.lower() and browser.evaluate("document.querySelector('#html').sandbox.length") == 0
        _screenshot(browser, "console-preview.png")

        browser.click("header a[href='/console/models']")
        assert browser.evaluate("document.querySelectorAll('table.rules').length") == 6
        _screenshot(browser, "console-models.png")
        browser.click("header a[href='/console/report']")
        assert browser.evaluate("document.querySelectorAll('section.report svg').length") >= 5
        _screenshot(browser, "console-report.png")
        problems = browser.problems()
    finally:
        browser.close()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)
    assert problems == [], json.dumps(problems)[:2000]
