"""Owner digests: one email per owner a day, at the digest time, listing the leads with their reasons."""

import email
import email.policy
import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from flows.actions import notify_owners
from flows.digest import send_digests
from nurture.mail import Sender
from stages.portfolio import load_portfolio
from stages.spec import Action
from store import outbox
from store.settings import Settings
from tests.nurture.chat_firing import FIRING
from tests.nurture.world import write_portfolio

SENDER = Sender("leadscore", "leadscore@acme.example")


def firing(id_: int, lead_id: str, owner: str, digest: str = "08:00") -> dict:
    params = Action(notify_owner={"digest": digest}).params
    return {**FIRING, "id": id_, "lead_id": lead_id, "owner_email": owner, "params": json.dumps(params)}


def test_each_owner_gets_one_digest_a_day_at_its_time(engine: Engine, tmp_path: Path) -> None:
    portfolio = load_portfolio(write_portfolio(tmp_path))  # Europe/Paris
    settings = Settings(outbox_dir=tmp_path / "outbox")
    firings = [firing(1, "LD-1", "ann@acme.example"), firing(2, "LD-2", "ann@acme.example"),
               firing(3, "LD-3", "bob@acme.example")]  # fmt: skip
    early = datetime(2026, 11, 23, 6, 30, tzinfo=UTC)  # 07:30 in Paris: not yet
    assert send_digests(engine, portfolio, firings, SENDER, settings, early) == [] and outbox.messages(engine) == []
    at = datetime(2026, 11, 23, 7, 5, tzinfo=UTC)  # 08:05 in Paris
    outcomes = send_digests(engine, portfolio, firings, SENDER, settings, at)
    assert sorted((o[0], o[1], o[3]) for o in outcomes) == [(1, "done", "digest sent"), (2, "done", "digest sent"),
                                                             (3, "done", "digest sent")]  # fmt: skip
    sent = outbox.messages(engine)
    assert [(m["to_address"], m["subject"]) for m in sent] == [
        ("ann@acme.example", "[leadscore] 2 leads for you on 2026-11-23"),
        ("bob@acme.example", "[leadscore] 1 lead for you on 2026-11-23"),
    ]
    parsed = email.message_from_bytes(Path(sent[0]["path"]).read_bytes(), policy=email.policy.default)
    text = parsed.get_body(("plain",)).get_content()
    assert "1. Ada Lo (LD-1), A&B <Ltd>" in text and "2. Ada Lo (LD-2)" in text
    assert "Why: demo request (+30), pricing page (+20)" in text
    later = send_digests(engine, portfolio, [firing(4, "LD-4", "ann@acme.example")], SENDER, settings, at)
    assert later == [] and len(outbox.messages(engine)) == 2  # today's digest went: this one waits for tomorrow


def alert(id_: int, lead_id: str, owner: str | None, run_id: str = "r1") -> dict:
    params = json.dumps(Action(notify_owner={}).params)
    return {**FIRING, "id": id_, "lead_id": lead_id, "owner_email": owner, "run_id": run_id, "params": params}


def test_an_owner_alerted_more_than_the_limit_in_one_run_gets_those_alerts_as_one_digest(
    engine: Engine, tmp_path: Path
) -> None:
    path = write_portfolio(tmp_path)
    path.write_text(path.read_text() + "sales: {digest_alerts_above: 2}\n")
    portfolio = load_portfolio(path)
    settings = Settings(outbox_dir=tmp_path / "outbox")
    ann, bob = "ann@acme.example", "bob@acme.example"
    firings = [alert(1, "LD-1", ann), alert(2, "LD-2", ann), alert(3, "LD-3", ann), alert(4, "LD-4", bob),
               alert(5, "LD-5", ann, run_id="r2"), alert(6, "LD-6", None)]  # fmt: skip

    outcomes = notify_owners(engine, portfolio, firings, settings)

    assert sorted((o[0], o[1]) for o in outcomes) == [(1, "done"), (2, "done"), (3, "done"), (4, "done"),
                                                      (5, "done"), (6, "failed")]  # fmt: skip
    single = "[leadscore] hot lead: Ada Lo (A&B <Ltd>) is hot at 72.5 on CRM Suite"
    sent = outbox.messages(engine)
    assert [(m["to_address"], m["subject"], m["ref"]) for m in sent] == [
        (bob, single, "firing:4"),
        (ann, single, "firing:5"),  # another run's: within the limit
        (ann, "[leadscore] 3 leads for you on 2026-11-23", f"alerts:r1:{ann}"),
    ]
    parsed = email.message_from_bytes(Path(sent[2]["path"]).read_bytes(), policy=email.policy.default)
    text = parsed.get_body(("plain",)).get_content()
    assert "in one scoring run (r1), too many for an email each" in text and "once a day" not in text
    assert "1. Ada Lo (LD-1), A&B <Ltd>" in text and "3. Ada Lo (LD-3), A&B <Ltd>" in text
    # A crash before the outcomes were stored: the next run finds the same open firings, and the digest sent.
    again = notify_owners(engine, portfolio, firings[:3], settings)
    assert [(o[0], o[1], o[3]) for o in again] == [(1, "done", "duplicate"), (2, "done", "duplicate"),
                                                   (3, "done", "duplicate")]  # fmt: skip
    assert len(outbox.messages(engine)) == 3
