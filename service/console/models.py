"""The models page (marketing, admins): per product line and stage the rules in words with their points, caps
and decay, where each lives (file:line: editing stays in the versioned portfolio files), how many current
journeys each rule scores and its total contribution, and a learned model's cross-validated backtest."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from models.files import line_of, read_yaml
from models.wording import rules
from service.console.common import render, session_of
from service.console.sessions import require
from stages.portfolio import Portfolio
from store.rule_usage import latest_snapshot, rule_usage

router = APIRouter(prefix="/console", include_in_schema=False)


def _place(portfolio: Portfolio, model: str) -> tuple[str, Any]:
    """The model file as the portfolio names it, and its YAML tree (for rule lines)."""
    _, node = read_yaml((portfolio.path.parent / model).resolve())
    return model, node


def stage_models(portfolio: Portfolio, usage: dict[tuple[str, str, str], tuple[int, float]]) -> list[dict[str, Any]]:
    """Per product line its scored stages, each with its rules and their use; entries of the breakdowns that
    are no rule of the file (caps, the scale clamp, manual adjustments) follow as ``other``."""
    lines = []
    for line in portfolio.product_lines.values():
        stages = []
        for stage in line.stages:
            if stage.terminal or stage.spec.model is None:
                continue
            file, node = _place(portfolio, stage.spec.model)
            found = rules(stage.model)
            for rule in found:
                rule["where"] = f"{file}:{line_of(node, [rule['group'], rule['index']])}"
                rule["journeys"], rule["total"] = usage.get((line.name, stage.name, rule["rule"]), (0, 0.0))
            named = {rule["rule"] for rule in found}
            other = [
                {"rule": rule, "journeys": n, "total": total}
                for (line_name, stage_name, rule), (n, total) in usage.items()
                if (line_name, stage_name) == (line.name, stage.name) and rule not in named
            ]
            declared = line_of(portfolio.node, ["product_lines", line.name, "stages", stage.name])
            stages.append(
                {"name": stage.name, "kind": stage.model.kind, "file": file,
                 "declared": f"{portfolio.path.name}:{declared}", "promote_at": stage.spec.promote_at,
                 "entry": stage.spec.entry, "rules": found, "other": other,
                 "backtest": stage.model.metadata.get("metrics"), "learned": stage.model.metadata.get("learned")}
            )  # fmt: skip
        lines.append({"name": line.name, "stages": stages})
    return lines


def _page_data(service: Any, cache: dict[str, Any]) -> dict[str, Any]:
    """Made again only after a run wrote snapshots (the rules' use reads every journey's latest one; the
    portfolio is the process's own)."""
    latest = latest_snapshot(service.engine)
    if cache.get("models_at") != latest or "models" not in cache:
        frame = rule_usage(service.engine)
        usage = {(line, stage, rule): (n, total) for line, stage, rule, n, total in frame.iter_rows()}
        cache["models"], cache["models_at"] = {"lines": stage_models(service.portfolio, usage)}, latest
    return cache["models"]


@router.get("/models", response_class=HTMLResponse)
async def models(request: Request) -> HTMLResponse:
    session = await session_of(request)
    require(session, "models")
    found = await run_in_threadpool(_page_data, request.app.state.service, request.app.state.console.cache)
    return render(request, session, "models.html.j2", **found)
