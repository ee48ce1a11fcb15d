"""The ``leadscore`` command line: short human summaries (rich), ``--json`` where scripts read it.

Each module of this package registers one group of commands on :data:`flows.cli.base.app`; importing
them here registers them all, and :data:`HELP_ORDER` keeps ``leadscore --help`` in the order users know.
"""

from typer.models import CommandInfo, TyperInfo

from flows.cli import accounts, api, audiences, ingest, leads, learn, nurture, ops, pipeline, privacy, score, users  # noqa: F401  (register commands)
from flows.cli.base import app

HELP_ORDER = (
    "init",
    "ingest",
    "score",
    "explain",
    "adjust",
    "score-file",
    "demo",
    "daily",
    "learn",
    "backtest",
    "review",
    "nurture",
    "suppress",
    "serve",
    "report",
    "stages",  # the groups: Typer lists them after the commands
    "audiences",
    "accounts",
    "leads",
    "api",
    "users",
)


def _help_position(info: CommandInfo | TyperInfo) -> int:
    """Where a command or group goes in ``--help``: by its name as Typer shows it (the function's, dashed)."""
    return HELP_ORDER.index(info.name or info.callback.__name__.replace("_", "-"))  # type: ignore[union-attr]


app.registered_commands.sort(key=_help_position)
app.registered_groups.sort(key=_help_position)

__all__ = ["app"]
