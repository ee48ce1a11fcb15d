"""GET /v1/leads/{id}/score and /v1/leads/{id}: the latest run's scores, and fresh=true equal to what the next
batch run writes (the same engine on the lead's frames)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from flows.scoring import score_partition
from stages.portfolio import load_portfolio
from store import partitions
from store.scores import finish_run, start_run
from tests.service.conftest import DEMO_PORTFOLIO, Live

AS_OF = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _at(days: float) -> str:
    return (AS_OF - timedelta(days=days)).isoformat()


def _event(event_id: str, lead_id: str, type_: str, days: float, **properties: Any) -> dict[str, Any]:
    return {"event_id": event_id, "lead_id": lead_id, "type": type_, "occurred_at": _at(days), **properties}


def _store(live: Live) -> None:
    hot = {"job_title": "Head of Sales", "industry": "Software", "company_size": 250, "email": "hot@client.example"}
    leads = [
        {"lead_id": "SC-HOT", **hot, "phone": "+33 1 23 45 67 89", "product_interest": "crm-suite"},
        {
            "lead_id": "SC-MILD",
            "job_title": "Engineer",
            "company_size": 3,
            "product_interest": "crm-suite;analytics-cloud",
        },
    ]
    assert live.post("/v1/leads", leads).json()["stored"] == 2
    crm = {"product_line": "crm-suite"}
    events = [
        _event(
            f"sc-pv-{n}", "SC-HOT", "page_view", n, url="/pricing" if n % 2 else "/product/crm", duration_s=240, **crm
        )
        for n in range(12)
    ]
    events += [
        _event("sc-wp", "SC-HOT", "asset_download", 3, asset="white paper"),
        _event("sc-demo", "SC-HOT", "demo_request", 1, **crm),
        _event("sc-m1", "SC-MILD", "page_view", 40, url="/pricing"),
        _event("sc-m2", "SC-MILD", "unsubscribe", 2),
        _event("sc-late", "SC-HOT", "demo_request", -1),  # after AS_OF: neither side counts it
    ]
    assert live.post("/v1/events", events).json()["rejected"] == 0


def _batch_run(live: Live, as_of: datetime) -> str:
    portfolio = load_portfolio(DEMO_PORTFOLIO)
    run_id = start_run(live.engine, "test", as_of)
    token = uuid.uuid4().hex
    for line in portfolio.product_lines:
        score_partition.fn(portfolio, line, (0, 1_000_000), as_of, run_id, token, live.url)
    partitions.shared_partition_reads.release(token)
    finish_run(live.engine, run_id, "completed", {})
    return run_id


def _comparable(answer: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in score.items() if k not in ("scored_at", "run_id")} for score in answer["scores"]]


def test_fresh_scores_equal_the_next_batch_run_and_lookups_read_it(live: Live) -> None:
    _store(live)
    before = live.get("/v1/leads/SC-HOT/score").json()
    assert [(s["product_line"], s["stage"], s["score"], s["reasons"]) for s in before["scores"]] == [
        ("crm-suite", "discovery", None, [])  # opened by the posts, never scored yet
    ]
    fresh = {
        lead: live.get(f"/v1/leads/{lead}/score", fresh="true", as_of=AS_OF.isoformat()).json()
        for lead in ("SC-HOT", "SC-MILD")
    }
    run_id = _batch_run(live, AS_OF)
    stored = {lead: live.get(f"/v1/leads/{lead}/score").json() for lead in ("SC-HOT", "SC-MILD")}
    for lead in ("SC-HOT", "SC-MILD"):
        assert _comparable(fresh[lead]) == _comparable(stored[lead]), lead
        assert {s["run_id"] for s in stored[lead]["scores"]} == {run_id}
    hot = stored["SC-HOT"]["scores"][0]
    # The hot lead crossed discovery's promote_at (40): both sides promoted it to evaluation and rescored it there.
    assert (hot["product_line"], hot["stage"]) == ("crm-suite", "evaluation")
    assert all(r["points"] != 0 for r in hot["reasons"])
    assert [s["product_line"] for s in stored["SC-MILD"]["scores"]] == ["analytics-cloud", "crm-suite"]
    one_line = live.get("/v1/leads/SC-MILD/score", product_line="crm-suite").json()["scores"]
    assert [s["product_line"] for s in one_line] == ["crm-suite"]


def test_unknown_leads_and_lines_and_the_crm_sidebar(live: Live) -> None:
    assert live.get("/v1/leads/NOBODY/score").json() == {"detail": "unknown lead"}
    assert live.get("/v1/leads/NOBODY/score", fresh="true").status_code == 404
    assert live.get("/v1/leads/SC-HOT/score", product_line="widgets").status_code == 404
    sidebar = live.get("/v1/leads/SC-HOT").json()
    assert sidebar["lead_id"] == "SC-HOT" and "lead_key" not in sidebar
    [journey] = sidebar["journeys"]
    assert journey["stage"] == "evaluation"
    assert [(t["from_stage"], t["to_stage"], t["reason"]) for t in journey["transitions"]] == [
        ("discovery", "evaluation", "threshold")
    ]
    assert [m["qualification"] for m in journey["qualifications"]] == ["MQL", "SQL"]
    assert live.get("/v1/leads/NOBODY").status_code == 404
