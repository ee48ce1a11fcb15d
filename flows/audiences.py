"""Audience exports: resolve members, keep the consenting ones, write the platform's files, record the export.

``export_audiences`` is what the CLI runs (no Prefect start-up for a one-off export); the
``refresh_audiences`` flow exports every audience to each of its platforms, one task per
(audience, platform), for the daily pipeline after nurture. A run reads each audience's members once,
for all its platforms (``AudienceReads``).
"""

import os
import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from sqlalchemy import Engine

from flows import progress
from flows.database import engine_for
from flows.exclusions import excluded_now
from flows.locking import writing
from flows.startup import enter_flow
from nurture.audience_rows import platform_rows, resolve_phones
from nurture.audiences import PHONE_PLATFORMS, AudienceSpec, Platform, csv_text, diff, load_audiences, with_lines
from nurture.exclusions import load_exclusions
from stages.portfolio import Portfolio, load_portfolio
from store.audiences import last_export, read_audience_leads, read_uploaded, record_export, remember_phones
from store.db import refresh_statistics
from store.scores import finish_run, start_run
from store.tables import to_micros

DEFAULT_OUT = Path("audiences")


@dataclass(frozen=True)
class ExportResult:
    """What one export wrote: counts and files (``full`` is the whole audience, the others the changes)."""

    export_id: str
    audience: str
    platform: str
    run_id: str
    as_of: str
    members: int
    excluded_consent: int
    unmatchable: int
    full: int
    added: int
    removed: int
    full_path: str
    adds_path: str
    removes_path: str
    excluded: int = 0  # consenting members left out by the portfolio's exclusions


class AudienceNotFound(KeyError):
    """An audience named on the command line that the portfolio does not declare."""


@dataclass
class AudienceMembers:
    """An audience's members at one time, as each of its platforms' exports uses them: every member
    (``leads``), the consenting ones, those of them that may be uploaded (``allowed``: not excluded), and
    ``allowed`` with each phone in E.164 (``with_phones``, worked out once for the phone platforms)."""

    leads: pl.DataFrame
    consented: pl.DataFrame
    allowed: pl.DataFrame
    _phoned: pl.DataFrame | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def read(
        cls, engine: Engine, name: str, spec: AudienceSpec, as_of: datetime, excluded: pl.DataFrame | None
    ) -> "AudienceMembers":
        where = spec.where.model_dump() if spec.where is not None else None
        accounts = spec.accounts.model_dump() if spec.accounts is not None else None
        leads = read_audience_leads(engine, name, as_of, where, accounts)
        consented = leads.filter("consented")
        allowed = consented if excluded is None else consented.join(excluded, on="lead_key", how="anti")
        return cls(leads, consented, allowed)

    def with_phones(self, engine: Engine, default_country: str | None) -> pl.DataFrame:
        """``allowed`` with an ``e164`` column; phones parsed now are remembered for the next exports."""
        with self._lock:  # two phone platforms of one audience may be exported at once: one parses
            if self._phoned is None:
                self._phoned, parsed = resolve_phones(self.allowed, default_country)
                remember_phones(engine, parsed)
            return self._phoned


class AudienceReads:
    """Each audience's members read once for a run's exports and shared by its platforms: the read (the
    audience's criteria joined with the leads, their consent and cached phones, less the exclusions) is
    the same for every platform, and at 1M leads it is seconds. ``exports`` says how many exports use
    each audience: its members are dropped after the last one (an audience not listed is not kept)."""

    def __init__(
        self,
        engine: Engine,
        as_of: datetime,
        excluded: pl.DataFrame | None = None,
        exports: Sequence[tuple[str, AudienceSpec, Platform]] = (),
    ) -> None:
        self.engine, self.as_of, self.excluded = engine, as_of, excluded
        self._uses = Counter(name for name, _, _ in exports)
        self._lock = threading.Lock()
        self._kept: dict[str, tuple[threading.Lock, list[AudienceMembers]]] = {}

    def members(self, name: str, spec: AudienceSpec) -> AudienceMembers:
        """``name``'s members: read by the first export that asks, the others wait for that read."""
        with self._lock:
            lock, found = self._kept.setdefault(name, (threading.Lock(), []))
        with lock:
            if not found:
                found.append(AudienceMembers.read(self.engine, name, spec, self.as_of, self.excluded))
        with self._lock:
            self._uses[name] -= 1
            if self._uses[name] <= 0:
                self._kept.pop(name, None)
        return found[0]


def export_audience(
    engine: Engine,
    name: str,
    spec: AudienceSpec,
    platform: Platform,
    *,
    out_dir: Path,
    as_of: datetime,
    run_id: str,
    excluded: pl.DataFrame | None = None,
    reads: AudienceReads | None = None,
) -> ExportResult:
    """Export one audience to one platform: a full file, and adds/removes since its previous export.
    ``excluded`` (``lead_key, excluded``, from ``flows.exclusions.excluded_now``) are never uploaded.
    ``reads``: the run's shared reads (with the run's exclusions), instead of reading the members here."""
    members = (reads or AudienceReads(engine, as_of, excluded)).members(name, spec)
    leads, left_out = members.leads, members.consented.height - members.allowed.height
    consented = members.allowed
    if platform in PHONE_PLATFORMS:
        consented = members.with_phones(engine, spec.default_country)
    current = with_lines(platform_rows(consented, platform, spec.default_country), platform)
    adds, removes = diff(current, read_uploaded(engine, name, platform))

    stamp = as_of.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    export_id = f"{to_micros(datetime.now(UTC)):016d}-{uuid.uuid4().hex[:8]}"
    folder = (out_dir / name / platform).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    base = f"{name}-{platform}-{stamp}-{export_id[-8:]}"
    paths = {kind: folder / f"{base}-{kind}.csv" for kind in ("full", "adds", "removes")}
    for kind, frame in (("full", current), ("adds", adds), ("removes", removes)):
        _write_atomically(paths[kind], csv_text(platform, frame["line"]))

    previous = last_export(engine, name, platform)
    record = {
        "export_id": export_id,
        "audience": name,
        "platform": platform,
        "run_id": run_id,
        "as_of": as_of,
        "previous_export_id": previous.export_id if previous else None,
        "members": leads.height,
        "excluded_consent": leads.height - consented.height,
        "unmatchable": consented.height - current.height,
        "full_count": current.height,
        "added_count": adds.height,
        "removed_count": removes.height,
        "full_path": str(paths["full"]),
        "adds_path": str(paths["adds"]),
        "removes_path": str(paths["removes"]),
    }
    record_export(engine, record, adds, removes)
    return ExportResult(
        export_id=export_id,
        audience=name,
        platform=platform,
        run_id=run_id,
        as_of=as_of.isoformat(),
        members=record["members"],
        excluded_consent=record["excluded_consent"],
        unmatchable=record["unmatchable"],
        full=current.height,
        added=adds.height,
        removed=removes.height,
        full_path=record["full_path"],
        adds_path=record["adds_path"],
        removes_path=record["removes_path"],
        excluded=left_out,
    )


def _write_atomically(path: Path, text: str) -> None:
    """Write beside, then rename: an upload never picks up a half-written file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def selected(audiences: dict[str, AudienceSpec], platform: Platform, audience: str | None) -> dict[str, AudienceSpec]:
    """The audiences to export to ``platform``: the one named (which must list it), or every one that does."""
    if audience is None:
        return {name: spec for name, spec in audiences.items() if platform in spec.platforms}
    if audience not in audiences:
        raise AudienceNotFound(f"unknown audience {audience!r}; declared: {sorted(audiences) or 'none'}")
    spec = audiences[audience]
    if platform not in spec.platforms:
        raise ValueError(f"audience {audience!r} is not exported to {platform}; its platforms: {spec.platforms}")
    return {audience: spec}


def export_audiences(
    portfolio: Portfolio,
    platform: Platform,
    *,
    audience: str | None = None,
    out_dir: Path = DEFAULT_OUT,
    as_of: datetime | None = None,
    database_url: str,
    lock_wait_s: float = 0.0,
) -> list[ExportResult]:
    """Export the selected audiences to one platform as one run (recorded in ``runs``), under the run lock."""
    chosen = selected(load_audiences(portfolio), platform, audience)
    exports = [(name, spec, platform) for name, spec in chosen.items()]
    return export_run(
        portfolio, exports, out_dir=out_dir, as_of=as_of or datetime.now(UTC), database_url=database_url,
        lock_wait_s=lock_wait_s,
    )  # fmt: skip


def every_export(portfolio: Portfolio) -> list[tuple[str, AudienceSpec, Platform]]:
    """Each (audience, its spec, platform) the portfolio declares: what a daily refresh exports."""
    return [(name, spec, platform) for name, spec in load_audiences(portfolio).items() for platform in spec.platforms]


def export_run(
    portfolio: Portfolio,
    exports: list[tuple[str, AudienceSpec, Platform]],
    *,
    out_dir: Path,
    as_of: datetime,
    database_url: str,
    lock_wait_s: float = 0.0,
) -> list[ExportResult]:
    """Export each (audience, spec, platform) one after the other as one run (recorded in ``runs``), under
    the run lock: the CLI's export, and the demo's daily refresh (which needs no task per export)."""
    engine = engine_for(database_url)
    refresh_statistics(engine)
    reads = AudienceReads(engine, as_of, excluded_now(engine, load_exclusions(portfolio)), exports)
    with writing(engine, portfolio, lock_wait_s) as scope:
        run_id = start_run(engine, "audiences", as_of, scope)
        try:
            results = []
            for done, (name, spec, platform) in enumerate(exports):
                progress.report("exporting audiences", done, len(exports), name)
                results.append(
                    export_audience(
                        engine, name, spec, platform, out_dir=out_dir, as_of=as_of, run_id=run_id, reads=reads
                    )
                )
        except BaseException as exc:
            finish_run(engine, run_id, "failed", {"error": repr(exc)})
            raise
        finish_run(engine, run_id, "completed", {"exports": [asdict(r) for r in results]})
    return results


def _audiences_apart(exports: list[tuple[str, AudienceSpec, Platform]]) -> list[int]:
    """The positions of ``exports`` in the order to submit them: each audience's first export, then each
    one's second, and so on, so that the task runner's threads start on different audiences (one reads
    an audience's members while another export of it waits for that read)."""
    seen: Counter[str] = Counter()
    ranks = []
    for name, _, _ in exports:
        ranks.append(seen[name])
        seen[name] += 1
    return sorted(range(len(exports)), key=lambda position: ranks[position])


@task(cache_policy=NO_CACHE, task_run_name="export {name} to {platform}")
def export_audience_task(
    name: str,
    spec: AudienceSpec,
    platform: Platform,
    out_dir: Path,
    as_of: datetime,
    run_id: str,
    database_url: str,
    reads: AudienceReads,
) -> ExportResult:
    engine = engine_for(database_url)
    return export_audience(engine, name, spec, platform, out_dir=out_dir, as_of=as_of, run_id=run_id, reads=reads)


@flow(name="refresh-audiences", task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=True)
def refresh_audiences(
    portfolio_path: str,
    as_of: datetime | None = None,
    out_dir: str = str(DEFAULT_OUT),
    database_url: str | None = None,
) -> list[dict[str, Any]]:
    """Export every audience to each of its platforms; an artifact lists sizes, adds and removes."""
    settings = enter_flow(database_url)
    database_url = settings.database_url
    logger = get_run_logger()
    as_of = as_of or datetime.now(UTC)
    portfolio = load_portfolio(Path(portfolio_path))
    engine = engine_for(database_url)
    refresh_statistics(engine)
    exports = every_export(portfolio)
    reads = AudienceReads(engine, as_of, excluded_now(engine, load_exclusions(portfolio)), exports)
    with writing(engine, portfolio, settings.run_lock_wait) as scope:
        run_id = start_run(engine, "audiences", as_of, scope)
        futures = {
            position: export_audience_task.submit(*exports[position], Path(out_dir), as_of, run_id, database_url, reads)
            for position in _audiences_apart(exports)
        }
        outcomes = [futures[position].result(raise_on_failure=False) for position in range(len(exports))]
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        results = [asdict(outcome) for outcome in outcomes if isinstance(outcome, ExportResult)]
        if failures:
            finish_run(engine, run_id, "failed", {"exports": results, "error": repr(failures[0])})
            raise failures[0]
        finish_run(engine, run_id, "completed", {"exports": results})
    create_table_artifact(
        key="audience-exports",
        table=[
            {k: r[k] for k in ("audience", "platform", "full", "added", "removed", "excluded_consent", "unmatchable")}
            for r in results
        ],
        description="Audience sizes and changes per platform",
    )
    logger.info("exported %d audience files", len(results))
    return results
