"""``leadscore score``, ``explain``, ``adjust`` and ``score-file``: scoring runs, one lead's story, manual points."""

import json
import math
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from flows.cli import base
from flows.cli.base import InputFile, JsonOpt, PortfolioOpt, app, console, literal
from flows.progress import progress_bars
from models.files import SpecError
from store.settings import get_settings


@app.command()
def score(
    portfolio: PortfolioOpt = None,
    as_of: Annotated[str | None, typer.Option(help="Replay as of this time (ISO-8601 with zone); read-only")] = None,
    write: Annotated[bool, typer.Option(help="With --as-of: store the replayed scores")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Score every active journey of every product line (a Prefect flow run)."""
    from flows.scoring import scoring_flow

    path = base.portfolio_path(portfolio)
    base.load_portfolio_or_fail(path)
    when = base.parse_time(as_of)
    with progress_bars(base.progress_console(json_out)):
        summary = scoring_flow(get_settings())(str(path), as_of=when, write=write or when is None)
    if json_out:
        print(base.to_json(summary))
        return
    print_summary(summary)


def print_summary(summary: dict[str, Any]) -> None:
    if summary["run_id"]:
        changed = f"{summary['changed']} changed"
    else:
        changed = f"{summary['would_change']} changed in the run replayed (read-only replay: nothing written)"
    console.print(f"scored [bold]{summary['scored']}[/bold] journeys as of {summary['as_of']}, {changed}")
    for line, counts in summary["bands"].items():
        table = Table("stage", "band", "journeys", title=f"{literal(line)}: score distribution")
        for key, n in sorted(counts.items()):
            stage, band = key.split("/")
            table.add_row(literal(stage), literal(band), str(n))
        console.print(table)
    for where, rows in summary["top"].items():
        table = Table("lead", "score", "band", "top reasons", title=f"top leads: {literal(where)}")
        for row in rows[:5]:
            table.add_row(literal(row["lead_id"]), f"{row['score']:.1f}", literal(row["band"]), literal(row["reasons"]))
        console.print(table)
    changes = Table("product line", "what", "journeys", title="funnel: transitions, qualifications, trigger firings")
    for kind in ("transitions", "milestones", "firings"):
        for line, counts in summary.get(kind, {}).items():
            for key, n in counts.items():
                changes.add_row(literal(line), literal(key if kind != "milestones" else f"reached {key}"), str(n))
    if changes.row_count:
        console.print(changes)
    for action, statuses in summary.get("actions", {}).items():
        console.print(
            f"{literal(action)}: " + ", ".join(f"{n} {literal(status)}" for status, n in sorted(statuses.items()))
        )


@app.command()
def explain(
    lead_id: str,
    product_line: Annotated[str | None, typer.Option("--product-line")] = None,
    as_of: Annotated[
        str | None, typer.Option(help="Replay as of this time (ISO-8601 with zone): stage, score, breakdown then")
    ] = None,
    portfolio: PortfolioOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """A lead's current score per product line and stage, the breakdown, and its score history."""
    from flows.database import engine_for
    from store.queries import lead_history

    when = base.parse_time(as_of)
    if when is not None:
        _explain_as_of(lead_id, product_line, when, portfolio, json_out)
        return
    history = lead_history(engine_for(get_settings().database_url), lead_id, product_line)
    if history is None:
        raise base.fail(f"unknown lead {lead_id!r}", code=1)
    if json_out:
        print(base.to_json(history))
        return
    if not history["journeys"]:
        where = f" in {product_line}" if product_line else ""
        console.print(
            f"{literal(lead_id)} has no journey{literal(where)} yet (one opens when the lead shows interest in a line)"
        )
    for journey in history["journeys"]:
        _print_state(lead_id, journey)
        hist = Table("as of", "step", "stage", "score", "band", "qualification", "run", title="history")
        for snap in journey["history"]:
            hist.add_row(
                str(snap["as_of"]),
                str(snap["step"]),
                literal(snap["stage"]),
                f"{snap['score']:g}",
                literal(snap["band"]),
                literal(snap["qualification"]),
                snap["run_id"][:8],
            )
        console.print(hist)
        if journey["transitions"]:
            moves = Table("at", "from", "to", "reason", "score before", "score after", title="stage history")
            for move in journey["transitions"]:
                reason = move["reason"] + (f" ({move['source']})" if move["source"] else "")
                moves.add_row(
                    str(move["at"]),
                    literal(move["from_stage"]),
                    literal(move["to_stage"]),
                    literal(reason),
                    _number(move["score_before"]),
                    _number(move["score_after"]),
                )
            console.print(moves)
        if journey["qualifications"]:
            reached = Table("qualification", "reached at", "stage", "score", "top reasons", title="milestones reached")
            for milestone in journey["qualifications"]:
                top = sorted(milestone["breakdown"], key=lambda e: -abs(e["points"]))[:3]
                reached.add_row(
                    literal(milestone["qualification"]),
                    str(milestone["reached_at"]),
                    literal(milestone["stage"]),
                    f"{milestone['score']:g}",
                    literal("; ".join(f"{e['rule']}:{e['points']:+g}" for e in top)),
                )
            console.print(reached)
        if journey["adjustments"]:
            console.print(_adjustment_table(journey["adjustments"], "manual adjustments"))
    if history["tags"]:
        console.print(f"tags: {literal(', '.join(history['tags']))}")


def _print_state(lead_id: str, journey: dict[str, Any]) -> None:
    """The journey's stage and score, its current level beside the milestones it reached, its breakdown."""
    scored = (
        f"score {journey['score']} ({literal(journey['band'])})"
        if journey["score"] is not None
        else "not scored yet (run leadscore score)"
    )
    reached = ", ".join(journey["milestones"]) or "none"
    console.print(
        f"[bold]{literal(lead_id)}[/bold] · {literal(journey['product_line'])} · "
        f"stage [bold]{literal(journey['stage'])}[/bold]: {scored}; "
        f"current level {literal(journey['qualification'] or '—')}, milestones reached {literal(reached)}"
    )
    table = Table("rule", "points", title="breakdown")
    for entry in journey["breakdown"]:
        table.add_row(literal(entry["rule"]), f"{entry['points']:+g}")
    console.print(table)


def _explain_as_of(
    lead_id: str, product_line: str | None, when: datetime, portfolio: Path | None, json_out: bool
) -> None:
    from flows.one_lead import lead_as_of

    loaded = base.load_portfolio_or_fail(portfolio)
    state = lead_as_of(loaded, lead_id, when, get_settings().database_url, product_line)
    if state is None:
        raise base.fail(f"unknown lead {lead_id!r}", code=1)
    if json_out:
        print(base.to_json(state))
        return
    console.print(f"as of {when.isoformat()} (read-only replay)")
    if not state["journeys"]:
        console.print(f"{literal(lead_id)} had no journey open then")
    for journey in state["journeys"]:
        _print_state(lead_id, journey)


def _adjustment_table(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table("at", "lead", "product line", "points", "reason", "author", title=title)
    for row in rows:
        table.add_row(
            str(row["at"]),
            literal(row["lead_id"]),
            literal(row["product_line"] or "all lines"),
            _number(row["points"]),
            literal(row["reason"]),
            literal(row["author"]),
        )
    return table


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"


@app.command()
def adjust(
    lead_id: Annotated[str | None, typer.Argument(help="The lead (with --list: only its adjustments)")] = None,
    product_line: Annotated[str | None, typer.Option("--product-line")] = None,
    points: Annotated[float | None, typer.Option()] = None,
    reason: Annotated[str | None, typer.Option()] = None,
    author: Annotated[str | None, typer.Option(help="Who adjusts (default cli); with --list: only theirs")] = None,
    at: Annotated[
        str | None, typer.Option(help="When the adjustment counts from (ISO-8601 with zone; default now)")
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="List adjustments instead of adding one")] = False,
    since: Annotated[str | None, typer.Option(help="With --list: from this time on")] = None,
    until: Annotated[str | None, typer.Option(help="With --list: up to this time")] = None,
    portfolio: PortfolioOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Add or remove points by hand: an audited ``manual_adjustment`` event; the journey is rescored now.

    Like any event tagged with a product line, the adjustment opens the lead's journey in that line if needed.
    ``--list`` shows the adjustments (when, lead, line, points, reason, author), by lead, author or dates.
    """
    from sqlmodel import Session

    from flows.database import engine_for
    from flows.one_lead import rescore_lead
    from stages.journeys import new_journeys
    from store.queries import add_manual_adjustment, lead_key_of, list_adjustments
    from store.scores import open_journeys

    engine = engine_for(get_settings().database_url)
    if list_:
        key = None
        if lead_id is not None:
            with Session(engine) as session:
                key = lead_key_of(session, lead_id)
            if key is None:
                raise base.fail(f"unknown lead {lead_id!r}", code=1)
        rows = list_adjustments(
            engine, lead_key=key, author=author, since=base.parse_time(since), until=base.parse_time(until)
        )
        if json_out:
            print(base.to_json(rows))
        else:
            console.print(_adjustment_table(rows, f"manual adjustments ({len(rows)})"))
        return
    if lead_id is None or product_line is None or points is None or reason is None:
        raise typer.BadParameter("LEAD_ID, --product-line, --points and --reason are required to add an adjustment")
    loaded = base.load_portfolio_or_fail(portfolio)
    if product_line not in loaded.product_lines:
        known = ", ".join(sorted(loaded.product_lines))
        raise typer.BadParameter(f"unknown product line {product_line!r}; known: {known}", param_hint="--product-line")
    if not reason.strip():
        raise typer.BadParameter("a reason is required (it is the audit trail)", param_hint="--reason")
    if not math.isfinite(points):  # events are immutable: an infinite adjustment would poison every later run
        raise typer.BadParameter(f"must be a finite number, got {points}", param_hint="--points")
    when = base.parse_time(at) or datetime.now(UTC)
    event_id = f"adj-{uuid.uuid4().hex}"
    if not add_manual_adjustment(engine, lead_id, product_line, points, reason, author or "cli", event_id, when):
        raise base.fail(f"unknown lead {lead_id!r}", code=1)
    with Session(engine) as session:
        key = lead_key_of(session, lead_id)
    open_journeys(engine, new_journeys(loaded, [(key, product_line, when)]))
    settings = get_settings()
    result = rescore_lead(loaded, lead_id, product_line, settings.database_url, settings.run_lock_wait)
    summary = {"lead_id": lead_id, "event_id": event_id, "at": when, "points": points, "score": result}
    if json_out:
        print(base.to_json(summary))
        return
    console.print(
        f"{literal(lead_id)}: {points:+g} ({literal(reason)}) at {when.isoformat()} recorded as {event_id}; "
        f"{literal(product_line)} score now {result}"
    )


@app.command("score-file")
def score_file(
    model: InputFile,
    leads: InputFile,
    out: Annotated[Path, typer.Option("--out")],
    events: Annotated[Path | None, typer.Option("--events", exists=True, dir_okay=False, readable=True)] = None,
    as_of: Annotated[str | None, typer.Option("--as-of")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Score a plain CSV of leads with one model file; keeps every column, adds score, band (when the model
    names bands, as learned models do) and top_rules."""
    from models.scorefile import score_csv
    from stages.portfolio import load_model

    try:
        spec = load_model(model)
    except SpecError as exc:
        raise base.fail("invalid model", exc) from exc
    when = base.parse_time(as_of) or datetime.now(UTC)
    try:
        result = score_csv(spec, leads, as_of=when, events_path=events)
    except ValueError as exc:  # a file-level problem: a missing column, a bad header
        raise base.fail("cannot score the file", exc) from exc
    result.scored.write_csv(out)
    rejects_path = out.with_suffix(".rejects.csv")
    if result.rejects.height:
        result.rejects.write_csv(rejects_path)
    else:
        rejects_path.unlink(missing_ok=True)  # a previous run's rejects would read as this run's
    summary = {
        "scored": result.scored.height,
        "rejected": result.rejects.height,
        "out": str(out),
        "rejects": str(rejects_path) if result.rejects.height else None,
    }
    if json_out:
        print(json.dumps(summary))
        return
    console.print(
        f"scored {summary['scored']} rows → {literal(out)}; rejected {summary['rejected']}"
        + (f" → {literal(rejects_path)}" if result.rejects.height else "")
    )
