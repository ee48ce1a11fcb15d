"""Account scoring after lead scoring: read the store into frames, score with ``stages.accounts``, write
the changed snapshots with their firings, then carry out the account alerts.

``score_all_accounts(..., write=False)`` is a read-only replay as of any date: member scores come from
the lead score history at that date and engagement from the event log up to it, so a replay as of a
run's ``as_of`` gives that run's snapshots (account attributes and membership are read as they are now).
"""

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine

from flows.database import engine_for
from models.breakdown import top_rules
from stages.accounts import account_firings, changed, member_figures, membership, score_accounts
from stages.portfolio import Portfolio, ProductLine, load_portfolio
from store.accounts import (
    read_account_arms,
    read_account_leads,
    read_accounts,
    read_engaged,
    read_last_account_scores,
    read_member_details,
    read_member_scores,
    write_account_run,
    write_members,
)
from store.scores import finish_run, start_run
from store.settings import Settings
from store.shapes import BREAKDOWN_TYPE

NAMED_MEMBERS = 10  # members an alert names, highest score first


@dataclass
class LineAccounts:
    """One product line's account scores (``ACCOUNT_RESULT_SCHEMA``) and the member figures they came from."""

    line: ProductLine
    result: pl.DataFrame
    figures: pl.DataFrame


def compute_accounts(engine: Engine, portfolio: Portfolio, as_of: datetime) -> tuple[pl.DataFrame, list[LineAccounts]]:
    """The membership and every account model's scores as of ``as_of``; writes nothing."""
    lines = [line for line in portfolio.product_lines.values() if line.account_model is not None]
    leads = read_account_leads(engine)
    accounts = read_accounts(engine)
    members = membership(leads, accounts, portfolio.accounts.free_mail)
    scored = []
    for line in lines:
        model = line.account_model
        assert model is not None
        scores = read_member_scores(engine, line.name, as_of)
        engaged = read_engaged(engine, model.engaged.events, model.engaged.within_days, as_of)
        figures = member_figures(model, members, leads, scores, engaged)
        bands = model.bands or line.spec.bands
        result = score_accounts(model, figures, accounts, scale=portfolio.scale, bands=bands)
        scored.append(LineAccounts(line, result, figures))
    return members, scored


def named_members(figures: pl.DataFrame, details: pl.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """Per account, the members an alert names with their reasons (top rules of their last snapshot)."""
    if details.is_empty():
        return {}
    name = pl.concat_str([pl.col("first_name"), pl.col("last_name")], separator=" ", ignore_nulls=True)
    rows = (
        details.join(figures.select("lead_key", "engaged", "seniority"), on="lead_key", how="left")
        .with_columns(
            pl.when(name != "").then(name).alias("name"),
            top_rules(pl.col("breakdown").str.json_decode(BREAKDOWN_TYPE)).alias("reasons"),
        )
        .sort(["account_id", "score", "lead_key"], descending=[False, True, False], nulls_last=True)
        .group_by("account_id", maintain_order=True)
        .head(NAMED_MEMBERS)
    )
    named: dict[str, list[dict[str, Any]]] = {}
    for row in rows.select(
        "account_id", "lead_id", "name", "email", "score", "engaged", "seniority", "reasons"
    ).iter_rows(named=True):
        named.setdefault(row.pop("account_id"), []).append(row)
    return named


def score_all_accounts(engine: Engine, portfolio: Portfolio, as_of: datetime, *, write: bool) -> dict[str, Any]:
    """Score every account model; with ``write``, store the changed snapshots, arm rows and firings
    (naming the members) as one run. Returns a summary per product line."""
    members, scored = compute_accounts(engine, portfolio, as_of)
    summary: dict[str, Any] = {"as_of": as_of.isoformat(), "members": members.height, "lines": {}}
    run_id = start_run(engine, "accounts", as_of) if write and scored else None
    if run_id is not None:
        write_members(engine, members, as_of)
        summary["run_id"] = run_id
    for item in scored:
        line, result = item.line.name, item.result
        entry: dict[str, Any] = {
            "accounts": result.height,
            "bands": dict(result.group_by("band").len().sort("band").iter_rows()),
            "qualified": {
                name: int(result["qualifications"].list.contains(name).sum())
                for name in item.line.account_model.qualification_names  # type: ignore[union-attr]
            },
        }
        if run_id is not None:
            before = read_last_account_scores(engine, line, as_of)
            fired = account_firings(
                item.line.account_model,  # type: ignore[arg-type]
                before,
                result,
                read_account_arms(engine, line),
                as_of=as_of,
            )
            ids = fired.firings["account_id"].unique().to_list()
            named = named_members(item.figures, read_member_details(engine, line, ids, as_of))
            state = result.select("account_id", "qualifications")
            firings = fired.firings.join(state, on="account_id", how="left").to_dicts()
            for firing in firings:
                firing["params"] = json.loads(firing["params"])
                firing["members"] = named.get(firing["account_id"], [])
            entry["snapshots"] = write_account_run(
                engine,
                product_line=line,
                run_id=run_id,
                as_of=as_of,
                snapshots=changed(result, before),
                arms=fired.armed,
                firings=firings,
            )
            entry["firings"] = len(firings)
        summary["lines"][line] = entry
    if run_id is not None:
        finish_run(engine, run_id, "completed", summary)
    return summary


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def score_accounts_task(portfolio_path: str, as_of: datetime, database_url: str, settings: Settings) -> dict[str, Any]:
    """The daily pipeline's account step (after lead scoring): score, store, alert the account owners."""
    from flows.account_alerts import execute_account_actions

    engine = engine_for(database_url)
    portfolio = load_portfolio(Path(portfolio_path))
    summary = score_all_accounts(engine, portfolio, as_of, write=True)
    summary["actions"] = execute_account_actions(engine, portfolio, settings)
    return summary
