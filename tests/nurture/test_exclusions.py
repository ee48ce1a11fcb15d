"""Exclusions: students, competitors, open opportunities and a do-not-contact list are neither emailed
nor uploaded to an ad platform, decided by one function for both."""

from pathlib import Path

import pytest
from sqlalchemy import Engine

from flows.audiences import export_audience
from flows.exclusions import excluded_now
from models.files import SpecError
from nurture.audiences import AudienceSpec, AudienceWhere
from nurture.context import load_context
from nurture.exclusions import load_exclusions
from stages.portfolio import load_portfolio
from store import nurture as store
from tests.nurture.test_tracks import DAY, MON, run
from tests.nurture.world import add_lead, set_journey, write_portfolio

EXCLUSIONS = """
  exclusions:
    students: {attribute: job_title, in: [Student, intern]}
    competitors: {attribute: is_competitor, in: [true]}
    evaluating: {product_line: crm, stages: [evaluation]}
    do-not-contact: {file: dnc.csv}"""


def test_excluded_leads_are_neither_enrolled_nor_uploaded_and_leave_when_they_become_excluded(
    engine: Engine, tmp_path: Path
) -> None:
    (tmp_path / "dnc.csv").write_text("email,domain\nboss@partner.example,\n,rival.example\n")
    ctx = load_context(write_portfolio(tmp_path, nurture=EXCLUSIONS))
    keys = {
        "STUDENT": add_lead(engine, "STUDENT", score=0, attributes={"job_title": " student "}, ads_opt_in=True)[0],
        "RIVAL": add_lead(engine, "RIVAL", score=10, attributes={"is_competitor": True}, ads_opt_in=True)[0],
        "LISTED": add_lead(engine, "LISTED", score=10, email="boss@partner.example", ads_opt_in=True)[0],
        "DOMAIN": add_lead(engine, "DOMAIN", score=10, email="Eve@Rival.example", ads_opt_in=True)[0],
        "OK": add_lead(engine, "OK", score=10, attributes={"job_title": "CTO"}, ads_opt_in=True)[0],
    }
    later, later_journey = add_lead(engine, "LATER", score=10, ads_opt_in=True)
    mon = run(engine, ctx, MON, tmp_path)
    assert mon.enrolled == {"warm-up": 2}
    assert sorted(e["lead_key"] for e in store.enrolments(engine)) == sorted([keys["OK"], later])
    set_journey(engine, later_journey, stage="evaluation")  # an open opportunity now: it leaves at once
    tue = run(engine, ctx, MON + DAY, tmp_path)
    assert tue.exits == {"excluded: evaluating": 1}

    excluded = excluded_now(engine, load_exclusions(ctx.portfolio))
    assert dict(excluded.iter_rows()) == {
        keys["STUDENT"]: "students", keys["RIVAL"]: "competitors", keys["LISTED"]: "do-not-contact",
        keys["DOMAIN"]: "do-not-contact", later: "evaluating",
    }  # fmt: skip
    spec = AudienceSpec(platforms=["meta"], where=AudienceWhere(product_line="crm"))
    result = export_audience(
        engine, "all", spec, "meta", out_dir=tmp_path / "ads", as_of=MON + DAY, run_id="r", excluded=excluded
    )
    assert (result.members, result.excluded, result.full) == (6, 5, 1)


def test_an_exclusion_must_name_one_test_and_a_known_stage(tmp_path: Path) -> None:
    bad = """
  exclusions:
    both: {attribute: job_title, in: [student], file: x.csv}
    nowhere: {product_line: crm, stages: [negotiation]}"""
    path = write_portfolio(tmp_path, nurture=bad)
    with pytest.raises(SpecError, match="exactly one of attribute, stages, statuses, file"):
        load_exclusions(load_portfolio(path))
    path = write_portfolio(tmp_path, nurture=bad.replace(bad.splitlines()[2] + "\n", ""))
    with pytest.raises(SpecError, match="unknown stage 'negotiation'"):
        load_exclusions(load_portfolio(path))
