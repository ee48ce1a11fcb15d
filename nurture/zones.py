"""Each lead's own time zone, so that a send window of 09:00–17:00 is the lead's office hours.

A lead's ``timezone`` attribute (an IANA name such as ``America/Chicago``) wins; else its ISO country's
first zone in the tz database's ``zone.tab`` (the country's most populous region first: ``US`` →
``America/New_York``, ``FR`` → ``Europe/Paris``); else the portfolio's zone.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from zoneinfo import available_timezones

import polars as pl


@cache
def country_zones() -> dict[str, str]:
    """ISO 3166 alpha-2 → the first zone ``zone.tab`` lists for it (``tzdata``'s copy)."""
    zones: dict[str, str] = {}
    for line in (files("tzdata.zoneinfo") / "zone.tab").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            country, _, zone = line.split("\t")[:3]
            zones.setdefault(country, zone)
    return zones


@cache
def _known() -> frozenset[str]:
    return frozenset(available_timezones())


def lead_zones(leads: pl.DataFrame, default: str) -> pl.DataFrame:
    """``lead_key, zone`` from ``leads``' ``timezone`` and ``country`` columns (either may be null)."""
    named = pl.col("timezone").str.strip_chars()
    by_country = pl.col("country").str.strip_chars().str.to_uppercase().replace_strict(country_zones(), default=None)
    return leads.select(
        "lead_key",
        pl.when(named.is_in(list(_known()))).then(named).otherwise(by_country).fill_null(default).alias("zone"),
    )
