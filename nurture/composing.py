"""The nurture emails as a run composes them: personalised batch by batch as delivery takes them, and one
lead's email of one step composed the same way for a preview or a test-send (the CLI's ``nurture preview``
and the console's nurture page share it)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from sqlalchemy import Engine

from nurture.context import Context
from nurture.delivery import stamp
from nurture.mail import MailError, lead_context
from nurture.messages import Outgoing, compose
from nurture.signing import signer_for
from nurture.steps import EMAIL_SCHEMA
from nurture.transports import transport_for
from nurture.variants import with_variants
from store import nurture as store
from store.settings import Settings

COMPOSE_BATCH = 2_000  # emails rendered at a time (recipients read, bodies held until delivered)


def compose_emails(
    engine: Engine,
    ctx: Context,
    emails: pl.DataFrame,
    journeys: pl.DataFrame,
    run_id: str,
    secret: str,
    errors: list[str],
    lead_ids: dict[int, str],
    *,
    listed: int = 0,
    to: str | None = None,
) -> Iterator[Outgoing]:
    """One message per planned email, personalised with the lead, its journey and its top score reasons.

    Messages are made batch by batch as delivery takes them: a first run that emails a million leads
    never holds more than a batch of bodies, recipients and breakdowns. A message that cannot be
    rendered is left out and its problem appended to ``errors`` (the enrolment stays due). ``lead_ids``
    gets the lead ids of the first ``listed`` recipients (a run's summary names them).
    """
    if emails.is_empty() or ctx.sender is None:
        return
    for batch in emails.iter_slices(COMPOSE_BATCH):
        leads, breakdowns = store.read_recipients(engine, batch["lead_key"].to_list(), batch["journey_id"].to_list())
        wanted = journeys.filter(pl.col("journey_id").is_in(batch["journey_id"].drop_nulls().implode()))
        state = {row["journey_id"]: row for row in wanted.iter_rows(named=True)}
        for row in batch.iter_rows(named=True):
            lead = leads[row["lead_key"]]
            if len(lead_ids) < listed:
                lead_ids[row["lead_key"]] = lead["lead_id"]
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
                    to=to or lead["email"],
                    sender=ctx.sender,
                    unsubscribe_secret=secret,
                    tracking_url=ctx.spec.tracking.base_url if ctx.spec.tracking else None,
                )
            except MailError as exc:
                errors.append(f"lead {lead['lead_id']}, track {row['track']} step {row['step']}: {exc}")


class PreviewError(ValueError):
    """A preview that cannot be made: unknown lead, track or step, or a step that is not an email."""


def preview(
    engine: Engine, ctx: Context, lead_id: str, track: str, step: int, secret: str, *, to: str | None = None
) -> Outgoing:
    """The exact email ``lead_id`` gets at ``step`` of ``track`` (its enrolment's variant, when it has
    one), composed as a run would with its links signed by ``secret``, addressed to ``to`` when given (a
    test-send); nothing is recorded."""
    spec = ctx.spec.tracks.get(track)
    if spec is None:
        raise PreviewError(f"unknown track {track!r}; tracks: {sorted(ctx.spec.tracks)}")
    if not 0 <= step < len(spec.steps) or spec.steps[step].kind != "email":
        emails = [index for index, s in enumerate(spec.steps) if s.kind == "email"]
        raise PreviewError(f"step {step} of {track} is not an email step; its email steps: {emails}")
    keys = store.lead_keys_by(engine, "lead_id", [lead_id])
    if lead_id not in keys:
        raise PreviewError(f"unknown lead {lead_id!r}")
    key = keys[lead_id]
    line = spec.entry.product_line
    journey = store.read_journeys(engine, [line]).filter(pl.col("lead_key") == key)
    if journey.is_empty():
        raise PreviewError(f"lead {lead_id} has no {line} journey")
    enrolled = store.read_enrolments(engine).filter((pl.col("lead_key") == key) & (pl.col("track") == track))
    enrolment_id = int(enrolled["id"].max()) if not enrolled.is_empty() else 0  # type: ignore[arg-type]
    template = spec.steps[step].templates[0]
    row = {"id": enrolment_id, "lead_key": key, "journey_id": journey["journey_id"][0], "track": track, "step": step}
    email = with_variants(ctx.tracks.variants, pl.DataFrame([{**row, "template": template}], schema=EMAIL_SCHEMA))
    errors: list[str] = []
    composed = list(compose_emails(engine, ctx, email, journey, "preview", secret, errors, {}, to=to))
    if not composed:
        raise PreviewError("; ".join(errors) or "the portfolio declares no nurture sender")
    return composed[0]


def send_preview(message: Outgoing, settings: Settings, to: str) -> bool:
    """Send a preview to ``to`` through the configured transport, DKIM-signed like a run's mail; without a
    mail server it goes to the outbox folder's ``test-sends/``. Nothing is recorded as a send. Returns whether
    a server took it."""
    data = stamp(message.as_bytes(), datetime.now(UTC), signer_for(settings))
    transport = transport_for(settings)
    try:
        transport.send(message.envelope_from or settings.mail_from, to, data)
    finally:
        transport.close()
    if not transport.remote:
        folder = Path(settings.outbox_dir) / "test-sends"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{message.message_id}.eml").write_bytes(data)
    return transport.remote
