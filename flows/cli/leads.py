"""``leadscore leads merge|unmerge|purge-anonymous``: who is who (duplicates and anonymous visitors).

The group's erase and export commands live in :mod:`flows.cli.privacy`."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Engine

from flows.cli import base
from flows.cli.base import JsonOpt, app, console

leads_app = typer.Typer(
    help="Who is who: merge duplicates, purge anonymous visitors, erase or export a person (GDPR).",
    no_args_is_help=True,
)
app.add_typer(leads_app, name="leads")

AtOpt = Annotated[str | None, typer.Option("--at", help="When it happens (ISO-8601 with zone; default now)")]


def _engine() -> Engine:
    from flows.database import engine_for
    from store.settings import get_settings

    return engine_for(get_settings().database_url)


def _when(at: str | None) -> datetime:
    return base.parse_time(at) or datetime.now(UTC)


def _report(counts: dict[str, int], json_out: bool) -> None:
    if json_out:
        print(base.to_json(counts))
    else:
        console.print(", ".join(f"{name.replace('_', ' ')}: {n}" for name, n in counts.items()))


@leads_app.command("merge")
def leads_merge(
    file: Annotated[Path | None, typer.Argument(help="CSV with columns survivor,merged (lead ids)")] = None,
    auto: Annotated[bool, typer.Option("--auto", help="Merge leads sharing an email (trimmed, lower-cased)")] = False,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Make each merged lead an alias of its survivor: its events, adjustments and milestones count for the
    survivor from the next run on. All or nothing; a pair already merged is skipped."""
    from store.merges import MergeError, auto_pairs, merge, read_pairs

    if (file is None) == (not auto):
        raise base.fail("give a merge FILE or --auto (not both)")
    engine = _engine()
    try:
        pairs = auto_pairs(engine) if auto else read_pairs(file)  # type: ignore[arg-type]
        counts = merge(engine, pairs, at=_when(at), source="auto" if auto else f"file {file}")
    except (MergeError, OSError) as exc:
        raise base.fail("merge refused", exc) from exc
    _report(counts, json_out)


@leads_app.command("unmerge")
def leads_unmerge(
    file: Annotated[Path, typer.Argument(help="CSV with column merged (and optionally survivor)")],
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Undo merges: both leads score apart again from the next run on (replays of the merged period still merge)."""
    from store.merges import MergeError, read_pairs, unmerge

    try:
        counts = unmerge(_engine(), read_pairs(file, need_survivor=False), at=_when(at))
    except (MergeError, OSError) as exc:
        raise base.fail("unmerge refused", exc) from exc
    _report(counts, json_out)


@leads_app.command("purge-anonymous")
def leads_purge_anonymous(
    portfolio: Annotated[
        Path | None, typer.Option(help="Portfolio file (its identity.anonymous_retention_days)")
    ] = None,
    as_of: Annotated[str | None, typer.Option(help="Count the retention back from this time (default now)")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Delete anonymous visitors' events older than the retention period, of visitors no lead claimed
    (the daily pipeline does it too)."""
    from datetime import timedelta

    from store.identity import purge_anonymous

    days = base.load_portfolio_or_fail(portfolio).spec.identity.anonymous_retention_days
    before = (base.parse_time(as_of) or datetime.now(UTC)) - timedelta(days=days)
    _report({"anonymous_deleted": purge_anonymous(_engine(), before)}, json_out)
