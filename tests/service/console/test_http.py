"""The console over plain HTTP against the real service: sign-in, permissions per role, CSRF on every form,
the leads list and its CSV, the lead page's actions and the sales queue, each action audited."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from store import console as store_console
from store.console_tables import AuditEntry, QueueDecision
from store.nurture_tables import NurtureRequest
from store.tables import Event, StageUpdate
from store.users import check_password
from tests.service.conftest import Live
from tests.service.console.conftest import XSS, Browser, signed_in


def _rows(live: Live, table: object, *where: object) -> list[dict[str, object]]:
    with live.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(select(table).where(*where))]  # type: ignore[call-overload]


def _lead_ids(page: str) -> list[str]:
    return [cell.split('">')[1].split("<")[0] for cell in page.split('<td><a href="/console/leads/')[1:]]


def test_pages_need_a_signed_in_user_and_a_wrong_password_is_refused(console: Live) -> None:
    browser = Browser(console)
    answer = browser.get("/console/leads", band="hot")
    assert (answer.status_code, answer.headers["location"]) == (
        303,
        "/console/login?next=%2Fconsole%2Fleads%3Fband%3Dhot",
    )
    assert browser.get("/console/leads.csv").status_code == 303
    wrong = browser.sign_in("sam@acme.example", "not the password")
    unknown = browser.sign_in("nobody@acme.example", "not the password")
    assert (wrong.status_code, unknown.status_code) == (401, 401)
    assert "Wrong email or password." in wrong.text and "Wrong email or password." in unknown.text
    assert browser.get("/console/leads").status_code == 303  # still nobody
    signed = browser.sign_in("SAM@acme.example ")
    assert (signed.status_code, signed.headers["location"]) == (303, "/console/leads")
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
    assert browser.get("/console/leads").status_code == 200
    # A forged cookie is an anonymous visitor.
    forged = Browser(console)
    forged.client.cookies.set("leadscore_console", cookie.split(";")[0].split("=", 1)[1][:-2] + "xx")
    assert forged.get("/console/leads").status_code == 303
    for who in (browser, forged):
        who.close()


def test_every_form_needs_the_csrf_token_of_its_own_session(console: Live) -> None:
    sam, sue = signed_in(console, "sam@acme.example"), signed_in(console, "sue@acme.example")
    adjust = {"product_line": "crm-suite", "points": "10", "reason": "met at a trade show"}
    assert sam.client.post("/console/leads/CO-HOT/adjust", data=adjust).status_code == 403  # no token
    foreign = sue.csrf("/console/leads")
    assert sam.client.post("/console/leads/CO-HOT/adjust", data={"csrf": foreign, **adjust}).status_code == 403
    decide = {"lead_id": "CO-HOT", "product_line": "crm-suite", "decision": "accept"}
    assert sam.client.post("/console/queue/decide", data=decide).status_code == 403
    anonymous = Browser(console)
    login = {"email": "sam@acme.example", "password": "correct horse battery", "next": "/console"}
    assert anonymous.client.post("/console/login", data=login).status_code == 403
    assert sam.client.post("/console/logout", data={"csrf": "0" * 64}).status_code == 403
    assert _rows(console, Event.__table__, Event.__table__.c.type == "manual_adjustment") == []
    assert _rows(console, QueueDecision.__table__) == []
    for who in (sam, sue, anonymous):
        who.close()


def test_roles_sales_cannot_open_admin_pages_marketing_cannot_move_or_decide(console: Live) -> None:
    sam, mia, ada = (signed_in(console, f"{who}@acme.example") for who in ("sam", "mia", "admin"))
    new_user = {"email": "eve@acme.example", "name": "Eve", "role": "admin", "password": "0123456789ab"}
    assert sam.get("/console/users").status_code == 403
    assert sam.post("/console/users", new_user).status_code == 403
    assert mia.get("/console/users").status_code == 403
    assert check_password(console.engine, "eve@acme.example", "0123456789ab") is None
    assert mia.post("/console/leads/CO-HOT/move", {"product_line": "crm-suite", "stage": "purchase"}).status_code == 403
    decide = {"lead_id": "CO-HOT", "product_line": "crm-suite", "decision": "accept"}
    assert mia.post("/console/queue/decide", decide).status_code == 403
    track = {"track": "crm-warm-up", "action": "enrol"}
    assert sam.post("/console/leads/CO-HOT/track", track).status_code == 403
    page = ada.get("/console/users")
    assert page.status_code == 200 and "sam@acme.example" in page.text
    short = ada.post("/console/users", new_user | {"password": "short"}, "/console/users")
    assert short.status_code == 400 and "at least 10 characters" in short.text
    assert ada.post("/console/users", new_user, "/console/users").status_code == 303
    assert check_password(console.engine, "eve@acme.example", "0123456789ab").role == "admin"  # type: ignore[union-attr]
    audit = _rows(console, AuditEntry.__table__, AuditEntry.__table__.c.action == "add_user")
    assert [(a["actor"], a["detail"]) for a in audit] == [
        ("admin@acme.example", {"user": "eve@acme.example", "role": "admin"})
    ]
    for who in (sam, mia, ada):
        who.close()


def test_leads_list_filters_sorts_pages_and_exports_the_filter(console: Live) -> None:
    mia = signed_in(console, "mia@acme.example")
    page = mia.get("/console/leads").text
    # score ↓: 15, 15, 5, 0; equal scores newest journey first (the score index's own order: a page stops early)
    assert _lead_ids(page) == ["CO-WARM", "CO-HOT", "CO-XSS", "CO-COLD"]
    assert _lead_ids(mia.get("/console/leads", sort="score_asc").text) == ["CO-COLD", "CO-XSS", "CO-HOT", "CO-WARM"]
    assert _lead_ids(mia.get("/console/leads", q="globex").text) == ["CO-HOT", "CO-COLD"]  # company
    assert _lead_ids(mia.get("/console/leads", q="CO-WARM").text) == ["CO-WARM"]  # id
    assert _lead_ids(mia.get("/console/leads", q="hana@").text) == ["CO-HOT"]  # email
    assert _lead_ids(mia.get("/console/leads", q="WES").text) == ["CO-WARM"]  # first name
    assert _lead_ids(mia.get("/console/leads", q="warm").text) == ["CO-WARM"]  # last name
    assert _lead_ids(mia.get("/console/leads", q="lobex").text) == []  # the start of a field, not its middle
    assert _lead_ids(mia.get("/console/leads", owner="sue@acme.example").text) == ["CO-XSS"]
    assert _lead_ids(mia.get("/console/leads", product_line="analytics-cloud").text) == ["CO-COLD"]
    assert _lead_ids(mia.get("/console/leads", stage="evaluation", sort="lead_id").text) == [
        "CO-HOT",
        "CO-WARM",
        "CO-XSS",
    ]
    assert _lead_ids(mia.get("/console/leads", mql_since="2000-01-01", sort="lead_id").text) == [
        "CO-HOT",
        "CO-WARM",
        "CO-XSS",
    ]
    assert _lead_ids(mia.get("/console/leads", mql_since="2999-01-01").text) == []
    assert mia.get("/console/leads", mql_since="yesterday").status_code == 400
    first = mia.get("/console/leads", sort="lead_id", page=1).text
    assert "<b>Eve</b>" not in first and "&lt;b&gt;Eve&lt;/b&gt;" in first
    exported = mia.get("/console/leads.csv", stage="evaluation", sort="lead_id")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert exported.headers["content-disposition"] == 'attachment; filename="leads.csv"'
    assert [(r["lead_id"], r["score"], r["owner_email"]) for r in rows] == [
        ("CO-HOT", "15.0", "sam@acme.example"),
        ("CO-WARM", "15.0", "sam@acme.example"),
        ("CO-XSS", "5.0", "sue@acme.example"),
    ]
    assert rows[2]["company"] == "'=HYPERLINK(1)"  # a spreadsheet shows it, never runs it
    mia.close()


def test_lead_page_escapes_and_adjust_move_track_are_recorded_with_their_author(console: Live) -> None:
    sam, mia = signed_in(console, "sam@acme.example"), signed_in(console, "mia@acme.example")
    page = sam.get("/console/leads/CO-XSS").text
    assert XSS not in page and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    # One promoting run: the state that crossed and the new stage's state (history per crossing), one
    # stage move marked on the chart.
    assert page.count('class="mark"') == 1 and page.count('class="point"') == 2
    assert "→ evaluation</text>" in page
    assert "SQL</td><td>" in page  # the milestones table
    assert (
        sam.post("/console/leads/CO-HOT/adjust", {"product_line": "crm-suite", "points": "5", "reason": ""}).status_code
        == 400
    )
    adjust = {"product_line": "crm-suite", "points": "12.5", "reason": "asked for a quote <by phone>"}
    assert sam.post("/console/leads/CO-HOT/adjust", adjust).status_code == 303
    assert sam.post("/console/leads/CO-HOT/move", {"product_line": "crm-suite", "stage": "purchase"}).status_code == 303
    assert sam.post("/console/leads/CO-HOT/move", {"product_line": "crm-suite", "stage": "nowhere"}).status_code == 400
    assert mia.post("/console/leads/CO-HOT/track", {"track": "crm-warm-up", "action": "exit"}).status_code == 303
    events = _rows(console, Event.__table__, Event.__table__.c.type == "manual_adjustment")
    assert [(e["product_line"], e["points"], e["properties"]) for e in events] == [
        ("crm-suite", 12.5, {"points": 12.5, "reason": "asked for a quote <by phone>", "author": "sam@acme.example"})
    ]
    updates = _rows(console, StageUpdate.__table__)
    assert [(u["product_line"], u["stage"], u["source"], u["applied_run_id"]) for u in updates] == [
        ("crm-suite", "purchase", "console:sam@acme.example", None)
    ]
    requests = _rows(console, NurtureRequest.__table__)
    assert [(r["track"], r["action"], r["reason"]) for r in requests] == [
        ("crm-warm-up", "exit", "console: mia@acme.example")
    ]
    page = sam.get("/console/leads/CO-HOT").text
    assert '<td class="reason">asked for a quote &lt;by phone&gt;</td><td class="author">sam@acme.example</td>' in page
    actions = page.split('id="audit"')[1]
    assert [a.split("<")[0] for a in actions.split('class="action">')[1:]] == ["exit", "move_stage", "adjust"]
    for who in (sam, mia):
        who.close()


def test_queue_shows_each_owner_their_own_and_accept_reject_move_or_recycle(console: Live) -> None:
    sam, sue, mia = (signed_in(console, f"{who}@acme.example") for who in ("sam", "sue", "mia"))

    def queued(browser: Browser, **params: str) -> list[str]:
        page = browser.get("/console/queue", **params).text
        return [item.split('"')[0] for item in page.split('data-lead="')[1:]]

    assert queued(sam) == ["CO-HOT", "CO-WARM"]
    assert queued(sam, owner="sue@acme.example") == ["CO-HOT", "CO-WARM"]  # a sales rep sees only their own
    assert queued(sue) == ["CO-XSS"]
    assert queued(mia) == ["CO-HOT", "CO-WARM", "CO-XSS"]
    assert queued(mia, owner="sue@acme.example") == ["CO-XSS"]
    assert sam.get("/console/queue").text.count('class="item overdue"') == 2  # the SQL's 8 h have passed
    other = {"lead_id": "CO-XSS", "product_line": "crm-suite", "decision": "accept"}
    assert sam.post("/console/queue/decide", other, "/console/queue").status_code == 403
    accept = {"lead_id": "CO-HOT", "product_line": "crm-suite", "decision": "accept"}
    assert sam.post("/console/queue/decide", accept, "/console/queue").status_code == 303
    assert sam.post("/console/queue/decide", accept, "/console/queue").status_code == 409
    reject = {"lead_id": "CO-WARM", "product_line": "crm-suite", "decision": "reject"}
    assert sam.post("/console/queue/decide", reject | {"reason_code": "bored"}, "/console/queue").status_code == 400
    assert sam.post("/console/queue/decide", reject | {"reason_code": "not-now"}, "/console/queue").status_code == 303
    assert queued(sam) == [] and queued(mia) == ["CO-XSS"]
    decisions = _rows(console, QueueDecision.__table__)
    assert sorted((d["qualification"], d["decision"], d["reason_code"], d["actor"]) for d in decisions) == [
        ("MQL", "accepted", None, "sam@acme.example"),
        ("MQL", "rejected", "not-now", "sam@acme.example"),
        ("SQL", "accepted", None, "sam@acme.example"),
        ("SQL", "rejected", "not-now", "sam@acme.example"),
    ]
    moves = _rows(console, StageUpdate.__table__, StageUpdate.__table__.c.stage == "purchase")
    assert len(moves) >= 1 and all(m["source"] == "console:sam@acme.example" for m in moves)
    recycled = _rows(console, NurtureRequest.__table__, NurtureRequest.__table__.c.action == "enrol")
    assert [(r["track"], r["reason"]) for r in recycled] == [("crm-warm-up", "rejected by sales: not-now")]
    for who in (sam, sue, mia):
        who.close()


def test_became_mql_since_reads_the_same_pages_by_either_plan(console: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    """Few matches are read off the milestone index and sorted; many, by walking the score index (chosen by a
    count bounded at ``PROBE_ABOVE``): the pages must not depend on which."""
    flt = store_console.LeadFilter(mql_since=datetime(2000, 1, 1, tzinfo=UTC))

    def pages() -> list[tuple[list[str], bool]]:
        found = [store_console.list_leads(console.engine, flt, page, 2) for page in (1, 2)]
        return [([row["lead_id"] for row in rows], more) for rows, more in found]

    expected = [(["CO-WARM", "CO-HOT"], True), (["CO-XSS"], False)]
    assert pages() == expected  # 3 matches: read and sorted
    monkeypatch.setattr(store_console, "PROBE_ABOVE", 0)
    assert pages() == expected  # probed along the score index
