"""``leadscore leads erase|export``: a person's data erased (GDPR art. 17) or handed over (art. 15)."""

import getpass
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.cli import base
from flows.cli.base import JsonOpt, PortfolioOpt, console, literal
from flows.cli.leads import leads_app
from store.settings import get_settings

ByOpt = Annotated[str | None, typer.Option("--by", help="Who asks, for the audit (default: the OS user)")]


@leads_app.command("erase")
def erase(
    file: Annotated[Path, typer.Argument(dir_okay=False, help="Lead ids or emails: one per line, or a CSV column")],
    by: ByOpt = None,
    portfolio: PortfolioOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Delete the leads' personal data and events from every table, their emails and cached events from disk;
    keep a keyed-hash tombstone so a re-ingest is refused (or suppressed). Audited; erasing twice is harmless."""
    from flows.database import engine_for
    from flows.erasure import erase_leads, read_request
    from store.erasure import UnlistedTables
    from store.tombstones import ErasureKeyError

    if not file.is_file():
        raise base.fail(f"file {file} not found")
    loaded = base.load_portfolio_or_fail(portfolio)
    try:
        request = read_request(file)
    except (ValueError, UnicodeDecodeError) as exc:
        raise base.fail(f"cannot read {file}", exc) from exc
    settings = get_settings()
    secret = settings.erasure_key()
    try:
        outcome = erase_leads(
            engine_for(settings.database_url),
            loaded,
            request.identifiers,
            secret=secret.get_secret_value() if secret is not None else None,
            actor=by or getpass.getuser(),
            lock_wait_s=settings.run_lock_wait,
        )
    except (ErasureKeyError, UnlistedTables) as exc:
        raise base.fail("nothing erased", exc) from exc
    summary = {
        "source": str(file),
        "erased": len(outcome.erased),
        "already_erased": len(outcome.already_erased),
        "not_found": outcome.not_found,
        "refused": request.refused,
        "rows": outcome.rows,
        "files_deleted": outcome.files,
        "cache_files_deleted": outcome.cache_files,
        "tombstones": outcome.tombstones,
    }
    if json_out:
        print(base.to_json(summary))
    else:
        table = Table("table", "rows", title=f"erased {len(outcome.erased)} of {len(request.identifiers)} named")
        for name, count in sorted(outcome.rows.items()):
            table.add_row(name, str(count))
        console.print(table)
        console.print(
            f"{outcome.files} outbox files and {outcome.cache_files} event-cache files deleted; "
            f"{len(outcome.already_erased)} already erased, {len(outcome.not_found)} not found"
        )
        for value in outcome.not_found:
            console.print(f"not found: {literal(value)}")
        for line in request.refused:
            console.print(f"refused: {literal(line)}", style="red")
    if request.refused:
        raise typer.Exit(1)


@leads_app.command("export")
def export(
    lead: Annotated[str, typer.Argument(help="The lead's id or email")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the JSON here (default: stdout)")] = None,
    by: ByOpt = None,
) -> None:
    """Write everything held about a lead as JSON: its row, events, journeys, score history, emails,
    audiences, firings, enrolments, audit entries. Audited."""
    from flows.database import engine_for
    from store.access import LeadNotFound, export_lead

    try:
        data = export_lead(engine_for(get_settings().database_url), lead, actor=by or getpass.getuser())
    except LeadNotFound as exc:
        raise base.fail("nothing exported", exc) from exc
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    if out is None:
        print(text)
        return
    out.write_text(text + "\n", encoding="utf-8")
    counts = ", ".join(f"{name} {len(rows)}" for name, rows in data["tables"].items() if rows)
    console.print(f"exported lead {literal(data['lead']['lead_id'])} to {literal(out)}: {literal(counts or 'no rows')}")
