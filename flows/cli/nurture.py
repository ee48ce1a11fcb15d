"""``leadscore nurture`` and ``leadscore suppress``: registered on the main app by ``flows/cli/__init__.py``."""

import csv
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from flows.cli import base
from flows.cli.base import JsonOpt, PortfolioOpt, app, console, literal
from flows.progress import progress_bars
from models.files import SpecError
from store.settings import get_settings


@app.command()
def nurture(
    action: Annotated[
        str, typer.Argument(help="run (the default), outcomes (review unknown deliveries) or preview LEAD")
    ] = "run",
    lead: Annotated[str | None, typer.Argument(help="preview: the lead_id", show_default=False)] = None,
    portfolio: PortfolioOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show who would get what; write and send nothing")] = False,
    as_of: Annotated[str | None, typer.Option(help="Run as of this time (ISO-8601 with zone); default now")] = None,
    track: Annotated[str | None, typer.Option(help="preview: the track")] = None,
    step: Annotated[int | None, typer.Option(help="preview: the email step's index in the track")] = None,
    html: Annotated[Path | None, typer.Option(help="preview: write the HTML part here")] = None,
    send_to: Annotated[
        str | None, typer.Option(help="preview: test-send it to this address (nothing recorded)")
    ] = None,
    unknown: Annotated[bool, typer.Option("--unknown", help="outcomes: list deliveries of unknown outcome")] = True,
    mark_sent: Annotated[
        list[str] | None, typer.Option(help="outcomes: this Message-ID went out (the server's log says so)")
    ] = None,
    release: Annotated[
        list[str] | None, typer.Option(help="outcomes: this Message-ID did not go out: send it in the next run")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Exit, enrol and advance nurture tracks and send the due emails (a Prefect flow run).

    ``nurture outcomes --unknown`` lists the messages whose delivery was interrupted (never sent again,
    their step kept due) and resolves them with --mark-sent/--release; ``nurture preview LEAD --track T
    --step N`` renders the email that lead would get, and --send-to test-sends it."""
    from nurture.context import load_context
    from nurture.mail import MailError

    if action not in ("run", "outcomes", "preview"):
        raise base.fail(f"unknown action {action!r}: run, outcomes or preview")
    if action == "outcomes":  # the outbox alone: no portfolio needed
        _outcomes(unknown, mark_sent or [], release or [], json_out)
        return
    path = base.portfolio_path(portfolio)
    try:
        ctx = load_context(path)
    except (SpecError, MailError) as exc:
        raise base.fail("invalid portfolio", exc) from exc
    if action == "run":
        _run(path, dry_run, as_of, json_out)
    elif lead is None or track is None or step is None:
        raise base.fail("nurture preview needs LEAD, --track and --step")
    else:
        _preview(ctx, lead, track, step, html, send_to)


def _run(path: Path, dry_run: bool, as_of: str | None, json_out: bool) -> None:
    from flows.mailing import unsubscribe_secret
    from flows.nurture_run import run_nurture
    from nurture.tokens import SecretError

    try:  # refuse here, with a message, rather than from inside the flow run
        unsubscribe_secret(get_settings())
    except SecretError as exc:
        raise base.fail("refusing to send", exc) from exc
    with progress_bars(base.progress_console(json_out)):
        summary = run_nurture(str(path), as_of=base.parse_time(as_of), dry_run=dry_run)
    if json_out:
        print(base.to_json(summary))
        return
    verb = "would send" if dry_run else "sent"
    enrolled = sum(summary["enrolled"].values())
    exits = sum(summary["exits"].values())
    held = sum(summary["held_out"].values())
    console.print(
        f"nurture as of {summary['as_of']}{' (dry run: nothing written or sent)' if dry_run else ''}: "
        f"{enrolled} enrolled{f' ({held} held out)' if held else ''}, {exits} exited, "
        f"{summary['completed']} completed, {summary['emails_total']} emails {verb}"
    )
    for why, count in summary["deferred"].items():
        console.print(f"deferred {count:,} emails ({literal(why)}) until {summary['deferred_until'][why]}")
    if summary["emails"]:
        table = Table("lead", "to", "subject", "status", title=f"emails ({summary['emails_total']})")
        for email in summary["emails"][:20]:
            table.add_row(
                literal(email["lead_id"]), literal(email["to"]), literal(email["subject"]), literal(email["status"])
            )
        console.print(table)
    for note in summary["notes"]:
        console.print(f"[yellow]note:[/yellow] {literal(note)}")
    for problem in summary["errors"]:
        console.print(f"[yellow]problem:[/yellow] {literal(problem)}")


def _outcomes(unknown: bool, mark_sent: list[str], release: list[str], json_out: bool) -> None:
    """Resolve what the mail server's log says, then list what is still unknown."""
    from flows.database import engine_for
    from store import outbox

    engine = engine_for(get_settings().database_url)
    note = f"resolved by hand at {datetime.now(UTC).isoformat()}"
    marked = outbox.resolve_unknown(engine, mark_sent, as_="sent", note=f"{note}: sent")
    released = outbox.resolve_unknown(engine, release, as_="released", note=f"{note}: released for re-send")
    rows = outbox.unknown_outcomes(engine) if unknown else []
    listed = [
        {key: row[key] for key in ("message_id", "kind", "ref", "to_address", "subject", "run_id", "created_at")}
        for row in rows
    ]
    if json_out:
        print(base.to_json({"marked_sent": marked, "released": released, "unknown": listed}))
        return
    for what, ids in (("marked sent", marked), ("released for re-send", released)):
        if ids:
            console.print(f"{what}: {len(ids)} ({literal(', '.join(ids))})")
    if not listed:
        console.print("no delivery of unknown outcome")
        return
    table = Table("message id", "ref", "to", "subject", "intended", title=f"unknown outcomes ({len(listed)})")
    for row in listed:
        table.add_row(
            literal(row["message_id"]),
            literal(row["ref"]),
            literal(row["to_address"]),
            literal(row["subject"]),
            literal(row["created_at"]),
        )
    console.print(table)
    console.print("check the mail server's log, then --mark-sent ID (it went out) or --release ID (send it again)")


def _preview(ctx: Any, lead: str, track: str, step: int, html: Path | None, send_to: str | None) -> None:
    from flows.database import engine_for
    from flows.mailing import unsubscribe_secret
    from nurture.composing import PreviewError, preview, send_preview
    from nurture.tokens import SecretError

    settings = get_settings()
    try:
        secret = unsubscribe_secret(settings)
        message = preview(engine_for(settings.database_url), ctx, lead, track, step, secret, to=send_to)
    except (PreviewError, SecretError) as exc:
        raise base.fail("cannot preview", exc, code=1) from exc
    parsed = message.parsed()
    body = parsed.get_body(("plain",))
    console.print(f"Subject: {literal(message.subject)}\nTo: {literal(message.to)}\n")
    console.print(literal(body.get_content() if body is not None else ""))
    target = html or Path(f"preview-{lead}-{track}-{step}.html")
    part = parsed.get_body(("html",))
    target.write_text(part.get_content() if part is not None else "", encoding="utf-8")
    console.print(f"HTML written to {literal(target)}")
    if send_to:
        try:
            send_preview(message, settings, send_to)
        except Exception as exc:
            raise base.fail(f"test-send to {send_to} failed", exc, code=1) from exc
        console.print(f"test-sent to {literal(send_to)} (not recorded as a send)")


@app.command()
def suppress(file: Annotated[Path, typer.Argument(dir_okay=False)], json_out: JsonOpt = False) -> None:
    """Unsubscribe the leads listed in FILE (a CSV with a lead_id or an email column) and end their tracks."""
    from flows.database import engine_for
    from nurture.suppression import Reject, read_suppression_file
    from store import nurture as store
    from store.scores import finish_run, start_run

    if not file.is_file():
        raise base.fail(f"file {file} not found")
    try:
        parsed = read_suppression_file(file)
    except ValueError as exc:
        raise base.fail(f"cannot read {file}", exc) from exc
    engine = engine_for(get_settings().database_url)
    found = store.lead_keys_by(engine, parsed.column, [value for _, value in parsed.values])
    rejects = list(parsed.rejects)
    keys = []
    for line, value in parsed.values:
        if value in found:
            keys.append(found[value])
        else:
            rejects.append(Reject(line, parsed.column, value, f"no lead with this {parsed.column}"))
    now = datetime.now(UTC)
    run_id = start_run(engine, "suppress", now)
    suppressed, ended = store.suppress(engine, keys, at=now, run_id=run_id)
    rejects.sort(key=lambda reject: reject.line)
    summary = {
        "run_id": run_id,
        "source": str(file),
        "read": len(parsed.values) + len(parsed.rejects),
        "matched": len(set(keys)),
        "newly_unsubscribed": suppressed,
        "enrolments_ended": ended,
        "rejected": len(rejects),
        "rejects": [reject.__dict__ for reject in rejects],
    }
    finish_run(engine, run_id, "completed", {k: v for k, v in summary.items() if k != "rejects"})
    rejects_path = file.with_name(file.name + ".rejects.csv")
    if rejects:
        with rejects_path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["line", "field", "value", "reason"])
            writer.writerows([r.line, r.field, r.value, r.reason] for r in rejects)
    else:
        rejects_path.unlink(missing_ok=True)
    if json_out:
        print(base.to_json(summary))
        return
    console.print(
        f"suppressed {literal(file)}: {summary['matched']} leads matched, {suppressed} newly unsubscribed, "
        f"{ended} track enrolments ended, {len(rejects)} rejected"
    )
    if rejects:
        table = Table("line", "value", "reason", title=f"rejected rows ({len(rejects)}, also in {rejects_path.name})")
        for reject in rejects[:10]:
            table.add_row(str(reject.line), literal(reject.value), literal(reject.reason))
        console.print(table)
