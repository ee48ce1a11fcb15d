"""``leadscore learn``, ``leadscore backtest`` and ``leadscore review``: learn a model from history, judge models
against history, and judge the portfolio's models on live outcomes."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from flows.cli import base
from flows.cli.base import JsonOpt, app, console, literal
from models.files import SpecError

HistoryOpt = Annotated[Path, typer.Option("--history", help="CSV of historical leads with their outcome")]
TargetOpt = Annotated[str, typer.Option("--target", help="Outcome column: 1/0, true/false or yes/no")]
EventsOpt = Annotated[Path | None, typer.Option("--events", help="Events CSV (ingestion schema) of those leads")]
CutoffOpt = Annotated[
    str | None, typer.Option("--cutoff-column", help="Per-lead time (ISO-8601 with zone); only earlier events count")
]
IdOpt = Annotated[
    str | None, typer.Option("--id-column", help="The leads' id column (events' lead_id); never a feature")
]
DropOpt = Annotated[list[str] | None, typer.Option("--drop", help="A column not to learn from (repeatable)")]
MissingOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--missing", help="A value meaning 'left empty' (repeatable; default: Select, N/A, NA, null, none, -)"
    ),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the folds and the estimator: same seed, same model")]
FoldsOpt = Annotated[int, typer.Option("--folds", min=2, max=20, help="Cross-validation folds")]
PortfolioOpt = Annotated[Path | None, typer.Option("--portfolio", "-p", help="Portfolio whose scale (and bands) apply")]


def _params(seed: int, folds: int, missing: list[str] | None, **extra: Any) -> Any:
    from models.learning.history import DEFAULT_MISSING
    from models.learning.learn import LearnParams

    words = tuple(dict.fromkeys(["", *(m.strip().lower() for m in missing)])) if missing else DEFAULT_MISSING
    return LearnParams(seed=seed, folds=folds, missing=words, **extra)


@contextmanager
def _progress(quiet: bool) -> Iterator[Any]:
    """A spinner naming the current step (on stderr with ``--json``, so stdout stays parseable)."""
    shown = base.progress_console(quiet)
    with shown.status("starting") as status:
        yield lambda step: status.update(f"[bold]{step}")


def _metrics_table(metrics: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="cross-validated, same folds")
    for column in ("model", "AUC", "± std", "top 10 %", "top 20 %", "lift@10 %", "Brier"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for label, m in metrics.items():
        brier = m.get("calibration", {}).get("brier")
        name = literal(label) + (" [yellow](in-sample)[/yellow]" if m.get("in_sample") else "")
        table.add_row(
            name,
            f"{m['auc']:.3f}",
            f"{m['auc_std']:.3f}",
            f"{m['capture_top10']:.0%}",
            f"{m['capture_top20']:.0%}",
            f"{m['lift_top10']:.2f}",
            "" if brier is None else f"{brier:.3f}",
        )
    return table


def _bands_table(metrics: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="conversion by band (leads → converted)")
    table.add_column("model")
    table.add_column("bands, lowest first")
    for label, m in metrics.items():
        cells = [
            f"{literal(b['band'])}: {b['leads']} → {b['converted']}"
            + (f" ({b['rate']:.0%})" if b["rate"] is not None else "")
            for b in m["bands"]
        ]
        table.add_row(literal(label), "; ".join(cells))
    return table


@app.command()
def learn(
    history: HistoryOpt,
    target: TargetOpt,
    out: Annotated[Path, typer.Option("--out", help="Model YAML to write")],
    events: EventsOpt = None,
    cutoff_column: CutoffOpt = None,
    id_column: IdOpt = None,
    drop: DropOpt = None,
    kind: Annotated[str, typer.Option("--kind", help="points (a readable scorecard) or probability")] = "points",
    missing: MissingOpt = None,
    seed: SeedOpt = 0,
    folds: FoldsOpt = 5,
    portfolio: PortfolioOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Keep every column that looks like a leak (reported)")] = False,
    keep: Annotated[
        list[str] | None,
        typer.Option("--keep", help="Keep this column although it looks like a leak (repeatable; still reported)"),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Learn a points scorecard or a probability model from historical conversions."""
    from models.learning.history import LearnError
    from models.learning.learn import BASELINE
    from models.learning.learn import learn as run

    if kind not in ("points", "probability"):
        raise base.fail(f"--kind must be points or probability, not {kind!r}")
    scale = base.load_portfolio_or_fail(portfolio).scale if portfolio is not None else None
    params = _params(seed, folds, missing, kind=kind, force=force, keep=tuple(keep or ()))
    try:
        with _progress(json_out) as progress:
            learned = run(history, target=target, out=out, params=params, events_path=events,
                          cutoff_column=cutoff_column, id_column=id_column, drop=tuple(drop or ()), scale=scale,
                          progress=progress)  # fmt: skip
    except (LearnError, SpecError) as exc:
        raise base.fail("cannot learn a model", exc) from exc
    model = learned.model
    summary = {
        "out": str(out),
        "kind": kind,
        "version": learned.version,
        "artifact": str(learned.artifact) if learned.artifact else None,
        "rules": len(model.fit) + len(model.behaviour),
        "leaks": [
            {"column": leak.column, "auc": leak.auc, "evidence": list(leak.evidence), "dropped": dropped}
            for leak in learned.leaks
            for dropped in [not force and leak.column not in params.keep]
        ],
        "metrics": learned.metrics,
    }
    if json_out:
        print(json.dumps(summary))
        return
    for leak in summary["leaks"]:
        what = "dropped (--keep COLUMN keeps it)" if leak["dropped"] else "kept"
        console.print(
            f"[yellow]leak:[/yellow] {literal(leak['column'])}: {literal('; '.join(leak['evidence']))}; {what}"
        )
    console.print(_metrics_table(learned.metrics))
    console.print(_bands_table(learned.metrics))
    ours, baseline = learned.metrics[f"learned {kind}"], learned.metrics[BASELINE]
    what = f"{summary['rules']} rules" if kind == "points" else f"estimator {literal(learned.artifact)}"
    console.print(
        f"{kind} model [bold]{literal(out)}[/bold] version {learned.version}: {what}; "
        f"CV AUC {ours['auc']:.3f} (top 20 % capture {ours['capture_top20']:.0%}) against the baseline's "
        f"{baseline['auc']:.3f} ({baseline['capture_top20']:.0%})"
    )


@app.command()
def backtest(
    models: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, readable=True, help="Model files")],
    history: HistoryOpt,
    target: TargetOpt,
    events: EventsOpt = None,
    cutoff_column: CutoffOpt = None,
    id_column: IdOpt = None,
    drop: DropOpt = None,
    missing: MissingOpt = None,
    seed: SeedOpt = 0,
    folds: FoldsOpt = 5,
    portfolio: PortfolioOpt = None,
    product_line: Annotated[
        str | None, typer.Option("--product-line", help="With --stage: add its active model")
    ] = None,
    stage: Annotated[
        str | None, typer.Option("--stage", help="The portfolio stage whose active model to compare")
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write an HTML report (lift/gains, conversion by band)")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Backtest model files on a history, side by side with a logistic-regression baseline on the same folds."""
    from models.learning.backtest import backtest as run
    from models.learning.backtest import label_of
    from models.learning.history import LearnError
    from models.learning.learn import prepare
    from stages.portfolio import load_model

    loaded, taken = {}, set()
    scale = None
    if portfolio is not None:
        book = base.load_portfolio_or_fail(portfolio)
        scale = book.scale
        if (product_line is None) != (stage is None):
            raise base.fail("--product-line and --stage go together")
        if product_line is not None and stage is not None:
            try:
                active = book.line(product_line).stage(stage)
            except KeyError as exc:
                raise base.fail(str(exc.args[0])) from exc
            label = f"active: {product_line}/{stage}"
            taken.add(label)
            loaded[label] = active.model
    for path in models:
        try:
            loaded[label_of(path, taken)] = load_model(path)
        except SpecError as exc:
            raise base.fail("invalid model", exc) from exc
    params = _params(seed, folds, missing)
    try:
        with _progress(json_out) as progress:
            ds = prepare(history, target=target, params=params, events_path=events, cutoff_column=cutoff_column,
                         id_column=id_column, drop=tuple(drop or ()), properties=True, progress=progress)  # fmt: skip
            from models.spec import Scale

            metrics = run(loaded, ds, scale or Scale(), params, progress=progress)
    except (LearnError, ValueError) as exc:
        raise base.fail("cannot backtest", exc) from exc
    if html is not None:
        from flows.report.backtest import render_backtest

        html.write_text(render_backtest(metrics, history=str(history), target=target), encoding="utf-8")
    if json_out:
        print(json.dumps({"metrics": metrics, "html": str(html) if html else None}))
        return
    console.print(_metrics_table(metrics))
    console.print(_bands_table(metrics))
    best = max(metrics, key=lambda label: metrics[label]["auc"])
    console.print(
        f"{ds.y.size} leads, {int(ds.y.sum())} converted; best CV AUC: [bold]{literal(best)}[/bold] "
        f"({metrics[best]['auc']:.3f})" + (f"; report → {literal(html)}" if html else "")
    )


@app.command()
def review(
    portfolio: base.PortfolioOpt = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Review as of this time (ISO-8601 with zone)")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Judge each stage's model on recent outcomes: conversion by band, AUC, MQL → opportunity against the
    target, lift by score decile; alerts when the top band stops converting better than the next.
    ``leadscore serve`` runs it weekly (monitoring.schedule)."""
    from flows.review import review_models
    from store.settings import get_settings

    path = base.portfolio_path(portfolio)
    base.load_portfolio_or_fail(path)
    report = review_models(str(path), as_of=base.parse_time(as_of), database_url=get_settings().database_url)
    if json_out:
        print(base.to_json({k: v for k, v in report.items() if k != "markdown"}))
        return
    console.print(f"model review {report['since'][:10]} → {report['as_of'][:10]}")
    for warning in report["warnings"]:
        style = "bold red" if warning.startswith("ALERT") else "yellow"
        console.print(f"[{style}]{literal(warning)}[/{style}]")
    table = Table("product line / stage", "outcomes", "AUC", "conversion by band, lowest first", "lift D1 → D10")
    lift: dict[tuple[str, str], list[str]] = {}
    for row in report["lift"]:
        lift.setdefault((row["product_line"], row["stage"]), []).append(
            f"D{row['decile']} {row['lift']:.2f}" if row["lift"] is not None else f"D{row['decile']} –"
        )
    for s in report["stages"]:
        bands = "; ".join(
            f"{literal(b['band'])}: {b['converted']}/{b['leads']}"
            + (f" ({b['rate']:.0%})" if b["rate"] is not None else "")
            for b in s["bands"]
        )
        auc = "–" if s["auc"] is None else f"{s['auc']:.3f}"
        where = (s["product_line"], s["stage"])
        table.add_row(literal("/".join(where)), str(s["leads"]), auc, bands, literal(" ".join(lift.get(where, []))))
    console.print(table)
    for q in report["qualified"]:
        rate = "–" if q["rate"] is None else f"{q['rate']:.0%}"
        console.print(
            f"{literal(q['product_line'])}: {literal(q['qualification'])} → {literal(q['opportunity_stage'])} "
            f"{rate} ({q['opportunities']}/{q['qualified']}), target {q['target']:.0%}"
        )
    if not report["warnings"]:
        console.print("[green]no warnings[/green]")
