"""The nurture report sections of issue #17: per-email statistics, and uplift against the holdout.

Pure renderers like those of ``nurture/report/sections.py``: per track, step and variant what the
emails did; per track the conversion of treated leads (and of each A/B variant) against the held-out
ones, with Wilson and Newcombe 95 % intervals (``nurture.experiments``).
"""

import math

import polars as pl

from nurture.experiments import uplift
from nurture.report.sections import ReportScope, Section

EMAIL_COUNTS = ("sent", "delivered", "opened", "clicked", "unsubscribed", "bounced", "complained")


def emails_section(scope: ReportScope, frame: pl.DataFrame) -> Section:
    """Per track, step and template: sent, delivered, human opens and clicks, unsubscribes, bounces, complaints."""
    rows = [
        {"track": row["track"], "step": row["step"], "template": row["template"]}
        | {name: _with_share(row[name], row["sent"]) if name != "sent" else row["sent"] for name in EMAIL_COUNTS}
        for row in frame.iter_rows(named=True)
    ]
    return Section(
        "nurture-emails",
        "Nurture emails",
        "Per track, step and template (an A/B variant is its template): emails sent, and how many of them "
        "were delivered, opened or clicked by a person (machine activity excluded), unsubscribed from, "
        "bounced or complained about, with the share of those sent.",
        ["track", "step", "template", *EMAIL_COUNTS],
        rows,
        [],
        None if rows else "No nurture email has been sent yet.",
    )


def uplift_section(scope: ReportScope, frame: pl.DataFrame) -> Section:
    """Per track: conversion of the holdout, the treated and each variant, and the uplift over the holdout."""
    measured = uplift(frame)
    rows = [
        {
            "track": row["track"],
            "arm": row["arm"],
            "leads": row["enrolled"],
            "converted": row["converted"],
            "conversion (95 % CI)": _interval(row["rate"], row["rate_lo"], row["rate_hi"]),
            "uplift over holdout (95 % CI)": _interval(row["uplift"], row["uplift_lo"], row["uplift_hi"], signed=True),
        }
        for row in measured.iter_rows(named=True)
    ]
    return Section(
        "nurture-uplift",
        "Nurture uplift",
        "Per track: the share of leads whose journey reached a qualification (MQL…) after they entered the "
        "track, for the held-out leads (never emailed), the treated ones and each A/B variant, with Wilson "
        "intervals; the uplift is the treated rate minus the holdout rate, with Newcombe's interval. An "
        "interval that spans 0 has not shown an effect yet.",
        ["track", "arm", "leads", "converted", "conversion (95 % CI)", "uplift over holdout (95 % CI)"],
        rows,
        [],
        None if rows else "No lead has been enrolled in a nurture track yet.",
    )


def _with_share(count: int, sent: int) -> str:
    return f"{count:,} ({count / sent:.1%})" if sent else f"{count:,}"


def _interval(value: float | None, lo: float | None, hi: float | None, *, signed: bool = False) -> str:
    if value is None or lo is None or hi is None or math.isnan(value):
        return "n/a"
    sign = "+" if signed else ""
    return f"{value:{sign}.1%} ({lo:{sign}.1%} to {hi:{sign}.1%})"
