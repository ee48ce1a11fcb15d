"""``leadscore nurture`` and ``leadscore suppress``: registered on the main app by ``flows/cli/__init__.py``."""

import csv
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.cli import base
from flows.cli.base import JsonOpt, PortfolioOpt, app, console, literal
from flows.progress import progress_bars
from models.files import SpecError
from store.settings import get_settings


@app.command()
def nurture(
    portfolio: PortfolioOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show who would get what; write and send nothing")] = False,
    as_of: Annotated[str | None, typer.Option(help="Run as of this time (ISO-8601 with zone); default now")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Exit, enrol and advance nurture tracks and send the due emails (a Prefect flow run)."""
    from flows.nurture_run import load_context, run_nurture, unsubscribe_secret
    from nurture.mail import MailError
    from nurture.tokens import SecretError
    from store.settings import get_settings

    path = base.portfolio_path(portfolio)
    try:
        load_context(path)
    except (SpecError, MailError) as exc:
        raise base.fail("invalid portfolio", exc) from exc
    try:
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
    console.print(
        f"nurture as of {summary['as_of']}{' (dry run: nothing written or sent)' if dry_run else ''}: "
        f"{enrolled} enrolled, {exits} exited, {summary['completed']} completed, "
        f"{summary['emails_total']} emails {verb}, deferred {summary['deferred'] or 0}"
    )
    if summary["emails"]:
        table = Table("lead", "to", "subject", "status", title=f"emails ({summary['emails_total']})")
        for email in summary["emails"][:20]:
            table.add_row(
                str(email["lead_key"]), literal(email["to"]), literal(email["subject"]), literal(email["status"])
            )
        console.print(table)
    for problem in summary["errors"]:
        console.print(f"[yellow]problem:[/yellow] {literal(problem)}")


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
