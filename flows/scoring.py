"""``score_portfolio``: score every active journey, one task per (product line, lead partition)."""

import uuid
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from adbc_driver_manager import OperationalError as AdbcOperationalError
from prefect import Flow, flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from flows import progress
from flows.actions import execute_actions
from flows.database import engine_for
from flows.locking import writing
from flows.run_summary import TOP_N, PartitionResult, publish, summarize
from flows.runners import task_runner
from flows.startup import enter_flow
from models.breakdown import top_rules
from stages.pipeline import LineOutcome, run_line
from stages.portfolio import Portfolio, load_portfolio
from store import partitions  # the module: score_partition ships by value to Dask, its lock cannot
from store.db import refresh_statistics
from store.identity import visible_journeys
from store.score_indexes import deferred_score_indexes
from store.scores import (
    finish_run,
    read_journeys,
    read_journeys_as_of,
    read_leads,
    start_run,
)
from store.settings import Settings
from store.settled import PartitionDigest, PartitionState, keep_only, line_context
from store.sqlite_read_workers import SqliteReadError
from store.stages import (
    FunnelWrite,
    firing_summary,
    read_pending_updates,
    read_reached,
    read_trigger_arms,
    write_partition,
)


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry on lost connections and locked or busy databases (SQLAlchemy or ADBC), not on bugs."""
    try:
        state.result()
    except OperationalError:
        return True
    except DBAPIError as exc:
        return exc.connection_invalidated
    except (AdbcOperationalError, SqliteReadError) as exc:
        return isinstance(exc, AdbcOperationalError) or any(w in str(exc) for w in ("locked", "busy", "I/O"))
    except Exception:
        return False
    return False


@task(
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=_transient,
    cache_policy=NO_CACHE,
    task_run_name="score {line_name} [{key_range[0]}, {key_range[1]})",
)
def score_partition(
    portfolio: Portfolio,
    line_name: str,
    key_range: tuple[int, int],
    as_of: datetime,
    run_id: str | None,
    read_token: str,
    database_url: str,
) -> PartitionResult:
    """Score one product line's journeys in one lead-key range; write the outcome when ``run_id`` is set.

    Without ``run_id`` this is a read-only replay of a run at ``as_of`` (see ``line_outcome``).
    ``read_token`` identifies the run's view of the event log: the product lines of a partition share
    one read of its events.
    """
    engine = engine_for(database_url)
    result = PartitionResult(line_name, key_range)
    replay = run_id is None
    state = read_state(engine, portfolio, line_name, key_range, as_of, read_token=read_token, replay=replay)
    if state is None:
        return result
    digest = None if replay else _partition_digest(engine, portfolio, line_name, key_range, as_of, read_token)
    if digest is not None:
        kept = digest.kept_summary(state)
        if kept is not None:  # nothing it reads changed since its last run: scoring would change nothing
            return PartitionResult(line_name, key_range, kept["scored"], bands=kept["bands"], top=kept["top"])
        digest.forget()
    found = line_outcome(
        engine, portfolio, line_name, key_range, as_of, read_token=read_token, replay=replay, state=state
    )
    if found is None:
        return result
    leads, updates, outcome = found
    # Updates dated after as_of wait for a later run; the others are taken into account now.
    applied = updates.filter(pl.col("changed_at") <= as_of)["id"].to_list()
    if run_id is not None:
        funnel = FunnelWrite(
            moved=outcome.moved,
            transitions=outcome.transitions,
            milestones=outcome.milestones,
            arms=outcome.fired.armed,
            firings=outcome.fired.firings,
            applied_updates=applied,
        )
        result.snapshots = write_partition(
            engine,
            run_id=run_id,
            as_of=as_of,
            product_line=line_name,
            snapshots=outcome.snapshots,
            current=outcome.changed,
            funnel=funnel,
        )
    scored = outcome.scored
    result.transitions = _counts(
        outcome.transitions.select(pl.format("{} → {} ({})", "from_stage", "to_stage", "reason"))
    )
    result.milestones = _counts(outcome.milestones.select("qualification"))
    result.firings = _counts(outcome.fired.firings.select(pl.format("{}: {}", "trigger", "action")))
    result.scored, result.changed = scored.height, outcome.changed.height
    result.bands = {f"{stage}/{band}": n for stage, band, n in scored.group_by("stage", "band").len().iter_rows()}
    top = scored.sort("score", descending=True).head(TOP_N).join(leads.select("lead_key", "lead_id"), on="lead_key")
    result.top = top.select(
        "lead_id", "stage", "score", "band", top_rules(pl.col("breakdown")).alias("reasons")
    ).to_dicts()
    if digest is not None:
        left = state.after(
            moved=outcome.moved,
            changed=outcome.changed,
            applied_updates=applied,
            arms=outcome.fired.armed,
            milestones=outcome.milestones,
        )
        digest.settle(left, {"scored": result.scored, "bands": result.bands, "top": result.top})
    return result


def _partition_digest(
    engine: Engine, portfolio: Portfolio, line_name: str, key_range: tuple[int, int], as_of: datetime, read_token: str
) -> PartitionDigest | None:
    """The digest of what this partition's run reads (None where it cannot be known, see ``store.settled``);
    the change log is read here, before the events."""
    line = portfolio.line(line_name)
    context = line_context(
        [portfolio.spec.model_dump_json()],
        [stage.model.model_dump_json() + stage.bands.model_dump_json() for stage in line.stages],
        [path for stage in line.stages if (path := stage.model.artifact_path) is not None],
        as_of,
    )
    identity = partitions.shared_partition_reads.identity(engine, token=read_token)
    return PartitionDigest.of(engine, line_name, key_range, context, identity)


def read_state(
    engine: Engine,
    portfolio: Portfolio,
    line_name: str,
    key_range: tuple[int, int],
    as_of: datetime,
    *,
    read_token: str,
    replay: bool,
) -> PartitionState | None:
    """What a run at ``as_of`` reads of one line's journeys in a key range besides the events, or None when
    the range has no journey to score.

    A run starts from the store's current state. A ``replay`` starts from the state a run at ``as_of``
    found, rebuilt from the logs: journeys opened by then, at the stage of their last transition written
    by an earlier run, with the pending CRM updates, trigger arms and milestones of that moment; so a
    replay of a past run gives the journeys, snapshots and firings that run wrote.
    """
    if replay:
        journeys = read_journeys_as_of(engine, line_name, key_range, as_of, portfolio.line(line_name).first_stage.name)
    else:
        journeys = read_journeys(engine, line_name, key_range)
    replay_at = as_of if replay else None
    # Merged leads' journeys are not scored: their events count for the survivor's (store.identity).
    identity = partitions.shared_partition_reads.identity(engine, token=read_token, as_of=replay_at)
    if visible_journeys(journeys, identity).is_empty():
        return None
    leads = partitions.shared_partition_reads.shared(  # the product lines of a partition read its leads once
        read_token,
        ("leads", str(engine.url), key_range, tuple(portfolio.scored_attributes)),
        lambda: read_leads(engine, key_range, portfolio.scored_attributes),
    )
    return PartitionState(
        journeys=journeys,
        leads=leads,
        updates=read_pending_updates(engine, line_name, key_range, replay_at),
        armed=read_trigger_arms(engine, line_name, key_range, replay_at),
        reached=read_reached(engine, line_name, key_range, replay_at),
    )


def line_outcome(
    engine: Engine,
    portfolio: Portfolio,
    line_name: str,
    key_range: tuple[int, int],
    as_of: datetime,
    *,
    read_token: str,
    replay: bool,
    state: PartitionState | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, LineOutcome] | None:
    """What a run at ``as_of`` does to one line's journeys in a key range: ``(leads, updates, outcome)``,
    or None when the range has no journey. ``state``: ``read_state``'s, when the caller has read it."""
    state = state or read_state(engine, portfolio, line_name, key_range, as_of, read_token=read_token, replay=replay)
    if state is None:
        return None
    replay_at = as_of if replay else None
    identity = partitions.shared_partition_reads.identity(engine, token=read_token, as_of=replay_at)
    partition_events = partitions.shared_partition_reads.events(
        engine,
        key_range,
        token=read_token,
        types=portfolio.scored_event_types,
        properties=portfolio.scored_properties,
        as_of=replay_at,
    )
    events = partition_events.filter(pl.col("product_line").is_null() | (pl.col("product_line") == line_name))
    outcome = run_line(
        portfolio.line(line_name),
        journeys=visible_journeys(state.journeys, identity),
        leads=state.leads,
        events=events,
        updates=state.updates,
        armed=state.armed,
        reached=state.reached,
        as_of=as_of,
        scale=portfolio.scale,
    )
    return state.leads, state.updates, outcome


@task(cache_policy=NO_CACHE)
def carry_out_actions(portfolio: Portfolio, settings: Settings) -> dict[str, dict[str, int]]:
    """Notifications, webhooks and track moves of every open firing (this run's and earlier ones')."""
    return execute_actions(engine_for(settings.database_url), portfolio, settings)


def _counts(column: pl.DataFrame) -> dict[str, int]:
    return {key: n for key, n in column.to_series().value_counts().iter_rows()}


# Declared on the default runner (importing reads no settings); entry points run ``scoring_flow(settings)``,
# on the runner the settings name (LEADSCORE_TASK_RUNNER: threads, processes or dask).
@flow(name="score-portfolio", task_runner=task_runner(Settings.model_construct()), log_prints=True)
def score_portfolio(
    portfolio_path: str,
    as_of: datetime | None = None,
    write: bool = True,
    database_url: str | None = None,
    outbox_dir: str | None = None,
) -> dict[str, Any]:
    """Recompute every active journey's score from the event log as of ``as_of`` (default: now); a partition
    whose reads are those its last run left is not scored again (``store.settled``).

    With ``write`` a snapshot is stored only where score, band or qualification changed; without it
    the run is a read-only replay. Re-running gives the same final state (scores are derived).
    ``database_url`` and ``outbox_dir`` (owner alerts) default to the settings (``LEADSCORE_*``).
    """
    settings = enter_flow(database_url, outbox_dir)
    portfolio = load_portfolio(Path(portfolio_path))
    summary = score_run(portfolio, settings, as_of or datetime.now(UTC), write=write, tasks=True)
    get_run_logger().info("scored %d journeys, %d changed", summary["scored"], summary["changed"])
    publish(summary)
    return summary


def score_run(
    portfolio: Portfolio, settings: Settings, as_of: datetime, *, write: bool = True, tasks: bool
) -> dict[str, Any]:
    """The scoring run itself: partitions scored (as Prefect tasks on the flow's runner with ``tasks``, else
    one after the other in this process, for a caller that runs many days and needs no run records),
    then the firings' actions; recorded in ``runs`` when it writes."""
    engine = engine_for(settings.database_url)
    refresh_statistics(engine)
    with writing(engine, portfolio, settings.run_lock_wait) if write else nullcontext(None) as scope:
        run_id = start_run(engine, "score", as_of, scope) if write else None
        key_ranges = partitions.lead_key_partitions(engine, portfolio.spec.scoring.partition_size)
        read_token = uuid.uuid4().hex
        # Partition-major order: the lines of a partition run side by side and share its event read.
        calls = [
            (portfolio, line, key_range, as_of, run_id, read_token, settings.database_url)
            for key_range in key_ranges
            for line in portfolio.product_lines
        ]
        # A first run's score indexes are built again (``deferred_score_indexes``) while its actions are carried
        # out: they read and write other tables. The run is finished once the build is done.
        with deferred_score_indexes(engine, run_id) if run_id is not None else nullcontext(None) as deferred:
            outcomes = _on_task_runner(calls) if tasks else _in_process(calls)
            if deferred is not None:
                deferred.build_behind()
            partitions.shared_partition_reads.release(read_token)
            if run_id is not None:
                keep_only(engine, [(line, key_range) for key_range in key_ranges for line in portfolio.product_lines])
            failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
            summary = summarize([o for o in outcomes if isinstance(o, PartitionResult)], run_id, as_of)
            if run_id is not None and not failures:
                refresh_statistics(engine)  # a first run has just written every snapshot the actions look up
                summary["actions"] = (
                    carry_out_actions(_as_input(portfolio), settings)
                    if tasks
                    else carry_out_actions.fn(portfolio, settings)
                )
                summary["firing_outcomes"] = firing_summary(engine, run_id)
        if failures:
            if run_id is not None:
                finish_run(engine, run_id, "failed", {"failed_tasks": len(failures), "error": repr(failures[0])})
            raise failures[0]
        if run_id is not None:
            finish_run(engine, run_id, "completed", {k: v for k, v in summary.items() if k != "top"})
        return summary


def _as_input(portfolio: Portfolio) -> Portfolio | quote[Portfolio]:
    """The portfolio as a task input: quoted on the thread runner, or Prefect walks its whole object tree (specs,
    models, the YAML nodes) for each task run's inputs: ≈ 40 ms of CPU per task run, 0.8 s of a 200k-lead
    re-run. Dask's runner hands a quoted value on as a bare tuple, so other runners get it plain."""
    context = FlowRunContext.get()
    return quote(portfolio) if context and isinstance(context.task_runner, ThreadPoolTaskRunner) else portfolio


def _on_task_runner(calls: list[tuple[Any, ...]]) -> list[PartitionResult | BaseException]:
    futures = [score_partition.submit(_as_input(portfolio), *rest) for portfolio, *rest in calls]
    # Every partition commits on its own: one failure does not lose the others' work.
    for done, _ in enumerate(as_completed(futures), 1):
        progress.report("scoring partitions", done, len(futures))
    return [future.result(raise_on_failure=False) for future in futures]


def _in_process(calls: list[tuple[Any, ...]]) -> list[PartitionResult | BaseException]:
    outcomes: list[PartitionResult | BaseException] = []
    for done, call in enumerate(calls, 1):
        try:
            outcomes.append(score_partition.fn(*call))
        except Exception as exc:  # like a failed task: the other partitions still run
            outcomes.append(exc)
        progress.report("scoring partitions", done, len(calls))
    return outcomes


def scoring_flow(settings: Settings) -> Flow[..., dict[str, Any]]:
    """``score_portfolio`` on the task runner ``settings`` choose."""
    return score_portfolio.with_options(task_runner=task_runner(settings))
