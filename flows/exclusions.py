"""Who is excluded now: the store's lead facts and journeys through ``nurture.exclusions.excluded``.

Both the nurture run and the audience exports call ``excluded_now``, so email and ads exclude alike.
"""

import polars as pl
from sqlalchemy import Engine

from nurture.exclusions import EXCLUDED_SCHEMA, Exclusions, excluded
from store import nurture as store


def excluded_now(engine: Engine, exclusions: Exclusions) -> pl.DataFrame:
    """``lead_key, excluded`` (the first exclusion each lead meets); empty without exclusions."""
    if not exclusions.rules:
        return pl.DataFrame(schema=EXCLUDED_SCHEMA)
    columns = [rule.attribute for rule in exclusions.rules.values() if rule.attribute]
    journeys = store.read_journeys(engine, exclusions.product_lines)
    return excluded(exclusions, store.read_lead_facts(engine, columns), journeys)
