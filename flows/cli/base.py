"""What every ``leadscore`` command shares: the app, the consoles, the common options and helpers.

The command modules of this package register their commands on :data:`app`; ``flows/cli/__init__.py``
imports them and fixes the ``--help`` order. They import what every command speaks in (``app``, ``console``,
``literal``, the option types) by name and call the rest as ``base.fail``, ``base.to_json``, …
"""

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

# Prefect's temporary server otherwise tries to phone home on every CLI run (and logs an error offline).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
from rich.console import Console
from rich.markup import escape

from flows.tempserver import tie_temporary_server
from models.files import SpecError
from store.settings import get_settings

tie_temporary_server()  # a CLI killed with SIGKILL must not leave Prefect's temporary server behind

console = Console()
# Problems go to stderr (so ``--json`` output stays parseable), unwrapped, and never read as rich markup:
# a message quoting a regular expression such as '[a-z]+' must print as written.
errors = Console(stderr=True, soft_wrap=True, highlight=False)
BUSY = 3  # exit code: the store or the portfolio is busy with another writer; run again later


def busy_store_message(exc: Exception) -> str | None:
    """One line for a store that another writer holds (the run lock, or SQLite's write lock), else None."""
    from sqlalchemy.exc import OperationalError

    from flows.database import engine_for
    from store.db import SQLITE_BUSY_TIMEOUT
    from store.runlock import RunLocked, holders

    if isinstance(exc, RunLocked):
        return str(exc)
    if not (isinstance(exc, OperationalError) and "database is locked" in str(exc)):
        return None
    url = get_settings().database_url
    engine = engine_for(url)
    try:
        held = "; ".join(f"portfolio {scope!r}: {holder}" for scope, holder in holders(engine))
    except Exception:  # the lock table may be unreadable too: the message must still come out
        held = ""
    who = f"a leadscore run ({held})" if held else "another program (an open sqlite3 shell or a stuck process?)"
    waited = engine.url.query.get("timeout", SQLITE_BUSY_TIMEOUT)
    return f"the store {url} is locked by {who}; waited {waited} s. Let it finish or close it, then run again."


class _Commands(TyperGroup):
    """Every command: a busy store is one clear line on stderr (exit code 3), not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            message = busy_store_message(exc)
            if message is None:
                raise
            raise fail(message, code=BUSY) from None


app = typer.Typer(help="Lead scoring pipelines: ingest, score, explain, adjust.", no_args_is_help=True, cls=_Commands)


@app.callback()
def _start() -> None:
    # Process-wide set-up from the settings before any command runs (malloc arenas, SQLite readers).
    from flows.startup import prepare_process

    prepare_process(get_settings())


DEMO_DIR = Path(__file__).resolve().parents[2] / "examples" / "demo"

PortfolioOpt = Annotated[
    Path | None,
    typer.Option(
        "--portfolio", "-p", help="Portfolio YAML (default: $LEADSCORE_PORTFOLIO, ./portfolio.yaml, the demo)"
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")]
InputFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)]


def fail(title: str, detail: object = None, code: int = 2) -> typer.Exit:
    """Print a problem to stderr (``detail`` verbatim) and return the ``Exit`` to raise."""
    errors.print(title, style="red", markup=False)
    if detail is not None:
        errors.print(str(detail), markup=False)
    return typer.Exit(code)


def progress_console(json_out: bool) -> Console:
    """Where progress shows: stderr under ``--json``, so stdout stays parseable JSON; else the console."""
    return errors if json_out else console


def literal(value: object) -> str:
    """A value shown as written: rich would read '[vip]' in a reason or rule name as a style tag and drop it."""
    return escape("" if value is None else str(value))


def to_json(value: Any) -> str:
    """JSON of a summary for ``--json``: times in ISO-8601, anything else unknown as its ``str``."""
    return json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v))


def portfolio_path(explicit: Path | None) -> Path:
    """The portfolio to use: the option, else $LEADSCORE_PORTFOLIO, else ./portfolio.yaml, else the bundled demo.

    A portfolio that is named (option or environment) but missing is an error, never a silent fallback.
    """
    if explicit is not None:
        if not explicit.is_file():
            raise typer.BadParameter(f"portfolio file {explicit} not found", param_hint="--portfolio")
        return explicit
    configured = get_settings().portfolio
    if configured is not None:
        if not Path(configured).is_file():
            raise typer.BadParameter(f"portfolio file {configured} not found", param_hint="LEADSCORE_PORTFOLIO")
        return Path(configured)
    if Path("portfolio.yaml").is_file():
        return Path("portfolio.yaml")
    return DEMO_DIR / "portfolio.yaml"


def load_portfolio_or_fail(path: Path | None) -> Any:
    """The portfolio :func:`portfolio_path` picks, loaded; an invalid one is a usage error (exit 2)."""
    from stages.portfolio import load_portfolio

    try:
        return load_portfolio(portfolio_path(path))
    except SpecError as exc:
        raise fail("invalid portfolio", exc) from exc


def parse_time(value: str | None) -> datetime | None:
    """An ``--as-of`` value as UTC: ISO-8601 with a zone (``Z`` or ``+HH:MM``), or ``None`` when not given."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO-8601 time", param_hint="--as-of") from None
    if parsed.tzinfo is None:
        raise typer.BadParameter(f"{value!r} has no time zone; add Z or +HH:MM", param_hint="--as-of")
    return parsed.astimezone(UTC)
