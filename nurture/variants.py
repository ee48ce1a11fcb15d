"""A/B variants: which template of a ``variants`` step each enrolment gets, drawn by weight.

The draw is a hash of the enrolment and step, so a re-run (or a preview) picks the same template.
``variants``: ``track, step, template, lo, hi`` (each template's slice of [0, 1), from
``nurture.tracks.compile_tracks``).
"""

import polars as pl


def draw(keys: list[str], seed: int) -> pl.Expr:
    """A uniform number in [0, 1) fixed by ``keys`` (the same enrolment and step always draw the same)."""
    return (pl.struct(keys).hash(seed) % 1_000_003).cast(pl.Float64) / 1_000_003


def with_variants(variants: pl.DataFrame, emails: pl.DataFrame) -> pl.DataFrame:
    """Emails of A/B steps get the template their draw falls in; the others keep theirs."""
    if variants.is_empty() or emails.is_empty():
        return emails
    drawn = emails.with_columns(draw(["id", "step"], 17).alias("_u"))
    picked = (
        drawn.join(variants.rename({"template": "_variant"}), on=["track", "step"], how="inner")
        .filter((pl.col("_u") >= pl.col("lo")) & (pl.col("_u") < pl.col("hi")))
        .select("id", "step", "_variant")
    )
    return (
        drawn.join(picked, on=["id", "step"], how="left", maintain_order="left")
        .with_columns(pl.coalesce("_variant", "template").alias("template"))
        .drop("_u", "_variant")
    )
