"""The demo's world, day by day: what arrives each simulated day, and how leads answer what leadscore does.

``generate`` draws a whole period at once (leads, their event log, each (lead, line)'s true propensity).
``World`` cuts it into days: a lead arrives on the day of its first event, an event on the day it
happened. On top of that log, ``respond`` is the behaviour model of the people and of the sales team:

- a nurture email is opened, and clicked, more often by a lead with a high propensity, within a day;
  a click brings the lead back to the pricing and product pages in the next day or two (a return
  that the next scoring run sees);
- a journey past discovery keeps evaluating: on any day it may book a meeting, request a demo, read
  the pricing or security pages, reply to sales (the late-funnel signals the reset stages score),
  more often when its propensity is high or it was nurtured; so the likely buyers climb to the
  opportunity stage and the others stall;
- sales works the opportunities: a journey in the opportunity stage closes after a few days, won
  more often when its score is high, its propensity high and it was nurtured; journeys that went
  quiet early are closed as lost.

Everything is drawn from a generator seeded by (seed, day), so a run is reproducible day by day.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from examples import vocabulary

OPPORTUNITY = "purchase"  # the demo portfolio's stage where sales works the deal
WON, LOST = "customer", "lost"
# What a journey does on a day it engages, per stage past discovery: (event type, properties, weight).
LATE_SIGNALS: dict[str, list[tuple[str, str, int]]] = {
    "evaluation": [
        ("page_view", '"url":"/pricing","duration_s":120', 4),
        ("demo_request", "", 1),
        ("meeting_booked", "", 2),
        ("email_reply", "", 2),
        ("form_submit", '"form":"contact-sales"', 1),
        ("page_view", '"url":"/customers/acme-retail","duration_s":90', 1),
        ("page_view", '"url":"/docs/getting-started","duration_s":200', 2),
        ("trial_start", "", 1),
        ("chat_started", "", 1),
    ],
    OPPORTUNITY: [
        ("meeting_booked", "", 2),
        ("form_submit", '"form":"quote-request"', 1),
        ("page_view", '"url":"/pricing","duration_s":150', 3),
        ("page_view", '"url":"/security","duration_s":240', 1),
        ("email_reply", "", 2),
    ],
}
UPDATE_COLUMNS = ("lead_id", "product_line", "stage", "changed_at", "source")
EVENT_SCHEMA = dict.fromkeys(("event_id", "lead_id", "type", "occurred_at", "product_line", "properties"), pl.Utf8)


@dataclass(frozen=True)
class World:
    """The generated period as frames: leads with their arrival time, events with theirs, and the truth."""

    leads: pl.DataFrame  # the CSV's text columns, then _arrives (UTC)
    events: pl.DataFrame  # the CSV's text columns, then _at (UTC)
    propensity: pl.DataFrame  # lead_id, product_line, propensity

    @classmethod
    def read(cls, folder: Path, start: datetime) -> "World":
        """Read ``generate``'s files; rows without a readable time or lead (the invalid ones) arrive at ``start``."""
        events = pl.read_csv(folder / "events.csv", infer_schema=False)
        at = pl.col("occurred_at").str.to_datetime("%Y-%m-%dT%H:%M:%S%.3fZ", time_zone="UTC", strict=False)
        events = events.with_columns(_at=at.fill_null(start))
        first = events.group_by("lead_id").agg(_arrives=pl.col("_at").min())
        leads = pl.read_csv(folder / "leads.csv", infer_schema=False).join(
            first, on="lead_id", how="left", maintain_order="left"
        )
        leads = leads.with_columns(pl.col("_arrives").fill_null(start))
        truth = pl.read_csv(folder / "outcomes.csv", infer_schema=False).select(
            "lead_id", "product_line", pl.col("propensity").cast(pl.Float64)
        )
        return cls(leads, events, truth)

    def arriving(self, since: datetime | None, until: datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The leads and events of ``(since, until]`` (everything up to ``until`` when ``since`` is None),
        as the CSV columns."""

        def window(frame: pl.DataFrame, column: str) -> pl.DataFrame:
            inside = pl.col(column) <= until
            if since is not None:
                inside &= pl.col(column) > since
            return frame.filter(inside).drop(column)

        return window(self.leads, "_arrives"), window(self.events, "_at").sort("occurred_at", maintain_order=True)


@dataclass(frozen=True)
class Responses:
    """What the people and the sales team did between two runs, as rows for ingestion."""

    events: pl.DataFrame  # the events.csv columns
    stage_updates: pl.DataFrame  # lead_id, product_line, stage, changed_at, source


def respond(
    world: World,
    sends: pl.DataFrame,
    journeys: pl.DataFrame,
    nurtured: set[str],
    *,
    since: datetime,
    until: datetime,
    rng: np.random.Generator,
) -> Responses:
    """The answers, dated in ``(since, until]``, to the nurture emails ``sends`` (``lead_id, message_id``,
    sent at ``since``) and to the journeys' positions ``journeys`` (``lead_id, product_line, stage, score,
    stage_entered_at``); ``nurtured`` names the leads that were ever sent a nurture email."""
    best = world.propensity.sort("propensity", descending=True).unique("lead_id", keep="first", maintain_order=True)
    answers = _email_answers(sends.join(best, on="lead_id", how="left"), since, until, rng)
    positions = journeys.join(world.propensity, on=["lead_id", "product_line"], how="left")
    engaged = _late_funnel(positions, nurtured, since, until, rng)
    updates = _sales(positions, nurtured, since, until, rng)
    return Responses(pl.concat([answers, engaged]).sort("occurred_at", maintain_order=True), updates)


def _at(since: datetime, until: datetime, fraction: np.ndarray) -> list[str]:
    span = (until - since).total_seconds()
    return [(since + timedelta(seconds=float(f) * span)).strftime("%Y-%m-%dT%H:%M:%S.000Z") for f in fraction]


def _email_answers(sends: pl.DataFrame, since: datetime, until: datetime, rng: np.random.Generator) -> pl.DataFrame:
    """Human opens and clicks of the nurture emails (keyed by their Message-ID), then the visits clicks bring."""
    q = sends["propensity"].fill_null(0.0).to_numpy()
    k = sends.height
    opened = rng.random(k) < np.minimum(0.85, 0.3 + 4 * q)
    clicked = opened & (rng.random(k) < np.minimum(0.8, 0.25 + 4 * q))
    open_at = rng.uniform(0.02, 0.5, k)  # within the first half of the day after the send
    click_at = open_at + rng.uniform(0.001, 0.05, k)
    agent = np.array(vocabulary.HUMAN_AGENTS, dtype=object)[rng.integers(0, len(vocabulary.HUMAN_AGENTS), k)]
    rows: list[dict[str, str | None]] = []
    for i, send in enumerate(sends.iter_rows(named=True)):
        mail = f'"message_id":"{send["message_id"]}","user_agent":"{agent[i]}"'
        line = send["product_line"]
        if opened[i]:
            rows.append(_event(send, "email_open", _at(since, until, open_at[i : i + 1])[0], line, mail))
        if clicked[i]:
            (when,) = _at(since, until, click_at[i : i + 1])
            rows.append(_event(send, "email_click", when, line, mail + ',"url":"/pricing"'))
            visits = _at(since, until, np.sort(click_at[i] + rng.uniform(0.01, 0.45, 3)))
            pages = ("/pricing", f"/product/{line}", "/pricing/compare") if line else ("/pricing",) * 3
            for when, url in zip(visits, pages, strict=True):
                rows.append(
                    _event(send, "page_view", when, line, f'"url":"{url}","duration_s":{int(rng.integers(40, 400))}')
                )
    return pl.DataFrame(rows, schema=EVENT_SCHEMA).sort("occurred_at", maintain_order=True)


def _event(send: dict, kind: str, when: str, line: str | None, properties: str) -> dict[str, str | None]:
    # One id per (message, what, when): a re-run of the same day writes the same ids (ingestion ignores them).
    key = send["message_id"].strip("<>").split("@")[0]
    return {
        "event_id": f"sim-{key}-{kind}-{when}",
        "lead_id": send["lead_id"],
        "type": kind,
        "occurred_at": when,
        "product_line": line,
        "properties": "{" + properties + "}",
    }


def _late_funnel(
    journeys: pl.DataFrame, nurtured: set[str], since: datetime, until: datetime, rng: np.random.Generator
) -> pl.DataFrame:
    """One late-funnel signal today for some journeys past discovery: likelier with a high propensity or
    after nurture (the effect the demo's report should show), tagged with the journey's line."""
    stage = journeys["stage"].to_numpy()
    q = journeys["propensity"].fill_null(0.0).to_numpy()
    nurture = journeys["lead_id"].is_in(list(nurtured)).to_numpy()
    k = journeys.height
    engages = np.isin(stage, list(LATE_SIGNALS)) & (rng.random(k) < np.clip(0.03 + 0.6 * q + 0.05 * nurture, 0, 0.6))
    draws, when = rng.random(k), _at(since, until, rng.uniform(0.05, 0.95, k))
    rows: list[dict[str, str | None]] = []
    for i in np.flatnonzero(engages):
        signals = LATE_SIGNALS[stage[i]]
        weights = np.cumsum([w for *_, w in signals]) / sum(w for *_, w in signals)
        kind, properties, _ = signals[int(np.searchsorted(weights, draws[i]))]
        lead, line = journeys["lead_id"][int(i)], journeys["product_line"][int(i)]
        rows.append(
            {
                "event_id": f"sim-{lead}-{line}-{kind}-{when[i]}",
                "lead_id": lead,
                "type": kind,
                "occurred_at": when[i],
                "product_line": line,
                "properties": "{" + properties + "}",
            }
        )
    return pl.DataFrame(rows, schema=EVENT_SCHEMA)


def _sales(
    journeys: pl.DataFrame, nurtured: set[str], since: datetime, until: datetime, rng: np.random.Generator
) -> pl.DataFrame:
    """Deals closed today: opportunities after a few days (won with odds rising with score, propensity and
    nurture), and early journeys that went quiet for three weeks (lost)."""
    days_in = ((pl.lit(until) - pl.col("stage_entered_at")).dt.total_seconds() / 86_400).fill_null(0.0)
    frame = journeys.with_columns(days_in=days_in, propensity=pl.col("propensity").fill_null(0.0))
    k = frame.height
    stage, score = frame["stage"].to_numpy(), frame["score"].fill_null(0.0).to_numpy()
    days, q = frame["days_in"].to_numpy(), frame["propensity"].to_numpy()
    nurture = frame["lead_id"].is_in(list(nurtured)).to_numpy()
    working = (stage == OPPORTUNITY) & (days >= 3)
    closes = working & (rng.random(k) < 0.15)
    win = rng.random(k) < np.clip(0.05 + 0.4 * score / 100 + 1.5 * q + 0.1 * nurture, 0, 0.8)
    quiet = np.isin(stage, ("discovery", "evaluation")) & (days >= 21) & (score < 10) & (rng.random(k) < 0.02)
    closed = closes | quiet
    outcome = np.where(closes & win, WON, LOST)
    when = _at(since, until, rng.uniform(0.1, 0.9, k))
    rows = frame.select("lead_id", "product_line").with_columns(
        stage=pl.Series(outcome, dtype=pl.Utf8), changed_at=pl.Series(when, dtype=pl.Utf8), source=pl.lit("crm")
    )
    return rows.filter(pl.Series(closed)).select(UPDATE_COLUMNS)
