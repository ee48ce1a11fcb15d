"""``daily_pipeline``: the scheduled run of DESIGN §4 — ingest the drop folder, score (with transitions
and triggers), score accounts, alert the owners of overdue queue items, nurture, refresh the ad audiences,
purge expired anonymous visitors, report.

The drop folder holds one sub-folder per kind, read in this order: ``leads/``, ``accounts/``, ``events/``,
``stage_updates/`` (CSV or JSONL). A file that was read goes to ``processed/DATE/`` (with its
``.rejects.csv`` beside it when some rows were refused); a file that could not be read at all (an
unsupported type, a broken header, any unexpected error) goes to ``rejected/DATE/`` with a
``.error.txt`` saying why, and the other files are still read: one bad file never stops the pipeline
nor stays in the inbox to fail every later day.
Ingestion is idempotent, so a crash before a file is moved only means it is read again next time.

``run_pipeline`` is the sequence itself (run lock, timings, a failed step does not stop the next);
``daily_pipeline`` runs it with each step a sub-flow or task, ``daily_in_process`` with the same steps as
plain calls (``leadscore demo``: sixty days in a row, no Prefect history wanted).
"""

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import SecretStr

from flows import progress
from flows.accounts import score_accounts_task
from flows.allocator import release_free_memory
from flows.audiences import every_export, export_run, refresh_audiences
from flows.database import engine_for
from flows.ingestion import ingest_file
from flows.locking import writing
from flows.nurture_run import recorded_nurture, run_nurture
from flows.queue_alerts import alert_overdue
from flows.report import report_counts, report_task, write_report
from flows.scoring import score_run, scoring_flow
from flows.startup import enter_flow
from nurture.context import Context
from stages.portfolio import Portfolio, load_portfolio
from store.identity import purge_anonymous
from store.ingest import write_rejects_csv
from store.settings import Settings

DROP_KINDS = ("leads", "accounts", "events", "stage_updates")
READABLE = (".csv", ".jsonl", ".ndjson")
Step = tuple[str, Callable[[], Any]]  # (name, what it does): the summary keeps its result under the name


def _move(path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists():  # the same name dropped again another time: keep both
        target = folder / f"{path.stem}.{datetime.now(UTC):%H%M%S%f}{path.suffix}"
    return Path(shutil.move(str(path), target))


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def ingest_drop_folder(
    portfolio: Portfolio, inbox: Path, database_url: str, erasure_secret: SecretStr | None = None
) -> list[dict[str, Any]]:
    """Ingest every file waiting in ``inbox``, kind by kind in name order, and file it away
    (``erasure_secret`` recognises erased people; a ``SecretStr``, so Prefect records it masked)."""
    return ingest_inbox(portfolio, inbox, database_url, get_run_logger(), erasure_secret)


def ingest_inbox(
    portfolio: Portfolio,
    inbox: Path,
    database_url: str,
    logger: logging.Logger | logging.LoggerAdapter,
    erasure_secret: SecretStr | None = None,
) -> list[dict[str, Any]]:
    """``ingest_drop_folder``'s work, logged to ``logger``."""
    day = datetime.now(UTC).date().isoformat()
    reports: list[dict[str, Any]] = []
    waiting = [
        path
        for kind in DROP_KINDS
        if (inbox / kind).is_dir()
        for path in sorted((inbox / kind).glob("*"))
        if path.is_file() and not path.name.endswith(".rejects.csv")
    ]
    for done, path in enumerate(waiting):
        kind = path.parent.name
        progress.report("ingesting files", done, len(waiting), path.name)
        if path.suffix.lower() not in READABLE:
            error = f"unsupported file type {path.suffix!r}; use {', '.join(READABLE)}"
        else:
            try:
                outcome = ingest_file(portfolio, kind, path, database_url, erasure_secret=erasure_secret)
            except ValueError as exc:  # the file as a whole is unreadable (a broken header, …)
                error = str(exc)
            except Exception as exc:  # anything else: this file is set aside, the others are still read
                error = f"unexpected {type(exc).__name__} while reading the file: {exc}"[:2000]
            else:
                moved = _move(path, inbox / "processed" / day / kind)
                if outcome.rejects:
                    write_rejects_csv(outcome.report, moved.with_name(moved.name + ".rejects.csv"))
                reports.append(outcome.summary() | {"file": str(moved)})
                logger.info("%s %s: %s", kind, path.name, outcome.report.summary())
                continue
        moved = _move(path, inbox / "rejected" / day / kind)
        moved.with_name(moved.name + ".error.txt").write_text(error + "\n", encoding="utf-8")
        reports.append({"kind": kind, "source": str(path), "file": str(moved), "error": error})
        logger.error("%s %s rejected: %s", kind, path.name, error)
    progress.report("ingesting files", len(waiting), len(waiting))
    return reports


def drop_folder_of(portfolio: Portfolio) -> Path | None:
    folder = portfolio.spec.ingest.drop_folder
    return None if folder is None else (portfolio.path.parent / folder).resolve()


def purge_expired_visitors(portfolio: Portfolio, as_of: datetime, database_url: str) -> dict[str, int]:
    """Delete unlinked anonymous events past the portfolio's retention (``identity.anonymous_retention_days``)."""
    days = portfolio.spec.identity.anonymous_retention_days
    return {"anonymous_deleted": purge_anonymous(engine_for(database_url), as_of - timedelta(days=days))}


def _with_side_steps(
    portfolio: Portfolio,
    settings: Settings,
    as_of: datetime,
    score: Step,
    accounts: Step,
    nurture: Step,
    audiences: Step,
) -> list[Step]:
    """The pipeline's steps in order around the four that differ between a flow run (Prefect tasks) and
    the demo's in-process days (plain calls): accounts after the leads are scored (when a line has an
    account model), overdue queue alerts, then nurture and audiences, then the anonymous-visitor retention."""
    url = settings.database_url
    steps: list[Step] = [score]
    if any(line.account_model is not None for line in portfolio.product_lines.values()):
        steps.append(accounts)
    steps += [
        ("overdue", lambda: alert_overdue(engine_for(url), portfolio, settings, as_of)),
        nurture,
        audiences,
        ("retention", lambda: purge_expired_visitors(portfolio, as_of, url)),
    ]
    return steps


@flow(name="daily-pipeline", log_prints=True)
def daily_pipeline(
    portfolio_path: str,
    database_url: str | None = None,
    as_of: datetime | None = None,
    inbox: str | None = None,
    audiences_dir: str = "audiences",
    report_path: str | None = "report.html",
    outbox_dir: str | None = None,
) -> dict[str, Any]:
    """Ingest → score (transitions, triggers) → accounts (when a line has an account model) → overdue queue
    alerts → nurture → audience exports (into ``audiences_dir``) → anonymous-visitor retention → the HTML
    report (``report_path``; None: no report this run) and its key tables as artifacts.

    Each step runs even when an earlier one failed for part of the data (scores of the other partitions
    are stored), and the run fails at the end if any step did; re-running it is idempotent.
    ``database_url`` and ``outbox_dir`` default to the settings (``LEADSCORE_*``)."""
    settings = enter_flow(database_url, outbox_dir)
    url = settings.database_url
    as_of = as_of or datetime.now(UTC)
    portfolio = load_portfolio(Path(portfolio_path))
    folder = Path(inbox) if inbox else drop_folder_of(portfolio)
    score = scoring_flow(settings)  # on the task runner the settings name
    steps = _with_side_steps(
        portfolio,
        settings,
        as_of,
        ("score", lambda: score(portfolio_path, as_of=as_of, database_url=url, outbox_dir=outbox_dir)),
        ("accounts", lambda: score_accounts_task(portfolio_path, as_of, url, settings)),  # a task: retried
        ("nurture", lambda: run_nurture(portfolio_path, database_url=url, as_of=as_of, outbox_dir=outbox_dir)),
        ("audiences", lambda: refresh_audiences(portfolio_path, as_of, audiences_dir, url)),
    )
    if report_path is not None:
        steps.append(("report", lambda: report_task(portfolio_path, report_path, url)))
    ingest = None if folder is None else (lambda: ingest_drop_folder(portfolio, folder, url, settings.erasure_key()))
    return run_pipeline(portfolio, settings, as_of, ingest, steps, get_run_logger(), report_path)


def daily_in_process(
    ctx: Context,
    settings: Settings,
    as_of: datetime,
    inbox: Path,
    audiences_dir: Path,
    report_path: Path | None,
) -> dict[str, Any]:
    """The same pipeline with each step a plain call in this process: no flow or task runs, no artifacts,
    the portfolio and its nurture context loaded once by the caller. For ``leadscore demo``, which runs
    sixty days in a row where a flow run per day and per step would cost more than the steps do."""
    portfolio, url = ctx.portfolio, settings.database_url
    exports = every_export(portfolio)
    steps = _with_side_steps(
        portfolio,
        settings,
        as_of,
        ("score", lambda: score_run(portfolio, settings, as_of, tasks=False)),
        ("accounts", lambda: score_accounts_task.fn(str(portfolio.path), as_of, url, settings)),
        ("nurture", lambda: recorded_nurture(ctx, settings, as_of).as_dict()),
        (
            "audiences",
            lambda: [
                asdict(result)
                for result in export_run(
                    portfolio, exports, out_dir=audiences_dir, as_of=as_of, database_url=url,
                    lock_wait_s=settings.run_lock_wait,
                )
            ],
        ),
    )  # fmt: skip
    if report_path is not None:
        steps.append(("report", lambda: report_counts(write_report(portfolio.path, report_path, url))))
    logger = logging.getLogger("leadscore.daily")
    ingest = lambda: ingest_inbox(portfolio, inbox, url, logger, settings.erasure_key())  # noqa: E731
    return run_pipeline(portfolio, settings, as_of, ingest, steps, logger, report_path)


def run_pipeline(
    portfolio: Portfolio,
    settings: Settings,
    as_of: datetime,
    ingest: Callable[[], list[dict[str, Any]]] | None,
    steps: list[Step],
    logger: logging.Logger | logging.LoggerAdapter,
    report_path: str | Path | None,
) -> dict[str, Any]:
    """Ingest, then each step in order under the portfolio's run lock, timed; a failed step is logged and the
    next still runs on what was stored, and the run fails at the end."""
    timings: dict[str, float] = {}  # seconds per step
    summary: dict[str, Any] = {"as_of": as_of.isoformat(), "timings": timings, "failed": []}
    if report_path is not None:
        summary["report_path"] = str(Path(report_path).resolve())
    steps_total = len(steps) + (ingest is not None)
    # One writing run per portfolio and store, for the whole pipeline.
    with writing(engine_for(settings.database_url), portfolio, settings.run_lock_wait):
        if ingest is not None:
            progress.report("daily pipeline", 0, steps_total, "ingest")
            started = time.perf_counter()
            summary["ingested"] = ingest()
            timings["ingest"] = round(time.perf_counter() - started, 3)
            release_free_memory()
        for done, (name, step) in enumerate(steps, steps_total - len(steps)):
            progress.report("daily pipeline", done, steps_total, name)
            started = time.perf_counter()
            try:
                summary[name] = step()
            except Exception as exc:  # the next steps still run on what was stored
                logger.error("step %s failed: %r", name, exc)
                summary["failed"].append({"step": name, "error": repr(exc)})
            timings[name] = round(time.perf_counter() - started, 3)
            release_free_memory()  # the next step's peak does not stack on what this one freed
    progress.report("daily pipeline", steps_total, steps_total)
    if summary["failed"]:
        raise RuntimeError(f"daily pipeline: {len(summary['failed'])} step(s) failed: {summary['failed']}")
    return summary
