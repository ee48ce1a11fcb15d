"""The nurture run: read → decide → render → deliver → record, in a few set-based steps.

(Not ``flows/nurture.py``: Prefect puts ``flows/`` on ``sys.path`` when it loads a deployment's
entrypoint, and a module of that name would then shadow the ``nurture`` package.)

``nurture_once`` is the plain function (tests and the CLI's dry run call it); ``run_nurture`` is the
Prefect flow around it with an artifact summarising enrolments, sends and exits.

Crash safety: exits and enrolments are committed first (a re-run sees them and does not repeat them);
emails go through the at-most-once outbox with Message-IDs derived from ``enrolment:<id>:<step>``; the
step log and enrolment positions are written after delivery. A crash in between leaves the enrolments
on their email step: the re-run plans the same emails, the outbox recognises their Message-IDs (sent,
or intent with unknown outcome), nothing is sent twice, and the re-run records the steps.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from sqlalchemy import Engine

from flows import progress
from flows.database import engine_for
from flows.startup import enter_flow
from nurture.delivery import deliver
from nurture.mail import Mailer, MailError, Outgoing, Sender, compose, lead_context
from nurture.spec import NurtureSpec, load_nurture
from nurture.tokens import check_secret
from nurture.tracks import Tracks, after_send, compile_tracks, decide_enrolments, decide_exits, plan_steps
from stages.portfolio import Portfolio, load_portfolio
from store import nurture as store
from store.db import refresh_statistics
from store.nurture import ENROLMENT_SCHEMA
from store.scores import finish_run, start_run
from store.settings import Settings

SETTLED = ("sent", "unknown", "duplicate", "bounced")  # the step counts as done; "failed" stays due
COMPOSE_BATCH = 2_000  # emails rendered at a time (recipients read, bodies held until delivered)
EMAILS_LISTED = 1_000  # emails listed one by one in a run's summary; every one is in the outbox table


@dataclass
class NurtureSummary:
    run_id: str
    as_of: datetime
    dry_run: bool
    exits: dict[str, int] = field(default_factory=dict)
    enrolled: dict[str, int] = field(default_factory=dict)
    deliveries: dict[str, int] = field(default_factory=dict)
    deferred: dict[str, int] = field(default_factory=dict)
    completed: int = 0
    audience_steps: int = 0
    requests: dict[str, int] = field(default_factory=dict)
    emails: list[dict[str, Any]] = field(default_factory=list)  # the first EMAILS_LISTED
    emails_total: int = 0
    errors: list[str] = field(default_factory=list)
    unsubscribed_by_events: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "as_of": self.as_of.isoformat(),
            "dry_run": self.dry_run,
            "exits": self.exits,
            "enrolled": self.enrolled,
            "deliveries": self.deliveries,
            "deferred": self.deferred,
            "completed": self.completed,
            "audience_steps": self.audience_steps,
            "requests": self.requests,
            "unsubscribed_by_events": self.unsubscribed_by_events,
            "emails": self.emails,
            "emails_total": self.emails_total,
            "errors": self.errors,
        }


@dataclass(frozen=True)
class Context:
    portfolio: Portfolio
    spec: NurtureSpec
    tracks: Tracks
    mailer: Mailer
    sender: Sender | None


def load_context(portfolio_path: Path | str) -> Context:
    portfolio = load_portfolio(portfolio_path)
    mailer = Mailer.for_portfolio(portfolio.path)
    spec = load_nurture(portfolio, mailer)
    sender = spec.sender.sender() if spec.sender else None
    return Context(portfolio, spec, compile_tracks(spec, portfolio.spec.timezone), mailer, sender)


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
    """One nurture run at ``as_of``. A dry run reads and decides but writes and sends nothing."""
    secret = unsubscribe_secret(settings)  # over SMTP without a real secret: refuse before anything is written
    summary = NurtureSummary(run_id=run_id or "dry-run", as_of=as_of, dry_run=dry_run)
    tracks = ctx.tracks
    if not dry_run:
        summary.unsubscribed_by_events = store.apply_unsubscribe_events(engine, as_of)
    lines = sorted({track.entry.product_line for track in ctx.spec.tracks.values()})
    journeys = store.read_journeys(engine, lines)
    milestones = store.read_milestones(engine)
    leads = store.read_consent(engine)
    if dry_run:  # what the real run would first do: ingested unsubscribes suppress at once
        leads = _with_unsubscribe_events(engine, leads, as_of)
    enrolments = store.read_enrolments(engine)
    requests = store.read_open_requests(engine, as_of)

    exits = decide_exits(tracks, enrolments, journeys, milestones, leads, requests)
    summary.exits = _counts(exits, "exit_reason")
    exited_ids = exits["id"].to_list()
    enrolments = enrolments.with_columns(
        pl.when(pl.col("id").is_in(exited_ids)).then(pl.lit("exited")).otherwise(pl.col("status")).alias("status"),
        pl.when(pl.col("id").is_in(exited_ids))
        .then(pl.lit(as_of).cast(ENROLMENT_SCHEMA["exited_at"]))
        .otherwise(pl.col("exited_at"))
        .alias("exited_at"),
    )
    # A lead that stopped one product line's email (preference centre) enters none of its tracks.
    open_lines = journeys.join(store.read_line_optouts(engine, as_of), on=["lead_key", "product_line"], how="anti")
    new, enrol_outcomes = decide_enrolments(tracks, enrolments, open_lines, milestones, leads, requests, as_of)
    summary.enrolled = _counts(new, "track")
    exit_requests = requests.filter(pl.col("action") == "exit")
    exit_outcomes = exit_requests.join(
        enrolments.filter(pl.col("id").is_in(exited_ids)).select(
            "track", "lead_key", pl.lit("exited").alias("outcome")
        ),
        on=["track", "lead_key"],
        how="left",
    ).select("id", pl.col("outcome").fill_null("not enrolled"))
    request_outcomes = pl.concat([enrol_outcomes, exit_outcomes])
    summary.requests = _counts(request_outcomes, "outcome")

    if dry_run:
        fresh = new.with_columns(
            (-pl.int_range(1, pl.len() + 1)).cast(pl.Int64).alias("id"),
            pl.lit(as_of).cast(ENROLMENT_SCHEMA["enrolled_at"]).alias("enrolled_at"),
            pl.lit(0).cast(pl.Int64).alias("current_step"),
            pl.lit(as_of).cast(ENROLMENT_SCHEMA["next_step_at"]).alias("next_step_at"),
            pl.lit("active").alias("status"),
            pl.lit(None).cast(ENROLMENT_SCHEMA["exited_at"]).alias("exited_at"),
        ).select(list(ENROLMENT_SCHEMA))
        enrolments = pl.concat([enrolments, fresh])
    else:
        with engine.begin() as conn:
            store.end_enrolments(
                conn,
                [{**row, "status": "exited"} for row in exits.iter_rows(named=True)],
                at=as_of,
                run_id=summary.run_id,
            )
            store.insert_enrolments(
                conn,
                [
                    {
                        **row,
                        "enrolled_at": as_of,
                        "current_step": 0,
                        "next_step_at": as_of,
                        "status": "active",
                        "run_id": summary.run_id,
                    }
                    for row in new.iter_rows(named=True)
                ],
            )
            store.settle_requests(conn, list(request_outcomes.iter_rows(named=True)), run_id=summary.run_id)
        refresh_statistics(engine)  # a first run has just filled the enrolments the next reads join
        enrolments = store.read_enrolments(engine)

    engagement = store.read_engagement(engine, as_of)
    per_days = ctx.spec.frequency_cap.per_days if ctx.spec.frequency_cap else 0
    sends = store.read_recent_sends(engine, as_of - timedelta(days=per_days), as_of)
    plan = plan_steps(tracks, enrolments, engagement, sends, as_of)
    summary.deferred = _counts(plan.deferred, "why")

    messages = _Listed(
        _compose(engine, ctx, plan.emails, journeys, as_of, summary.run_id, secret, summary.errors), EMAILS_LISTED
    )
    if dry_run:
        for _ in messages:
            pass
        summary.emails_total = messages.count
        summary.emails = [{**listed, "status": "would send"} for listed in messages.listed]
        summary.audience_steps = plan.log.filter(pl.col("action").is_in(["audience", "leave_audience"])).height
        summary.completed = plan.updates.filter(pl.col("status") == "completed").height
        return summary

    def settled_so_far(done: int) -> None:
        progress.report("sending emails", done, plan.emails.height)

    results = deliver(engine, iter(messages), settings, now=as_of, settled=settled_so_far)
    summary.deliveries = dict(sorted(_tally(r.status for r in results).items()))
    summary.emails_total = len(results)
    summary.emails = [
        {**listed, "status": result.status} for listed, result in zip(messages.listed, results, strict=False)
    ]
    settled = pl.DataFrame(
        [{"message_id": r.message_id, "ref": r.ref} for r in results if r.status in SETTLED],
        schema={"message_id": pl.Utf8, "ref": pl.Utf8},
    )
    sent = (
        plan.emails.with_columns(
            (pl.lit("enrolment:") + pl.col("id").cast(pl.Utf8) + pl.lit(":") + pl.col("step").cast(pl.Utf8)).alias(
                "ref"
            )
        )
        .join(settled, on="ref", how="inner")
        .drop("ref")
    )
    sent_log, sent_updates = after_send(tracks, sent, engagement, as_of)
    log = pl.concat([plan.log, sent_log])
    updates = pl.concat([plan.updates, sent_updates]).unique("id", keep="last", maintain_order=True)
    summary.audience_steps = _audiences(engine, log, enrolments, run_id=summary.run_id, as_of=as_of, summary=summary)
    completed = updates.filter(pl.col("status") == "completed")
    summary.completed = completed.height
    with engine.begin() as conn:
        store.record_steps(conn, [{**row, "at": as_of, "run_id": summary.run_id} for row in log.iter_rows(named=True)])
        store.move_enrolments(
            conn, list(updates.filter(pl.col("status") == "active").iter_rows(named=True)), run_id=summary.run_id
        )
        store.end_enrolments(
            conn,
            [{"id": i, "status": "completed", "exit_reason": "completed"} for i in completed["id"].to_list()],
            at=as_of,
            run_id=summary.run_id,
        )
    return summary


def _tally(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _with_unsubscribe_events(engine: Engine, leads: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
    first = store.read_unsubscribe_events(engine, as_of)
    return (
        leads.join(first, on="lead_key", how="left")
        .with_columns(pl.coalesce("unsubscribed_at", "first").alias("unsubscribed_at"))
        .drop("first")
    )


def unsubscribe_secret(settings: Settings) -> str:
    """The key that signs this run's unsubscribe links (``nurture.tokens``).

    Mail that leaves over SMTP needs ``LEADSCORE_UNSUBSCRIBE_SECRET`` of adequate length (``SecretError``
    otherwise): the service verifies its links with the same key. A file outbox without one (previews,
    the demo) signs with a throw-away key, so its links are well-formed but answered by no service.
    """
    configured = settings.unsubscribe_secret.get_secret_value() if settings.unsubscribe_secret else None
    if settings.smtp_host or configured:
        return check_secret(configured)
    return secrets.token_urlsafe(32)


def _compose(
    engine: Engine,
    ctx: Context,
    emails: pl.DataFrame,
    journeys: pl.DataFrame,
    as_of: datetime,
    run_id: str,
    secret: str,
    errors: list[str],
) -> Iterator[Outgoing]:
    """One message per planned email, personalised with the lead, its journey and its top score reasons.

    Messages are made batch by batch as delivery takes them: a first run that emails a million leads
    never holds more than a batch of bodies, recipients and breakdowns. A message that cannot be
    rendered is left out and its problem appended to ``errors`` (the enrolment stays due).
    """
    if emails.is_empty() or ctx.sender is None:
        return
    for batch in emails.iter_slices(COMPOSE_BATCH):
        leads, breakdowns = store.read_recipients(engine, batch["lead_key"].to_list(), batch["journey_id"].to_list())
        wanted = journeys.filter(pl.col("journey_id").is_in(batch["journey_id"].drop_nulls().implode()))
        state = {row["journey_id"]: row for row in wanted.iter_rows(named=True)}
        for row in batch.iter_rows(named=True):
            lead = leads[row["lead_key"]]
            track = ctx.spec.tracks[row["track"]]
            line = ctx.portfolio.product_lines[track.entry.product_line]
            journey = state.get(row["journey_id"]) or {}
            reasons = sorted(
                (entry for entry in breakdowns.get(row["journey_id"], []) if entry.get("points", 0) > 0),
                key=lambda entry: -entry["points"],
            )[:3]
            context = {
                "lead": lead_context(lead),
                "product_line": {"name": line.name, "title": line.spec.title or line.name},
                "journey": {
                    "stage": journey.get("stage"),
                    "score": journey.get("score"),
                    "band": journey.get("band"),
                    "qualification": journey.get("qualification"),
                },
                "reasons": reasons,
                "track": {"name": row["track"], "step": row["step"]},
            }
            try:
                yield compose(
                    ctx.mailer,
                    row["template"],
                    context,
                    kind="nurture",
                    ref=f"enrolment:{row['id']}:{row['step']}",
                    lead_key=row["lead_key"],
                    run_id=run_id,
                    to=lead["email"],
                    sender=ctx.sender,
                    date=as_of,
                    unsubscribe_secret=secret,
                    tracking_url=ctx.spec.tracking.base_url if ctx.spec.tracking else None,
                )
            except MailError as exc:
                errors.append(f"lead {lead['lead_id']}, track {row['track']} step {row['step']}: {exc}")


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
    summary: NurtureSummary,
) -> int:
    """Audience steps add or remove the leads in the named audience (``store.audiences``, idempotent)."""
    steps = log.filter(pl.col("action").is_in(["audience", "leave_audience"])).join(
        enrolments.select(pl.col("id").alias("enrolment_id"), "lead_key"), on="enrolment_id"
    )
    if steps.is_empty():
        return 0
    try:
        from store import audiences  # built on the audiences branch
    except ImportError:
        summary.errors.append("audience steps recorded, but store.audiences is not installed: members not updated")
        return steps.height
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
    as_of = as_of or datetime.now(UTC)
    ctx = load_context(portfolio_path)
    engine = engine_for(settings.database_url)
    refresh_statistics(engine)
    run_id = None if dry_run else start_run(engine, "nurture", as_of)
    try:
        summary = nurture_once(engine, ctx, as_of, dry_run=dry_run, settings=settings, run_id=run_id)
    except BaseException as exc:
        if run_id is not None:
            finish_run(engine, run_id, "failed", {"error": repr(exc)})
        raise
    result = summary.as_dict()
    if run_id is not None:
        finish_run(engine, run_id, "completed", {k: v for k, v in result.items() if k != "emails"})
    logger.info(
        "nurture: %d enrolled, %d emails, %d exits",
        sum(summary.enrolled.values()),
        summary.emails_total,
        sum(summary.exits.values()),
    )
    create_markdown_artifact(key="nurture-run", markdown=_markdown(summary), description="Nurture run summary")
    return result


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
