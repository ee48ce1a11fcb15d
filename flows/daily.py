"""``daily_pipeline``: the scheduled run of DESIGN §4 — ingest the drop folder, score (with transitions
and triggers), alert the owners of overdue queue items, nurture, refresh the ad audiences, report.

The drop folder holds one sub-folder per kind, read in this order: ``leads/``, ``accounts/``, ``events/``,
``stage_updates/`` (CSV or JSONL). A file that was read goes to ``processed/DATE/`` (with its
``.rejects.csv`` beside it when some rows were refused); a file that could not be read at all (an
unsupported type, a broken header, any unexpected error) goes to ``rejected/DATE/`` with a
``.error.txt`` saying why, and the other files are still read: one bad file never stops the pipeline
nor stays in the inbox to fail every later day.
Ingestion is idempotent, so a crash before a file is moved only means it is read again next time.
"""

import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import SecretStr

from flows import progress
from flows.accounts import score_accounts_task
from flows.allocator import release_free_memory
from flows.audiences import refresh_audiences
from flows.database import engine_for
from flows.ingestion import ingest_file
from flows.locking import writing
from flows.nurture_run import run_nurture
from flows.queue_alerts import alert_overdue
from flows.report import report_task
from flows.scoring import scoring_flow
from flows.startup import enter_flow
from stages.portfolio import Portfolio, load_portfolio
from store.identity import purge_anonymous
from store.ingest import write_rejects_csv

DROP_KINDS = ("leads", "accounts", "events", "stage_updates")
READABLE = (".csv", ".jsonl", ".ndjson")


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
    logger = get_run_logger()
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


@task(cache_policy=NO_CACHE)
def purge_expired_visitors(portfolio: Portfolio, as_of: datetime, database_url: str) -> dict[str, int]:
    """Delete unlinked anonymous events past the portfolio's retention (``identity.anonymous_retention_days``)."""
    days = portfolio.spec.identity.anonymous_retention_days
    return {"anonymous_deleted": purge_anonymous(engine_for(database_url), as_of - timedelta(days=days))}


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
    database_url = settings.database_url
    logger = get_run_logger()
    as_of = as_of or datetime.now(UTC)
    portfolio = load_portfolio(Path(portfolio_path))
    folder = Path(inbox) if inbox else drop_folder_of(portfolio)
    timings: dict[str, float] = {}  # seconds per step
    summary: dict[str, Any] = {
        "as_of": as_of.isoformat(),
        "timings": timings,
        "failed": [],
    }
    # One writing run per portfolio and store, for the whole pipeline.
    with writing(engine_for(database_url), portfolio, settings.run_lock_wait):
        accounts = any(line.account_model is not None for line in portfolio.product_lines.values())
        steps_total = 5 + accounts + (report_path is not None) + (folder is not None)
        started = time.perf_counter()
        if folder is not None:
            progress.report("daily pipeline", 0, steps_total, "ingest")
            summary["ingested"] = ingest_drop_folder(portfolio, folder, database_url, settings.erasure_key())
            timings["ingest"] = round(time.perf_counter() - started, 3)
            release_free_memory()
        score = scoring_flow(settings)  # on the task runner the settings name
        steps = [
            ("score", lambda: score(portfolio_path, as_of=as_of, database_url=database_url, outbox_dir=outbox_dir)),
            ("overdue", lambda: alert_overdue(engine_for(database_url), portfolio, settings, as_of)),
            (
                "nurture",
                lambda: run_nurture(portfolio_path, database_url=database_url, as_of=as_of, outbox_dir=outbox_dir),
            ),
            ("audiences", lambda: refresh_audiences(portfolio_path, as_of, audiences_dir, database_url)),
            ("retention", lambda: purge_expired_visitors(portfolio, as_of, database_url)),
        ]
        if accounts:  # after the leads are scored: members' scores roll up into their accounts
            steps.insert(1, ("accounts", lambda: score_accounts_task(portfolio_path, as_of, database_url, settings)))
        if report_path is not None:  # the demo's simulated days before the last have no reader for a report
            out = report_path
            summary["report_path"] = str(Path(out).resolve())
            steps.append(("report", lambda: report_task(portfolio_path, out, database_url)))
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
