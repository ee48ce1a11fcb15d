"""The nurture run: read → decide → render → deliver → record, in a few set-based steps.

(Not ``flows/nurture.py``: Prefect puts ``flows/`` on ``sys.path`` when it loads a deployment's
entrypoint, and a module of that name would then shadow the ``nurture`` package.)

``nurture_once`` is the plain function (tests and the CLI's dry run call it); ``run_nurture`` is the
Prefect flow around it with an artifact summarising enrolments, sends and exits.

The decisions are ``nurture.core``'s (state in, plan out); this module reads, writes and delivers. The
emails are composed by ``nurture.composing`` (which also makes previews) from what
``nurture.context`` loads.

Crash safety: suppressions, exits and enrolments are committed first (a re-run sees them and does not
repeat them); emails go through the at-most-once outbox with Message-IDs derived from
``enrolment:<id>:<step>``, each outcome recorded as the server answers; the step log and enrolment
positions are written after delivery. A crash in between leaves the enrolments on their email step:
the re-run plans the same emails, the outbox recognises their Message-IDs, nothing is sent twice, and
the re-run records the steps of those sent. The one message in flight at the crash stays ``unknown``
and its step due until ``leadscore nurture outcomes`` resolves it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from sqlalchemy import Engine

from flows import progress
from flows.database import engine_for
from flows.exclusions import excluded_now
from flows.locking import writing
from flows.mailing import send_messages, unsubscribe_secret
from flows.startup import enter_flow
from nurture.composing import compose_emails
from nurture.context import Context, load_context
from nurture.core import State, decide_entries, settle
from nurture.messages import Outgoing
from nurture.steps import plan_steps, sent_already
from nurture.zones import lead_zones
from store import audiences
from store import nurture as store
from store.db import refresh_statistics
from store.identity import alias_sent_steps
from store.reader import read_concurrently
from store.scores import finish_run, start_run
from store.settings import Settings

EMAILS_LISTED = 1_000  # emails listed one by one in a run's summary; every one is in the outbox table


@dataclass
class NurtureSummary:
    run_id: str
    as_of: datetime
    dry_run: bool
    exits: dict[str, int] = field(default_factory=dict)
    enrolled: dict[str, int] = field(default_factory=dict)  # holdouts included
    held_out: dict[str, int] = field(default_factory=dict)
    deliveries: dict[str, int] = field(default_factory=dict)
    deferred: dict[str, int] = field(default_factory=dict)
    deferred_until: dict[str, str] = field(default_factory=dict)  # why → when the first of them is due again
    completed: int = 0
    audience_steps: int = 0
    requests: dict[str, int] = field(default_factory=dict)
    emails: list[dict[str, Any]] = field(default_factory=list)  # the first EMAILS_LISTED
    emails_total: int = 0
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # why a run did less than one might expect
    suppressed_by_events: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "as_of": self.as_of.isoformat(),
            "dry_run": self.dry_run,
            "exits": self.exits,
            "enrolled": self.enrolled,
            "held_out": self.held_out,
            "deliveries": self.deliveries,
            "deferred": self.deferred,
            "deferred_until": self.deferred_until,
            "completed": self.completed,
            "audience_steps": self.audience_steps,
            "requests": self.requests,
            "suppressed_by_events": self.suppressed_by_events,
            "emails": self.emails,
            "emails_total": self.emails_total,
            "errors": self.errors,
            "notes": self.notes,
        }


def _counts(frame: pl.DataFrame, column: str) -> dict[str, int]:
    if frame.is_empty():
        return {}
    return {str(k): int(v) for k, v in frame.group_by(column).len().sort(column).iter_rows()}


def nurture_once(
    engine: Engine,
    ctx: Context,
    as_of: datetime,
    *,
    dry_run: bool = False,
    settings: Settings,
    run_id: str | None = None,
) -> NurtureSummary:
    """One nurture run at ``as_of``: read the state, decide (``nurture.core``), write, deliver, record.
    A dry run reads and decides the same but writes and sends nothing."""
    secret = unsubscribe_secret(settings)  # over SMTP without a real secret: refuse before anything is written
    summary = NurtureSummary(run_id=run_id or "dry-run", as_of=as_of, dry_run=dry_run)
    tracks = ctx.tracks
    lines = sorted({track.entry.product_line for track in ctx.spec.tracks.values()})
    # Independent reads, the longest (a scan of the events for suppressions) first.
    events, journeys, milestones, leads, enrolments, requests, excluded = read_concurrently(
        [
            partial(store.read_suppression_events, engine, as_of),
            partial(store.read_journeys, engine, lines),
            partial(store.read_milestones, engine),
            partial(store.read_consent, engine),
            partial(store.read_enrolments, engine),
            partial(store.read_open_requests, engine, as_of),
            partial(excluded_now, engine, ctx.exclusions),
        ]
    )
    state = State(
        journeys=journeys,
        milestones=milestones,
        leads=leads,
        enrolments=enrolments,
        requests=requests,
        events=events,
        excluded=excluded,
    )
    entries = decide_entries(tracks, state, as_of, soft_bounces=ctx.spec.soft_bounces)
    summary.suppressed_by_events = entries.suppressed.height
    summary.exits = _counts(entries.exits, "exit_reason")
    summary.enrolled = _counts(entries.new, "track")
    summary.held_out = _counts(entries.new.filter("holdout"), "track")
    summary.requests = _counts(entries.requests, "outcome")
    if dry_run:
        enrolments = entries.provisional(state.enrolments, as_of)
    else:
        with engine.begin() as conn:
            store.apply_suppressions(conn, list(entries.suppressed.iter_rows(named=True)))
            store.end_enrolments(
                conn,
                [{**row, "status": "exited"} for row in entries.exits.iter_rows(named=True)],
                at=as_of,
                run_id=summary.run_id,
            )
            store.insert_enrolments(
                conn, [_enrolment(row, as_of, summary.run_id) for row in entries.new.iter_rows(named=True)]
            )
            store.settle_requests(conn, list(entries.requests.iter_rows(named=True)), run_id=summary.run_id)
        refresh_statistics(engine)  # a first run has just filled the enrolments the next reads join
        enrolments = store.read_enrolments(engine)

    engagement = store.read_engagement(engine, as_of)
    per_days = ctx.spec.frequency_cap.per_days if ctx.spec.frequency_cap else 0
    sends = store.read_recent_sends(engine, as_of - timedelta(days=max(per_days, 1)), as_of)
    recipients = state.leads.join(lead_zones(state.leads, tracks.zone.key), on="lead_key", how="left")
    plan = plan_steps(tracks, enrolments, engagement, sends, as_of, recipients)
    summary.deferred = _counts(plan.deferred, "why")
    summary.deferred_until = {
        why: until.isoformat()
        for why, until in plan.deferred.group_by("why").agg(pl.col("until").min()).sort("why").iter_rows()
    }
    summary.notes = _why_nobody(ctx, journeys, summary)

    # A step already sent to a lead since merged into this one counts as sent: never the same step twice.
    repeats = sent_already(plan.emails, alias_sent_steps(engine))
    lead_ids: dict[int, str] = {}  # of the listed emails: people know leads by id, not by internal key
    composed = compose_emails(
        engine,
        ctx,
        plan.emails.join(repeats, on="id", how="anti"),
        journeys,
        summary.run_id,
        secret,
        summary.errors,
        lead_ids,
        listed=EMAILS_LISTED,
    )
    messages = _Listed(composed, EMAILS_LISTED)
    if dry_run:
        for _ in messages:
            pass
        summary.emails_total = messages.count
        summary.emails = [
            {"lead_id": lead_ids.get(listed["lead_key"]), **listed, "status": "would send"}
            for listed in messages.listed
        ]
        summary.audience_steps = plan.log.filter(pl.col("action").is_in(["audience", "leave_audience"])).height
        summary.completed = plan.updates.filter(pl.col("status") == "completed").height
        return summary

    def settled_so_far(done: int) -> None:
        progress.report("sending emails", done, plan.emails.height)

    results = send_messages(
        engine, iter(messages), settings, now=as_of, per_minute=ctx.spec.pacing.per_minute, settled=settled_so_far
    )
    summary.deliveries = dict(sorted(_tally(r.status for r in results).items()))
    summary.emails_total = len(results)
    summary.emails = [
        {"lead_id": lead_ids.get(listed["lead_key"]), **listed, "status": result.status}
        for listed, result in zip(messages.listed, results, strict=False)
    ]
    delivered = pl.DataFrame(
        [{"ref": r.ref, "message_id": r.message_id, "status": r.status} for r in results],
        schema={"ref": pl.Utf8, "message_id": pl.Utf8, "status": pl.Utf8},
    )
    delivered = pl.concat([delivered, _settled_as_duplicates(repeats)])
    done = settle(tracks, plan, delivered, engagement, as_of)
    summary.audience_steps = _audiences(engine, done.log, enrolments, run_id=summary.run_id, as_of=as_of)
    summary.completed = len(done.completed)
    with engine.begin() as conn:
        store.record_steps(
            conn, [{**row, "at": as_of, "run_id": summary.run_id} for row in done.log.iter_rows(named=True)]
        )
        store.move_enrolments(conn, list(done.updates.iter_rows(named=True)), run_id=summary.run_id)
        store.end_enrolments(
            conn,
            [{"id": i, "status": "completed", "exit_reason": "completed"} for i in done.completed],
            at=as_of,
            run_id=summary.run_id,
        )
    return summary


def _settled_as_duplicates(repeats: pl.DataFrame) -> pl.DataFrame:
    """Delivery results for the emails not sent because their step was sent already (see ``sent_already``)."""
    return repeats.select(
        pl.format("enrolment:{}:{}", "id", "step").alias("ref"),
        pl.lit(None, pl.Utf8).alias("message_id"),
        pl.lit("duplicate").alias("status"),
    )


def _enrolment(row: dict[str, Any], as_of: datetime, run_id: str) -> dict[str, Any]:
    """A new enrolment's row: at step 0 and due now, or (held out) ended at once, never emailed."""
    held_out = row.pop("holdout")
    return {
        **row,
        "enrolled_at": as_of,
        "current_step": 0,
        "next_step_at": None if held_out else as_of,
        "status": "exited" if held_out else "active",
        "exit_reason": "holdout" if held_out else None,
        "exited_at": as_of if held_out else None,
        "run_id": run_id,
    }


def _why_nobody(ctx: Context, journeys: pl.DataFrame, summary: NurtureSummary) -> list[str]:
    """Say why a run with tracks enrolled nobody when the reason is the store, not the leads."""
    if not ctx.spec.tracks or summary.enrolled:
        return []
    notes = []
    for line in sorted({track.entry.product_line for track in ctx.spec.tracks.values()}):
        scored = journeys.filter((pl.col("product_line") == line) & pl.col("score").is_not_null()).height
        if scored == 0:
            notes.append(f"nobody enrolled in {line} tracks: no {line} journey has a score yet (run leadscore score)")
    return notes


def _tally(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


class _Listed:
    """Passes messages through, keeping what the summary lists of the first ``limit`` (no bodies)."""

    def __init__(self, messages: Iterator[Outgoing], limit: int) -> None:
        self.messages = messages
        self.limit = limit
        self.count = 0
        self.listed: list[dict[str, Any]] = []

    def __iter__(self) -> Iterator[Outgoing]:
        for message in self.messages:
            if self.count < self.limit:
                self.listed.append(
                    {"lead_key": message.lead_key, "to": message.to, "ref": message.ref, "subject": message.subject}
                )
            self.count += 1
            yield message


def _audiences(
    engine: Engine,
    log: pl.DataFrame,
    enrolments: pl.DataFrame,
    *,
    run_id: str,
    as_of: datetime,
) -> int:
    """Audience steps add or remove the leads in the named audience (``store.audiences``, idempotent)."""
    steps = log.filter(pl.col("action").is_in(["audience", "leave_audience"])).join(
        enrolments.select(pl.col("id").alias("enrolment_id"), "lead_key"), on="enrolment_id"
    )
    if steps.is_empty():
        return 0
    for (action, audience), group in steps.group_by("action", "detail"):
        call = audiences.add_members if action == "audience" else audiences.remove_members
        call(engine, str(audience), sorted(group["lead_key"].to_list()), run_id=run_id, as_of=as_of)
    return steps.height


@flow(name="run-nurture", log_prints=True)
def run_nurture(
    portfolio_path: str | Path,
    database_url: str | None = None,
    as_of: datetime | None = None,
    dry_run: bool = False,
    outbox_dir: str | None = None,
) -> dict[str, Any]:
    """Exit, enrol and advance nurture tracks, send due emails, record it all (DESIGN §4, after scoring).

    ``database_url`` and ``outbox_dir`` default to the settings (``LEADSCORE_*``)."""
    settings = enter_flow(database_url, outbox_dir)
    logger = get_run_logger()
    summary = recorded_nurture(load_context(portfolio_path), settings, as_of or datetime.now(UTC), dry_run=dry_run)
    result = summary.as_dict()
    logger.info(
        "nurture: %d enrolled, %d emails, %d exits",
        sum(summary.enrolled.values()),
        summary.emails_total,
        sum(summary.exits.values()),
    )
    create_markdown_artifact(key="nurture-run", markdown=_markdown(summary), description="Nurture run summary")
    return result


def recorded_nurture(ctx: Context, settings: Settings, as_of: datetime, *, dry_run: bool = False) -> NurtureSummary:
    """``nurture_once`` as a run: under the run lock and recorded in ``runs`` (a dry run neither)."""
    engine = engine_for(settings.database_url)
    refresh_statistics(engine)
    with nullcontext(None) if dry_run else writing(engine, ctx.portfolio, settings.run_lock_wait) as scope:
        run_id = None if dry_run else start_run(engine, "nurture", as_of, scope)
        try:
            summary = nurture_once(engine, ctx, as_of, dry_run=dry_run, settings=settings, run_id=run_id)
        except BaseException as exc:
            if run_id is not None:
                finish_run(engine, run_id, "failed", {"error": repr(exc)})
            raise
        if run_id is not None:
            finish_run(engine, run_id, "completed", {k: v for k, v in summary.as_dict().items() if k != "emails"})
    return summary


def _markdown(summary: NurtureSummary) -> str:
    lines = [f"# Nurture run {summary.run_id} at {summary.as_of.isoformat()}", "", "| what | count |", "|---|---|"]
    for title, counts in (
        ("enrolled", summary.enrolled),
        ("exited", summary.exits),
        ("emails", summary.deliveries),
        ("deferred", summary.deferred),
    ):
        for key, value in counts.items():
            lines.append(f"| {title}: {key} | {value} |")
    lines += [f"| completed | {summary.completed} |", f"| audience steps | {summary.audience_steps} |", ""]
    if summary.errors:
        lines += ["## Problems", *(f"- {error}" for error in summary.errors)]
    return "\n".join(lines)
