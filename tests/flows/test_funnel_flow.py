"""Stages and triggers through real ``score_portfolio`` runs, on SQLite and PostgreSQL.

One product line (``widgets``) has a five-stage funnel with promotions and terminal stages; another
(``gadgets``) has a single stage and the triggers, so each behaviour is checked on its own. Every
pricing-page view is worth 10 points; nothing decays, so the expected scores are exact.
"""

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import Session

from flows.database import engine_for
from flows.ingestion import ingest_file
from flows.scoring import score_portfolio
from stages.portfolio import load_portfolio
from store.queries import lead_history
from store.tables import ScoreSnapshot, StageTransition, TriggerFiring
from tests.nurture.conftest import Recorder, smtp_server  # noqa: F401  (the fixture)

T1 = datetime(2026, 11, 1, tzinfo=UTC)
T2 = datetime(2026, 11, 10, tzinfo=UTC)
T3 = datetime(2026, 11, 20, tzinfo=UTC)
SECRET = "s3cret"

PORTFOLIO = """
scale: {min: 0, max: 100}
scoring: {partition_size: 1000}
product_lines:
  widgets:
    bands: {cold: [0, 30], warm: [30, 60], hot: [60, 100]}
    qualifications: {MQL: 30, SQL: 60}
    stages:
      discovery: {model: m.yaml, promote_at: 30}
      evaluation: {model: m.yaml, promote_at: 60, entry: ENTRY_POLICY}
      purchase: {model: m.yaml}
      customer: {terminal: true, status: customer}
      lost: {terminal: true, status: lost}
  gadgets:
    bands: {low: [0, 50], high: [50, 100]}
    qualifications: {MQL: 50}
    stages:
      only: {model: m.yaml}
    triggers:
      - name: went hot
        when: {score: {crosses_up: 50}}
        actions: [{tag: hot}, {webhook: {url: "HOOK_URL", secret_env: LEADSCORE_TEST_HOOK_SECRET}}]
      - name: cooled
        when: {score: {crosses_down: 50}}
        actions: [{untag: hot}]
      - name: became MQL
        when: {qualification_reached: MQL}
        actions: [{tag: mql}]
"""
MODEL = """
kind: points
behaviour:
  - {name: pricing page, event: page_view, where: {url: {contains: /pricing}}, points: 10, per: occurrence, max: 100}
"""


class Hook:
    """A loopback webhook receiver answering ``status`` and recording what it got."""

    def __init__(self) -> None:
        self.status = 200
        self.requests: list[tuple[dict[str, str], bytes]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.requests.append((dict(self.headers), body))
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hook]:
    monkeypatch.setenv("LEADSCORE_TEST_HOOK_SECRET", SECRET)
    receiver = Hook()
    yield receiver
    receiver.server.shutdown()


class Store:
    """A portfolio folder and a database, with helpers to feed files and run ``score_portfolio``."""

    def __init__(self, folder: Path, url: str, entry: str, hook_url: str) -> None:
        self.folder, self.url = folder, url
        (folder / "portfolio.yaml").write_text(PORTFOLIO.replace("ENTRY_POLICY", entry).replace("HOOK_URL", hook_url))
        (folder / "m.yaml").write_text(MODEL)
        self.portfolio = load_portfolio(folder / "portfolio.yaml")
        self.files = 0

    def ingest(self, kind: str, text: str) -> Any:
        self.files += 1
        path = self.folder / f"{kind}-{self.files}.csv"
        path.write_text(text)
        return ingest_file(self.portfolio, kind, path, self.url)

    def views(self, lead: str, line: str, *days: int) -> None:
        """One pricing view at noon on each of these days of November 2026."""
        rows = [f"{lead}-{line}-{day},{lead},page_view,2026-11-{day:02d}T12:00:00Z,{line},/pricing" for day in days]
        self.ingest("events", "event_id,lead_id,type,occurred_at,product_line,url\n" + "\n".join(rows) + "\n")

    def score(self, as_of: datetime) -> dict[str, Any]:
        return score_portfolio(str(self.folder / "portfolio.yaml"), as_of=as_of, database_url=self.url)

    def journey(self, lead: str, line: str = "widgets") -> dict[str, Any]:
        history = lead_history(engine_for(self.url), lead, line)
        assert history is not None
        return history["journeys"][0]

    def tags(self, lead: str) -> list[str]:
        history = lead_history(engine_for(self.url), lead)
        assert history is not None
        return history["tags"]

    def rows(self, table: type) -> list[Any]:
        with Session(engine_for(self.url)) as session:
            return list(session.exec(select(table).order_by(table.id)).scalars())  # type: ignore[call-overload]


def make_store(tmp_path: Path, url: str, entry: str, hook_url: str = "http://127.0.0.1:9/none") -> Store:
    store = Store(tmp_path, url, entry, hook_url)
    leads = "lead_id,email,product_interest\n" + "".join(
        f"{lead},{lead.lower()}@example.com,{line}\n"
        for lead, line in [("A", "widgets"), ("B", "widgets"), ("C", "widgets"), ("D", "widgets"), ("G", "gadgets")]
    )
    store.ingest("leads", leads)
    return store


def moves(journey: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (m["from_stage"], m["to_stage"], m["reason"], m["score_before"], m["score_after"])
        for m in journey["transitions"]
    ]


def test_reset_counts_only_the_events_after_the_promotion(tmp_path: Path, database_url: str) -> None:
    store = make_store(tmp_path, database_url, "reset")
    store.ingest(
        "events",
        "event_id,lead_id,type,occurred_at,product_line,url\n"
        + "".join(f"a{i},A,page_view,2026-10-0{i}T12:00:00Z,widgets,/pricing\n" for i in range(1, 5)),
    )
    store.score(T1)
    journey = store.journey("A")
    assert (journey["stage"], journey["score"], journey["band"]) == ("evaluation", 0.0, "cold")
    assert journey["stage_entered_at"] == T1
    assert moves(journey) == [("discovery", "evaluation", "threshold", 40.0, 0.0)]
    # The MQL milestone was reached in discovery (40 ≥ 30) and survives the reset.
    assert [(q["qualification"], q["stage"], q["score"]) for q in journey["qualifications"]] == [
        ("MQL", "discovery", 40.0)
    ]
    assert journey["qualifications"][0]["breakdown"] == [{"rule": "pricing page", "points": 40.0}]

    store.views("A", "widgets", 2, 3)
    store.score(T2)
    journey = store.journey("A")
    assert (journey["stage"], journey["score"]) == ("evaluation", 20.0)
    assert journey["breakdown"] == [{"rule": "pricing page", "points": 20.0}]


def test_carry_keeps_the_points_and_a_lead_can_climb_two_stages_in_one_run(tmp_path: Path, database_url: str) -> None:
    store = make_store(tmp_path, database_url, "carry")
    store.ingest(
        "events",
        "event_id,lead_id,type,occurred_at,product_line,url\n"
        + "".join(f"a{i},A,page_view,2026-10-0{i}T12:00:00Z,widgets,/pricing\n" for i in range(1, 5))
        + "".join(f"b{i},B,page_view,2026-10-0{i}T12:00:00Z,widgets,/pricing\n" for i in range(1, 8)),
    )
    summary = store.score(T1)
    a, b = store.journey("A"), store.journey("B")
    assert (a["stage"], a["score"], a["band"], a["qualification"]) == ("evaluation", 40.0, "warm", "MQL")
    assert moves(a) == [("discovery", "evaluation", "threshold", 40.0, 40.0)]
    assert (b["stage"], b["score"], b["qualification"]) == ("purchase", 70.0, "SQL")
    assert moves(b) == [
        ("discovery", "evaluation", "threshold", 70.0, 70.0),
        ("evaluation", "purchase", "threshold", 70.0, 70.0),
    ]
    reached = [(q["qualification"], q["stage"]) for q in b["qualifications"]]
    assert reached == [("MQL", "discovery"), ("SQL", "discovery")]
    assert summary["transitions"]["widgets"] == {
        "discovery → evaluation (threshold)": 2,
        "evaluation → purchase (threshold)": 1,
    }
    # The history shows each state the run went through: the crossing in discovery, then each stage entered.
    assert [(s["stage"], s["score"]) for s in b["history"]] == [
        ("discovery", 70.0),
        ("evaluation", 70.0),
        ("purchase", 70.0),
    ]

    store.views("A", "widgets", 2, 3)
    store.score(T2)
    a = store.journey("A")
    assert (a["stage"], a["score"]) == ("purchase", 60.0)
    assert moves(a)[-1] == ("evaluation", "purchase", "threshold", 60.0, 60.0)

    # Re-running a run changes nothing: no new transition, snapshot or milestone.
    counts = (len(store.rows(StageTransition)), len(store.rows(ScoreSnapshot)))
    store.score(T2)
    assert (len(store.rows(StageTransition)), len(store.rows(ScoreSnapshot))) == counts


def test_crm_updates_move_backwards_and_terminal_stages_stop_scoring(tmp_path: Path, database_url: str) -> None:
    store = make_store(tmp_path, database_url, "carry")
    store.ingest(
        "events",
        "event_id,lead_id,type,occurred_at,product_line,url\n"
        "c1,C,page_view,2026-10-01T12:00:00Z,widgets,/pricing\n"
        "d1,D,page_view,2026-10-01T12:00:00Z,widgets,/pricing\n"
        "d2,D,page_view,2026-10-02T12:00:00Z,widgets,/pricing\n",
    )
    store.score(T1)
    updates = (
        "lead_id,product_line,stage,changed_at,source\n"
        "C,widgets,evaluation,2026-11-02T09:00:00Z,salesforce\n"
        "C,widgets,discovery,2026-11-03T09:00:00Z,salesforce\n"
        "D,widgets,lost,2026-11-02T09:00:00Z,salesforce\n"
        "X,widgets,lost,2026-11-02T09:00:00Z,salesforce\n"
        "C,widgets,negotiation,2026-11-02T09:00:00Z,salesforce\n"
        "C,widgets,discovery,yesterday,salesforce\n"
    )
    outcome = store.ingest("stage_updates", updates)
    assert (outcome.report.inserted, outcome.report.rejected) == (3, 3)
    assert [(r.line, r.field) for r in outcome.rejects] == [(5, "lead_id"), (6, "stage"), (7, "changed_at")]
    assert "unknown stage 'negotiation'" in outcome.rejects[1].reason
    assert "discovery, evaluation, purchase, customer, lost" in outcome.rejects[1].reason

    store.views("D", "widgets", 4, 5, 6)  # after D was lost: never scored
    store.score(T2)
    c, d = store.journey("C"), store.journey("D")
    assert moves(c) == [
        ("discovery", "evaluation", "external", 10.0, None),
        ("evaluation", "discovery", "external", None, 10.0),
    ]
    assert [m["source"] for m in c["transitions"]] == ["salesforce", "salesforce"]
    assert (c["stage"], c["status"], c["score"]) == ("discovery", "active", 10.0)
    assert c["stage_entered_at"] == datetime(2026, 11, 3, 9, tzinfo=UTC)
    assert (d["stage"], d["status"], d["score"]) == ("lost", "lost", 20.0)
    assert moves(d) == [("discovery", "lost", "external", 20.0, None)]

    # Re-ingesting the file and re-running change nothing.
    again = store.ingest("stage_updates", updates)
    assert (again.report.inserted, again.report.rejected) == (0, 3)
    store.score(T2)
    assert len(store.rows(StageTransition)) == 3

    # Sales re-open D: it is active and scored again, with everything it did, but stays where sales put
    # it (50 ≥ promote_at 30) until it shows activity after the move.
    reopen = "lead_id,product_line,stage,changed_at,source\nD,widgets,discovery,2026-11-12T09:00:00Z,\n"
    store.ingest("stage_updates", reopen)
    store.score(T3)
    d = store.journey("D")
    assert (d["stage"], d["status"], d["score"]) == ("discovery", "active", 50.0)
    assert moves(d)[1:] == [("lost", "discovery", "external", 20.0, 50.0)]
    assert d["transitions"][1]["source"] == "crm"

    store.views("D", "widgets", 21)  # new activity after the move earns the promotion
    store.score(datetime(2026, 11, 22, tzinfo=UTC))
    d = store.journey("D")
    assert (d["stage"], d["score"]) == ("purchase", 60.0)
    assert moves(d)[2:] == [
        ("discovery", "evaluation", "threshold", 60.0, 60.0),
        ("evaluation", "purchase", "threshold", 60.0, 60.0),
    ]


def test_triggers_fire_once_per_crossing_and_rearm(tmp_path: Path, database_url: str, hook: Hook) -> None:
    store = make_store(tmp_path, database_url, "carry", hook.url)
    store.views("G", "gadgets", 1, 2, 3, 4, 5, 6)
    summary = store.score(datetime(2026, 11, 7, tzinfo=UTC))
    assert summary["firings"]["gadgets"] == {"became MQL: tag": 1, "went hot: tag": 1, "went hot: webhook": 1}
    assert store.tags("G") == ["hot", "mql"]
    assert summary["actions"]["webhook"] == {"done": 1}
    headers, body = hook.requests[0]
    payload = json.loads(body)
    assert (payload["trigger"], payload["lead"]["lead_id"], payload["score"], payload["score_before"]) == (
        "went hot",
        "G",
        60.0,
        None,
    )
    expected = hmac.new(SECRET.encode(), f"{headers['X-Leadscore-Timestamp']}.".encode() + body, hashlib.sha256)
    assert headers["X-Leadscore-Signature"] == f"sha256={expected.hexdigest()}"
    assert headers["X-Leadscore-Delivery"] == str(payload["firing_id"])

    # The same run again: nothing fires twice, nothing is posted again.
    store.score(datetime(2026, 11, 7, tzinfo=UTC))
    assert len(store.rows(TriggerFiring)) == 3 and len(hook.requests) == 1

    # A manual −30 brings the score back under 50: "cooled" fires, and "went hot" re-arms.
    store.ingest(
        "events",
        "event_id,lead_id,type,occurred_at,product_line,points,reason\n"
        "g-adj,G,manual_adjustment,2026-11-08T12:00:00Z,gadgets,-30,wrong person\n",
    )
    summary = store.score(datetime(2026, 11, 9, tzinfo=UTC))
    assert summary["firings"]["gadgets"] == {"cooled: untag": 1}
    assert store.tags("G") == ["mql"]

    store.views("G", "gadgets", 10, 11, 12)
    summary = store.score(datetime(2026, 11, 13, tzinfo=UTC))
    # Crossed up again: fires again; the MQL milestone is sticky and does not.
    assert summary["firings"]["gadgets"] == {"went hot: tag": 1, "went hot: webhook": 1}
    assert store.tags("G") == ["hot", "mql"]
    fired = [(f.trigger, f.action, f.direction, f.score, f.score_before) for f in store.rows(TriggerFiring)]
    assert fired == [
        ("became MQL", "tag", "reached", 60.0, None),
        ("went hot", "tag", "up", 60.0, None),
        ("went hot", "webhook", "up", 60.0, None),
        ("cooled", "untag", "down", 30.0, 60.0),
        ("went hot", "tag", "up", 60.0, 30.0),
        ("went hot", "webhook", "up", 60.0, 30.0),
    ]
    assert len(hook.requests) == 2


def test_a_failing_webhook_is_recorded_and_retried_without_blocking_the_run(
    tmp_path: Path, database_url: str, hook: Hook
) -> None:
    store = make_store(tmp_path, database_url, "carry", hook.url)
    store.views("G", "gadgets", 1, 2, 3, 4, 5)
    hook.status = 503
    summary = store.score(datetime(2026, 11, 7, tzinfo=UTC))
    assert summary["actions"]["webhook"] == {"retry": 1}
    assert store.journey("G", "gadgets")["score"] == 50.0  # the run finished its work
    (webhook,) = [f for f in store.rows(TriggerFiring) if f.action == "webhook"]
    assert (webhook.status, webhook.attempts, webhook.outcome) == ("retry", 3, "HTTP 503: ")
    assert len(hook.requests) == 3

    hook.status = 200
    summary = store.score(datetime(2026, 11, 8, tzinfo=UTC))  # nothing new fires; the open firing is retried
    assert summary["actions"]["webhook"] == {"done": 1}
    (webhook,) = [f for f in store.rows(TriggerFiring) if f.action == "webhook"]
    assert (webhook.status, webhook.attempts, webhook.outcome) == ("done", 4, "HTTP 200")
    assert len({headers["X-Leadscore-Delivery"] for headers, _ in hook.requests}) == 1


ALERT = """
      - name: alert owner
        when: {score: {crosses_up: 50}}
        actions: [{notify_owner: {}}, {enrol: gadget-care}]
"""


def _alerting_store(tmp_path: Path, database_url: str) -> Store:
    store = make_store(tmp_path, database_url, "carry")
    text = (tmp_path / "portfolio.yaml").read_text()
    (tmp_path / "portfolio.yaml").write_text(text.replace("    triggers:\n", "    triggers:" + ALERT, 1))
    store.portfolio = load_portfolio(tmp_path / "portfolio.yaml")
    store.ingest("leads", "lead_id,email,first_name,owner_email\nG,g@example.com,Grace,rep@acme.example\n")
    store.views("G", "gadgets", 1, 2, 3, 4, 5)
    return store


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    from store.settings import get_settings

    for name, value in env.items():
        monkeypatch.setenv(f"LEADSCORE_{name.upper()}", value)
    get_settings.cache_clear()


def test_the_owner_is_notified_through_smtp_once_per_crossing(
    tmp_path: Path,
    database_url: str,
    smtp_server: tuple[Recorder, int],  # noqa: F811  (the fixture imported above)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from email import message_from_bytes, policy

    from store.settings import get_settings

    recorder, port = smtp_server
    _settings(monkeypatch, smtp_host="127.0.0.1", smtp_port=str(port), outbox_dir=str(tmp_path / "outbox"))
    store = _alerting_store(tmp_path, database_url)
    try:
        summary = store.score(datetime(2026, 11, 7, tzinfo=UTC))
        assert summary["actions"]["notify_owner"] == {"done": 1}
        assert summary["actions"]["enrol"] == {"done": 1}
        ((_, recipients, raw),) = recorder.received
        assert recipients == ["rep@acme.example"]
        message = message_from_bytes(raw, policy=policy.default)
        assert "alert owner" in message["Subject"] and "Grace" in message["Subject"]
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "pricing page" in text and "+50.0" in text and "{{" not in text

        store.score(datetime(2026, 11, 7, tzinfo=UTC))  # the same run again sends nothing
        assert len(recorder.received) == 1
        (firing,) = [f for f in store.rows(TriggerFiring) if f.action == "notify_owner"]
        assert (firing.status, firing.attempts) == ("done", 1)
        (request,) = nurture_requests(database_url)
        assert request == ("gadget-care", "enrol", "trigger: alert owner")
    finally:
        get_settings.cache_clear()


def test_without_smtp_the_owner_alert_lands_in_the_outbox(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from store.settings import get_settings

    outbox = tmp_path / "outbox"
    _settings(monkeypatch, outbox_dir=str(outbox))
    monkeypatch.delenv("LEADSCORE_SMTP_HOST", raising=False)
    store = _alerting_store(tmp_path, database_url)
    try:
        store.score(datetime(2026, 11, 7, tzinfo=UTC))
    finally:
        get_settings.cache_clear()
    (eml,) = outbox.rglob("*.eml")
    assert "To: rep@acme.example" in eml.read_text()


def nurture_requests(url: str) -> list[tuple[str, str, str]]:
    from store.nurture_tables import NurtureRequest

    with Session(engine_for(url)) as session:
        rows = session.exec(select(NurtureRequest.track, NurtureRequest.action, NurtureRequest.reason))  # type: ignore[call-overload]
        return [tuple(row) for row in rows]
