"""Ingest a file with the portfolio's rules, then open the journeys its rows show interest in."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from flows.database import engine_for
from nurture.audiences import PHONE_PLATFORMS, load_audiences, resolve_phones
from stages.journeys import new_journeys
from stages.portfolio import Portfolio
from store.audiences import read_unparsed_phones, remember_phones
from store.db import refresh_statistics
from store.ingest import IngestReport, Progress, ingest_events, ingest_leads, ingest_stage_updates
from store.scores import open_journeys


@dataclass
class IngestOutcome:
    report: IngestReport
    journeys_opened: int

    @property
    def rejects(self) -> list[Any]:
        return self.report.rejects

    def summary(self) -> dict[str, Any]:
        r = self.report
        return {
            "kind": r.kind,
            "source": r.source,
            "read": r.read,
            "accepted": r.accepted,
            "inserted": r.inserted,
            "updated": r.updated,
            "rejected": r.rejected,
            "journeys_opened": self.journeys_opened,
            "notes": r.notes,
            "rejects": [{"line": x.line, "field": x.field, "reason": x.reason} for x in r.rejects[:100]],
        }


def ingest_file(
    portfolio: Portfolio,
    kind: str,
    path: Path,
    database_url: str,
    progress: Progress | None = None,
) -> IngestOutcome:
    """Ingest ``kind`` (leads, events or stage_updates); a CRM update for a line the lead has no journey
    in yet opens one (the next scoring run then moves it to the update's stage). ``progress`` is called
    with the rows handled so far after each chunk."""
    engine = engine_for(database_url)
    lines = set(portfolio.product_lines)
    if kind == "leads":
        report = ingest_leads(engine, path, product_lines=lines, progress=progress)
        refresh_statistics(engine)  # the phone look-up joins the leads just stored
        parse_phones(portfolio, engine)
    elif kind == "stage_updates":
        stages = {name: [stage.name for stage in line.stages] for name, line in portfolio.product_lines.items()}
        report = ingest_stage_updates(engine, path, stages=stages, progress=progress)
    else:
        options: dict[str, Any] = {"machine_window_seconds": portfolio.spec.ingest.machine_window_seconds}
        if portfolio.spec.ingest.proxy_user_agents is not None:
            options["proxy_user_agents"] = tuple(portfolio.spec.ingest.proxy_user_agents)
        report = ingest_events(
            engine, path, event_types=portfolio.event_types, product_lines=lines, progress=progress, **options
        )
    opened = open_journeys(engine, new_journeys(portfolio, report.interests))
    refresh_statistics(engine)  # a large file must not leave the next step planning for the old table sizes
    return IngestOutcome(report, opened)


def parse_phones(portfolio: Portfolio, engine: Engine) -> int:
    """Parse new and changed phones now, for the audience exports that upload phones (Meta, Google).

    Parsing costs 30–50 µs a phone: done here, it is spread over the days leads arrive instead of
    landing on one export. Each phone is read in its lead's country, or in the audiences' default
    country when they all share one; an export re-parses only a phone whose region differs.
    """
    phone_audiences = [spec for spec in load_audiences(portfolio).values() if PHONE_PLATFORMS & set(spec.platforms)]
    if not phone_audiences:
        return 0
    defaults = {spec.default_country for spec in phone_audiences}
    default_country = defaults.pop() if len(defaults) == 1 else None
    _, parsed = resolve_phones(read_unparsed_phones(engine), default_country)
    return remember_phones(engine, parsed)
