"""A/B variants and holdouts: templates drawn by weight, a held-out share never emailed."""

from datetime import timedelta
from pathlib import Path

import polars as pl
from sqlalchemy import Engine, insert

from nurture.context import load_context
from store import nurture as store
from store import outbox
from store.tables import Journey, Lead
from tests.nurture.conftest import NOW
from tests.nurture.test_tracks import MON, run
from tests.nurture.world import write_portfolio

AB = """
    warm-up:
      entry: {product_line: crm, stages: [discovery], score_below: 30}
      holdout: 0.2
      steps:
        - variants: [{template: first, weight: 3}, {template: third, weight: 1}]
        - wait: 2d
"""


def add_many(engine: Engine, n: int) -> None:
    leads = [
        {"lead_id": f"L{i:05d}", "email": f"l{i}@client.example", "email_opt_in": True, "first_name": f"N{i}",
         "attributes": {}, "created_at": NOW, "updated_at": NOW}
        for i in range(n)
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(Lead.__table__), leads)  # type: ignore[attr-defined]
        keys = [row[0] for row in conn.execute(Lead.__table__.select().with_only_columns(Lead.key))]  # type: ignore[attr-defined]
        conn.execute(
            insert(Journey.__table__),  # type: ignore[attr-defined]
            [
                {"lead_key": key, "product_line": "crm", "stage": "discovery", "status": "active", "opened_at": NOW,
                 "stage_entered_at": NOW, "score": 10.0, "band": "cold"}
                for key in keys
            ],
        )  # fmt: skip


def test_holdout_share_and_variant_weights_on_ten_thousand_leads(engine: Engine, tmp_path: Path) -> None:
    ctx = load_context(write_portfolio(tmp_path, tracks=AB))
    add_many(engine, 10_000)
    summary = run(engine, ctx, MON, tmp_path)
    held = summary.held_out["warm-up"]
    assert summary.enrolled == {"warm-up": 10_000}
    assert 1_900 <= held <= 2_100  # 20 % ± 1 point (a binomial's 2.5 σ is 1 point here)
    assert summary.deliveries == {"sent": 10_000 - held}
    holdouts = [e for e in store.enrolments(engine) if e["exit_reason"] == "holdout"]
    assert len(holdouts) == held and all(e["status"] == "exited" for e in holdouts)
    emailed = {m["lead_key"] for m in outbox.messages(engine)}
    assert not emailed & {e["lead_key"] for e in holdouts}
    details = [s["detail"] for s in store.step_log(engine) if s["action"] == "email"]
    assert 0.73 <= details.count("first") / len(details) <= 0.77 and set(details) == {"first", "third"}
    subjects = {m["subject"].split(" ")[0] for m in outbox.messages(engine)}
    assert subjects == {"first", "third"}
    again = run(engine, ctx, MON, tmp_path)  # the same draws: nothing new, nobody re-enters
    assert (again.enrolled, again.deliveries) == ({}, {})


def test_newcombe_and_wilson_match_the_published_examples() -> None:
    from nurture.experiments import newcombe, wilson

    assert [round(x, 4) for x in wilson(81, 263)] == [0.2553, 0.3662]  # Newcombe (1998a), Table I
    assert [round(x, 4) for x in newcombe(56, 70, 48, 80)] == [0.2, 0.0524, 0.3339]  # (1998b), Table II
    assert [round(x, 4) for x in newcombe(9, 10, 3, 10)] == [0.6, 0.1705, 0.809]


def test_the_report_measures_per_email_statistics_and_uplift_over_the_holdout(engine: Engine, tmp_path: Path) -> None:
    from nurture.report.experiments import emails_section, uplift_section
    from store import reports
    from tests.nurture.world import add_event, add_milestone

    ctx = load_context(write_portfolio(tmp_path, tracks=AB.replace("holdout: 0.2", "holdout: 0.5")))
    add_many(engine, 40)
    run(engine, ctx, MON, tmp_path)
    enrolments = store.enrolments(engine)
    held = [e for e in enrolments if e["exit_reason"] == "holdout"]
    treated = [e for e in enrolments if e["exit_reason"] != "holdout"]
    for e in held[:2] + treated[:6]:  # 2 held-out and 6 treated leads reach MQL after entering
        add_milestone(engine, e["journey_id"], e["lead_key"], "MQL", MON + timedelta(days=3))
    add_milestone(engine, held[2]["journey_id"], held[2]["lead_key"], "MQL", MON - timedelta(days=3))  # before
    message = {s["enrolment_id"]: s["message_id"] for s in store.step_log(engine) if s["action"] == "email"}
    first = message[treated[0]["id"]]
    at = MON + timedelta(hours=1)
    key = treated[0]["lead_key"]
    add_event(engine, key, "d", "email_delivered", at, message_id=first)
    add_event(engine, key, "o1", "email_open", at, message_id=first, machine=True)  # a proxy: not a person
    add_event(engine, key, "o2", "email_open", at, message_id=first, machine=False)
    add_event(engine, key, "u", "unsubscribe", at, message_id=first)
    add_event(engine, key, "c", "spam_complaint", at, message_id=first)

    emails = reports.nurture_emails(engine)
    assert emails["sent"].sum() == len(treated) and set(emails["template"]) == {"first", "third"}
    template = next(s["detail"] for s in store.step_log(engine) if s["message_id"] == first)
    row = emails.filter(pl.col("template") == template).row(0, named=True)
    assert {k: row[k] for k in ("delivered", "opened", "clicked", "unsubscribed", "bounced", "complained")} == {
        "delivered": 1, "opened": 1, "clicked": 0, "unsubscribed": 1, "bounced": 0, "complained": 1,
    }  # fmt: skip
    arms = reports.nurture_arms(engine)
    assert arms.filter(pl.col("arm").is_in(["holdout", "treated"])).rows() == [
        ("warm-up", "holdout", len(held), 2), ("warm-up", "treated", len(treated), 6),
    ]  # fmt: skip
    section = uplift_section(None, arms)  # type: ignore[arg-type]
    treated_row = next(r for r in section.rows if r["arm"] == "treated")
    diff = 6 / len(treated) - 2 / len(held)
    assert treated_row["uplift over holdout (95 % CI)"].startswith(f"{diff:+.1%} (")
    assert [r["arm"] for r in section.rows][:2] == ["holdout", "treated"] and len(section.rows) == 4
    assert emails_section(None, emails).rows[0]["sent"] > 0  # type: ignore[arg-type]
