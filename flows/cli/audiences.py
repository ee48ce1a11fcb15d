"""``leadscore audiences export``: a platform's customer-list files, full and adds/removes since the last export."""

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.cli import base
from flows.cli.base import JsonOpt, PortfolioOpt, app, console, literal
from flows.progress import progress_bars
from models.files import SpecError
from store.settings import get_settings

audiences_app = typer.Typer(
    help="Ad audiences: normalised, hashed customer lists per ad platform.", no_args_is_help=True
)
app.add_typer(audiences_app, name="audiences")


@audiences_app.command("export")
def export(
    platform: Annotated[str, typer.Option("--platform", help="meta | google | linkedin")],
    audience: Annotated[
        str | None, typer.Option("--audience", help="One audience (default: every one for the platform)")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for the files (AUDIENCE/PLATFORM/… inside)")] = Path(
        "audiences"
    ),
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Membership as of this time (ISO-8601 with zone)")
    ] = None,
    portfolio: PortfolioOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write each audience's full file plus the adds and removes since its previous export to PLATFORM.

    Only leads with ads consent that have not unsubscribed are exported; one that was exported before and
    has since lost consent (or been erased) is in the removes file.
    """
    from flows.audiences import AudienceNotFound, export_audiences
    from nurture.audiences import PLATFORMS

    if platform not in PLATFORMS:
        raise typer.BadParameter(f"{platform!r}: choose one of {', '.join(PLATFORMS)}", param_hint="--platform")
    loaded = base.load_portfolio_or_fail(portfolio)
    when = base.parse_time(as_of)
    try:
        with progress_bars(base.progress_console(json_out)):
            settings = get_settings()
            results = export_audiences(  # type: ignore[arg-type]
                loaded,
                platform,
                audience=audience,
                out_dir=out,
                as_of=when,
                database_url=settings.database_url,
                lock_wait_s=settings.run_lock_wait,
            )
    except SpecError as exc:
        raise base.fail("invalid audiences in the portfolio", exc) from exc
    except AudienceNotFound as exc:
        raise base.fail(str(exc.args[0]), code=1) from exc
    except ValueError as exc:
        raise base.fail(str(exc)) from exc
    if json_out:
        print(base.to_json([asdict(result) for result in results]))
        return
    if not results:
        console.print(f"no audience is exported to {platform}: add it to an audience's platforms in the portfolio")
        return
    table = Table(
        "audience", "members", "no consent", "unmatchable", "exported", "added", "removed", title=f"{platform} export"
    )
    for r in results:
        table.add_row(
            literal(r.audience),
            str(r.members),
            str(r.excluded_consent),
            str(r.unmatchable),
            str(r.full),
            str(r.added),
            str(r.removed),
        )
    console.print(table)
    for r in results:
        for kind, path in (("full", r.full_path), ("adds", r.adds_path), ("removes", r.removes_path)):
            console.print(f"{literal(r.audience)} {kind}: {literal(path)}", soft_wrap=True)
