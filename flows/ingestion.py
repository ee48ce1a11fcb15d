"""Ingest a file with the portfolio's rules, then open the journeys its rows show interest in."""

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Engine

from flows.database import engine_for
from nurture.audience_rows import resolve_phones
from nurture.audiences import PHONE_PLATFORMS, load_audiences
from stages.journeys import new_journeys
from stages.portfolio import Portfolio
from store.audiences import read_unparsed_phones, remember_phones
from store.bulk_indexes import indexes_deferred
from store.db import refresh_statistics
from store.ingest import IngestReport, Progress, ingest_accounts, ingest_events, ingest_leads, ingest_stage_updates
from store.ingest.event_stage import EventStage, leftover_stage, staged_events
from store.scores import open_journeys
from store.tombstones import Erased, load_erased


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
    erasure_secret: SecretStr | None = None,
) -> IngestOutcome:
    """Ingest ``kind`` (leads, accounts, events or stage_updates); a CRM update for a line the lead has no journey
    in yet opens one (the next scoring run then moves it to the update's stage). ``progress`` is called
    with the rows handled so far after each chunk. ``erasure_secret`` recognises erased people
    (``store.tombstones``): needed once anyone was erased."""
    outcome, _ = backfill(portfolio, kind, [path], database_url, progress, erasure_secret)
    return outcome


def backfill(
    portfolio: Portfolio,
    kind: str,
    paths: Sequence[Path],
    database_url: str,
    progress: Progress | None = None,
    erasure_secret: SecretStr | None = None,
    staged: bool = False,
) -> tuple[IngestOutcome, list[IngestReport]]:
    """Ingest many files as one load: ``progress`` counts rows across all of them, and the work that
    looks at the whole store (statistics, phone parsing, opening journeys) runs once at the end instead
    of after every file. Returns the combined outcome and each file's report (for its rejects file).
    ``staged``: events into a SQLite store are staged in a file beside it, then merged in lead-key
    ranges (``store.ingest.event_stage``): a back-fill's time-ordered files would otherwise each write
    pages all over the lead-clustered events table."""
    engine = engine_for(database_url)
    erased = erased_people(engine, portfolio, erasure_secret)
    staging = staged and kind == "events" and engine.dialect.name == "sqlite"
    reports: list[IngestReport] = []
    # A first bulk load of events into PostgreSQL leaves their primary key out, for all its files (store.bulk_indexes).
    deferral = indexes_deferred(engine, "events", paths) if kind == "events" else nullcontext()
    with deferral, staged_events(database_url) if staging else nullcontext() as stage:
        for path in paths:
            done = sum(report.read for report in reports)
            step = None if progress is None else (lambda rows, done=done: progress(done + rows))
            writer = engine if stage is None else stage.engine
            reports.append(_ingest_one(portfolio, kind, writer, path, step, erased, stage))
    if kind == "leads":
        refresh_statistics(engine)  # the phone look-up joins the leads just stored
    combined = _combined(kind, reports)
    if stage is not None:  # the files counted the rows they staged; the store gained what the merge inserted
        combined.inserted += stage.merged - stage.staged
    elif kind == "events" and (left := leftover_stage(database_url)) is not None:
        combined.notes.append(f"a killed back-fill left events staged in {left}: run it again with --backfill")
    with phones_parsed_behind(portfolio, engine) if kind == "leads" else nullcontext():
        opened = open_journeys(engine, new_journeys(portfolio, combined.interests))
    refresh_statistics(engine)  # a large load must not leave the next step planning for the old table sizes
    return IngestOutcome(combined, opened), reports


def erased_people(engine: Engine, portfolio: Portfolio, secret: SecretStr | None) -> Erased | None:
    """The tombstones rows are checked against, with the portfolio's ``privacy: after_erasure``."""
    plain = secret.get_secret_value() if secret is not None else None
    return load_erased(engine, plain, portfolio.spec.privacy.after_erasure)


def _ingest_one(
    portfolio: Portfolio,
    kind: str,
    engine: Engine,
    path: Path,
    progress: Progress | None,
    erased: Erased | None,
    stage: EventStage | None = None,
) -> IngestReport:
    lines = set(portfolio.product_lines)
    if kind == "leads":
        return ingest_leads(engine, path, product_lines=lines, progress=progress, erased=erased)
    if kind == "accounts":
        return ingest_accounts(engine, path, progress=progress)
    if kind == "stage_updates":
        stages = {name: [stage.name for stage in line.stages] for name, line in portfolio.product_lines.items()}
        return ingest_stage_updates(engine, path, stages=stages, progress=progress)
    options: dict[str, Any] = {"machine_window_seconds": portfolio.spec.ingest.machine_window_seconds}
    if portfolio.spec.ingest.proxy_user_agents is not None:
        options["proxy_user_agents"] = tuple(portfolio.spec.ingest.proxy_user_agents)
    types = portfolio.event_types
    if stage is not None:
        options["stage"] = stage.table
    return ingest_events(
        engine, path, event_types=types, product_lines=lines, progress=progress, erased=erased, **options
    )


def _combined(kind: str, reports: list[IngestReport]) -> IngestReport:
    """One report for many files (a single file's report as it is); rejects keep their own source."""
    if len(reports) == 1:
        return reports[0]
    combined = IngestReport(kind=kind, source=f"{len(reports)} files")
    for report in reports:
        combined.add(report)
        combined.interests.extend(report.interests)
    return combined


@contextmanager
def phones_parsed_behind(portfolio: Portfolio, engine: Engine) -> Iterator[None]:
    """Parse new and changed phones while the body runs, store them after it: for the audience exports
    that upload phones (Meta, Google).

    Parsing costs 20–30 µs a phone: done at ingestion, it is spread over the days leads arrive instead of
    landing on one export. It is worker processes' CPU while the body (opening a load's journeys) is the
    database's work, so the two overlap (1M demo leads: ≈ 7 s of parsing); the parsed phones are stored
    after the body, not beside it, so the two writes never wait for each other's lock. Each phone is read
    in its lead's country, or in the audiences' default country when they all share one; an export
    re-parses only a phone whose region differs.
    """
    phone_audiences = [spec for spec in load_audiences(portfolio).values() if PHONE_PLATFORMS & set(spec.platforms)]
    if not phone_audiences:
        yield
        return
    defaults = {spec.default_country for spec in phone_audiences}
    default_country = defaults.pop() if len(defaults) == 1 else None
    unparsed = read_unparsed_phones(engine)
    with ThreadPoolExecutor(1, thread_name_prefix="leadscore-phones") as worker:
        parsing = worker.submit(resolve_phones, unparsed, default_country)
        yield
        remember_phones(engine, parsing.result()[1])
