"""Owner digests: one email per owner a day, at the digest time, listing the leads with their reasons."""

import email
import email.policy
import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

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
