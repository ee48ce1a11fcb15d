"""The nurture, models and report pages over plain HTTP: who may open them, a preview that is the email a
run would send (escaped, in a sandboxed frame), an audited test-send, rules with their place and use."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from tests.service.conftest import Live
from tests.service.console.conftest import AS_OF, XSS, signed_in

PAGES = (
    "/console/nurture",
    "/console/models",
    "/console/report",
    "/console/nurture/preview?track=crm-warm-up&step=0&lead=CO-HOT",
)


def test_sales_cannot_open_the_nurture_models_report_or_users_pages(console: Live) -> None:
    sales = signed_in(console, "sam@acme.example")
    assert [sales.client.get(path).status_code for path in (*PAGES, "/console/users")] == [403] * 5
    form = {"track": "crm-warm-up", "step": "0", "lead": "CO-HOT", "to": "me@acme.example"}
    assert sales.post("/console/nurture/test-send", form).status_code == 403
    menu = sales.get("/console/leads").text
    assert ("/console/nurture" in menu, "/console/models" in menu, "/console/report" in menu) == (False, False, False)
    marketing = signed_in(console, "mia@acme.example")
    assert [marketing.client.get(path).status_code for path in PAGES] == [200] * 4
    assert marketing.get("/console/users").status_code == 403


def test_nurture_page_lists_tracks_steps_and_previews_any_step_as_any_lead(console: Live) -> None:
    marketing = signed_in(console, "mia@acme.example")
    page = marketing.get("/console/nurture").text
    assert re.findall(r'<section class="card track" id="track-([^"]+)"', page) == ["crm-warm-up", "analytics-nudge"]
    assert re.findall(r'<tr class="email" data-step="(\d+)" data-template="([^"]+)"', page) == [
        ("0", "nurture_intro"), ("2", "nurture_case_study"), ("0", "nurture_intro"), ("3", "nurture_case_study"),
    ]  # fmt: skip
    assert "if opened then case study else end" in page and "wait 4d" in page

    shown = marketing.get("/console/nurture/preview", track="crm-warm-up", step="0", lead="CO-XSS")
    assert shown.status_code == 200
    assert '<iframe class="email" id="html" sandbox=""' in shown.text
    assert "<b>Eve</b>" not in shown.text and "&lt;b&gt;Eve&lt;/b&gt;" in shown.text  # the text part, escaped
    assert XSS not in shown.text
    subject = re.search(r'<td id="subject">(.*?)</td>', shown.text)
    assert subject and subject.group(1).strip()
    wrong = marketing.get("/console/nurture/preview", track="crm-warm-up", step="1", lead="CO-HOT")
    assert wrong.status_code == 400 and "not an email step" in wrong.text
    assert marketing.get("/console/nurture/preview", track="crm-warm-up", step="0", lead="NOPE").status_code == 400


def test_test_send_goes_through_the_transport_needs_the_csrf_token_and_is_audited(console: Live) -> None:
    marketing = signed_in(console, "mia@acme.example")
    form = {"track": "crm-warm-up", "step": "2", "lead": "CO-HOT", "to": "mia@acme.example"}
    forged = marketing.client.post("/console/nurture/test-send", data=form | {"csrf": "0" * 64})
    assert forged.status_code == 403
    assert marketing.post("/console/nurture/test-send", form | {"to": "a@b.example, c@d.example"}).status_code == 400
    sent = marketing.post("/console/nurture/test-send", form)
    assert sent.status_code == 303 and "done=testsent" in sent.headers["location"]
    outbox = Path(console.log.name).parent / "outbox" / "test-sends"
    files = list(outbox.glob("*.eml"))
    assert len(files) == 1 and b"To: mia@acme.example" in files[0].read_bytes()
    lead = marketing.get("/console/leads/CO-HOT").text
    assert "test_send" in lead and "mia@acme.example" in lead


def test_models_page_shows_each_rule_in_words_where_it_lives_and_its_use(console: Live) -> None:
    page = signed_in(console, "admin@acme.example").get("/console/models").text
    stage = page.split('id="model-crm-suite-discovery"')[1].split("</section>")[0]
    row = re.search(r'<tr data-rule="decision maker">(.*?)</tr>', stage, re.S)
    assert row
    assert "job_title matches" in row.group(1) and "+15" in row.group(1) and "fit total ≤ 35" in row.group(1)
    lines = Path("examples/demo/models/crm-suite/discovery.yaml").read_text().splitlines()
    where = re.search(r'class="where">models/crm-suite/discovery.yaml:(\d+)<', row.group(1))
    assert where and lines[int(where.group(1)) - 1].strip() == "- name: decision maker"
    # Hana and Wes (decision makers) and Eve are in evaluation now; Carl is the one analytics-cloud journey.
    assert _use(page, "crm-suite", "discovery") == {}
    assert _use(page, "crm-suite", "evaluation") == {
        "decision maker": ("2", "20.0"),
        "mid-market company": ("3", "15.0"),
    }
    analytics = {"intern": ("1", "-10.0"), "small team": ("1", "-5.0"), "pricing page": ("1", "5.0")}
    assert _use(page, "analytics-cloud", "discovery") == analytics | {"scale: minimum": ("1", "10.0")}


def _use(page: str, line: str, stage: str) -> dict[str, tuple[str, str]]:
    """The rules of a stage that score some journey: rule → (journeys, total)."""
    part = page.split(f'id="model-{line}-{stage}"')[1].split("</section>")[0]
    rows = re.findall(
        r'data-rule="([^"]+)">.*?class="n journeys">([\d,]+)</td><td class="n total">([-\d,.]+)<', part, re.S
    )
    return {rule: (n, total) for rule, n, total in rows if n != "0"}


def test_report_page_serves_the_report_sections_and_the_weekly_rate(console: Live) -> None:
    page = signed_in(console, "mia@acme.example").get("/console/report").text
    keys = re.findall(r'<section class="card report" id="([^"]+)"', page)
    assert keys == [
        "score-distribution", "funnel", "qualifications", "conversion-by-band", "top-movers", "nurture",
        "nurture-emails", "nurture-uplift", "audiences", "model-review", "content", "mql-to-opportunity",
    ]  # fmt: skip
    weekly = page.split('id="mql-to-opportunity"')[1].split("</section>")[0]
    # The three crm-suite MQLs of the run a day ago: none has moved on to the opportunity stage yet.
    rows = re.findall(r"<tr><td>crm-suite</td><td>([\d-]+)</td><td class=\"n\">(\d+)</td><td class=\"n\">(\d+)</td>"
                      r"<td>([\d.]+%)</td><td>(\d+%)</td></tr>", weekly)  # fmt: skip
    assert rows == [(_monday(), "3", "0", "0.0%", "30%")]
    assert weekly.count("<svg") == 1 and ">target</text>" in weekly
    review = page.split('id="model-review"')[1].split("</section>")[0]
    assert "n/a: no outcome in the last" in review  # no journey became customer or lost yet: no lift chart


def _monday() -> str:
    day = AS_OF.date()
    return (day - timedelta(days=day.weekday())).isoformat()
