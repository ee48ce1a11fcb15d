"""``leadscore accounts``: score the accounts, replay them as of a date, show one account, list the top ones."""

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from flows.cli import base
from flows.cli.base import JsonOpt, PortfolioOpt, app, console, literal
from store.settings import get_settings

accounts_app = typer.Typer(help="Accounts: companies scored from their members' journeys.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")

AsOfOpt = Annotated[str | None, typer.Option("--as-of", help="As of this time (ISO-8601 with zone); default now")]
LineOpt = Annotated[str | None, typer.Option("--product-line", help="One product line (default: every account model)")]


def _lines(loaded: Any, product_line: str | None) -> list[str]:
    names = [name for name, line in loaded.product_lines.items() if line.account_model is not None]
    if not names:
        raise base.fail("no product line declares an account_model in the portfolio", code=1)
    if product_line is not None and product_line not in names:
        raise typer.BadParameter(f"{product_line!r}: lines with an account model: {names}", param_hint="--product-line")
    return [product_line] if product_line else names


@accounts_app.command("score")
def score(
    as_of: AsOfOpt = None,
    write: Annotated[bool, typer.Option("--write", help="Store the snapshots and fire the triggers")] = False,
    portfolio: PortfolioOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Score every account model as of a time: a read-only replay unless --write (then one run, like the daily step)."""
    from flows.accounts import score_all_accounts
    from flows.database import engine_for
    from flows.locking import writing

    loaded = base.load_portfolio_or_fail(portfolio)
    _lines(loaded, None)
    when = base.parse_time(as_of) or datetime.now(UTC)
    settings = get_settings()
    engine = engine_for(settings.database_url)
    if write:
        from flows.account_alerts import execute_account_actions

        with writing(engine, loaded, settings.run_lock_wait):
            summary = score_all_accounts(engine, loaded, when, write=True)
            summary["actions"] = execute_account_actions(engine, loaded, settings)
    else:
        summary = score_all_accounts(engine, loaded, when, write=False)
    if json_out:
        print(base.to_json(summary))
        return
    for line, entry in summary["lines"].items():
        bands = ", ".join(f"{band} {count}" for band, count in entry["bands"].items())
        qualified = ", ".join(f"{name} {count}" for name, count in entry["qualified"].items())
        written = f"; {entry['snapshots']} snapshots, {entry['firings']} firings" if "snapshots" in entry else ""
        console.print(
            f"{literal(line)}: {entry['accounts']} accounts ({bands}); {qualified or 'no qualifications'}{written}"
        )


@accounts_app.command("show")
def show(
    account_id: Annotated[str, typer.Argument(help="The account's id (or the domain of an implicit account)")],
    as_of: AsOfOpt = None,
    product_line: LineOpt = None,
    portfolio: PortfolioOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """One account as of a time, recomputed from the store (score, band, qualifications, breakdown, members),
    with its stored snapshot at that time beside it."""
    from flows.accounts import compute_accounts
    from flows.database import engine_for
    from store.accounts import read_last_account_scores

    loaded = base.load_portfolio_or_fail(portfolio)
    lines = _lines(loaded, product_line)
    when = base.parse_time(as_of) or datetime.now(UTC)
    engine = engine_for(get_settings().database_url)
    _, scored = compute_accounts(engine, loaded, when)
    found: dict[str, Any] = {}
    for item in scored:
        if item.line.name not in lines:
            continue
        row = item.result.filter(account_id=account_id)
        if row.is_empty():
            continue
        members = item.figures.filter(account_id=account_id).sort("score", descending=True, nulls_last=True)
        stored = read_last_account_scores(engine, item.line.name, when, [account_id])
        found[item.line.name] = {
            **row.to_dicts()[0],
            "member_list": members.select("lead_key", "score", "engaged", "seniority", "source").to_dicts(),
            "stored": (
                None
                if stored.is_empty()
                else {k: stored.to_dicts()[0][k] for k in ("run_id", "as_of", "score", "band", "qualifications")}
            ),
        }
    if not found:
        raise base.fail(f"unknown account {account_id!r} (no account file row, no member)", code=1)
    if json_out:
        print(base.to_json({"account_id": account_id, "as_of": when, "lines": found}))
        return
    for line, entry in found.items():
        qualifications = ", ".join(entry["qualifications"]) or "none"
        console.print(
            f"[bold]{literal(account_id)}[/bold] on {literal(line)} as of {when.isoformat()}: score {entry['score']:g}"
            f" ({entry['band']}), qualifications: {literal(qualifications)}; {entry['members']} members,"
            f" {entry['engaged_members']} engaged, {entry['seniorities']} seniorities"
        )
        table = Table("rule", "points")
        for part in entry["breakdown"]:
            table.add_row(literal(part["rule"]), f"{part['points']:+g}")
        console.print(table)
        if entry["stored"]:
            s = entry["stored"]
            console.print(f"stored snapshot: {s['score']:g} ({s['band']}) from run {s['run_id']} at {s['as_of']}")


@accounts_app.command("top")
def top(
    n: Annotated[int, typer.Option("-n", help="How many accounts")] = 20,
    as_of: AsOfOpt = None,
    product_line: LineOpt = None,
    portfolio: PortfolioOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The highest-scoring accounts as the stored snapshots had them at a time (default: now)."""
    from flows.database import engine_for
    from store.accounts import read_last_account_scores

    loaded = base.load_portfolio_or_fail(portfolio)
    when = base.parse_time(as_of) or datetime.now(UTC)
    engine = engine_for(get_settings().database_url)
    result: dict[str, list[dict[str, Any]]] = {}
    for line in _lines(loaded, product_line):
        frame = read_last_account_scores(engine, line, when).sort(["score", "account_id"], descending=[True, False])
        result[line] = frame.head(n).drop("breakdown").to_dicts()
    if json_out:
        print(base.to_json(result))
        return
    for line, rows in result.items():
        table = Table("account", "score", "band", "qualifications", "members", title=f"top accounts: {line}")
        for row in rows:
            qualifications = ", ".join(row["qualifications"] or [])
            table.add_row(
                literal(row["account_id"]),
                f"{row['score']:g}",
                row["band"],
                literal(qualifications),
                str(row["members"]),
            )
        console.print(table)
