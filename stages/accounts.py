"""Account scoring: plain Polars over whole frames, no per-account Python.

``membership`` says which account each lead belongs to; ``score_accounts`` rolls the members'
journeys up into the account's figures, adds fit points on its attributes (the fit engine of
``models``), and gives the score, band, qualifications and breakdown; ``account_firings`` runs the
account model's triggers through the same ``stages.triggers.fire`` as lead triggers (fire once per
crossing, re-arm when the condition stops holding).

Frames:

- leads: ``lead_key, email, account_id`` and the seniority attribute as a column or in ``attributes`` (JSON);
- accounts: ``account_id, name, domain, industry, employees, region, owner, attributes`` (JSON text);
- scores: ``lead_key, score`` — the members' current scores in the product line;
- engaged: ``lead_key`` — members with a qualifying event in the window.
"""

from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

from models.bands import band_expr
from models.fit import fit_points
from models.frames import extract
from models.spec import Bands, PointsModel, Scale
from stages.account_spec import AccountModelSpec
from stages.spec import Crossing, TriggerSpec, When
from stages.triggers import fire
from store.shapes import BREAKDOWN_TYPE, UTC_US

MEMBER_SCHEMA: dict[str, pl.DataType] = {"lead_key": pl.Int64(), "account_id": pl.Utf8(), "source": pl.Utf8()}
ACCOUNT_RESULT_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.Utf8(),
    "members": pl.Int64(),
    "max_score": pl.Float64(),
    "sum_score": pl.Float64(),
    "engaged_members": pl.Int64(),
    "seniorities": pl.Int64(),
    "score": pl.Float64(),
    "band": pl.Utf8(),
    "qualifications": pl.List(pl.Utf8()),
    "breakdown": BREAKDOWN_TYPE,
}
ACCOUNT_FIRING_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.Utf8(),
    "trigger": pl.Utf8(),
    "direction": pl.Utf8(),
    "action_index": pl.Int32(),
    "action": pl.Utf8(),
    "params": pl.Utf8(),
    "score": pl.Float64(),
    "score_before": pl.Float64(),
    "band": pl.Utf8(),
    "armed_at": pl.Int64(),
}
ACCOUNT_ARM_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.Utf8(),
    "trigger": pl.Utf8(),
    "armed": pl.Boolean(),
    "as_of": UTC_US,
}


def membership(leads: pl.DataFrame, accounts: pl.DataFrame, free_mail: frozenset[str]) -> pl.DataFrame:
    """``lead_key, account_id, source``: the lead's ``account_id`` (source ``account_id``) or else its email
    domain outside ``free_mail`` (source ``domain``): the account whose ``domain`` it is, or an account
    named after the domain itself. Leads without either belong to no account (no row)."""
    explicit = pl.col("account_id").str.strip_chars()
    domain = pl.col("email").str.to_lowercase().str.strip_chars().str.split("@").list.get(1, null_on_oob=True)
    frame = leads.select(
        pl.col("lead_key").cast(pl.Int64),
        pl.when(explicit != "").then(explicit).alias("explicit"),
        pl.when(domain.is_in(sorted(free_mail)).not_()).then(domain).alias("domain"),
    )
    by_domain = (
        accounts.filter(pl.col("domain").is_not_null())
        .sort("account_id")
        .unique("domain", keep="first", maintain_order=True)
        .select("domain", pl.col("account_id").alias("known"))
    )
    frame = frame.join(by_domain, on="domain", how="left")
    return (
        frame.select(
            "lead_key",
            pl.coalesce("explicit", "known", "domain").alias("account_id"),
            pl.when(pl.col("explicit").is_not_null())
            .then(pl.lit("account_id"))
            .otherwise(pl.lit("domain"))
            .alias("source"),
        )
        .filter(pl.col("account_id").is_not_null())
        .cast(MEMBER_SCHEMA)  # type: ignore[arg-type]
        .sort("lead_key")
    )


def member_figures(
    model: AccountModelSpec, members: pl.DataFrame, leads: pl.DataFrame, scores: pl.DataFrame, engaged: pl.DataFrame
) -> pl.DataFrame:
    """Each member with its ``score`` (null: no journey in the line), ``engaged`` flag and ``seniority``."""
    level = pl.lit(None, pl.Utf8)
    if model.seniority is not None:
        level = model.seniority_expr(extract(leads, model.seniority.attribute, "attributes"))
    return (
        members.join(
            leads.select(pl.col("lead_key").cast(pl.Int64), level.alias("seniority")), on="lead_key", how="left"
        )
        .join(
            scores.select(pl.col("lead_key").cast(pl.Int64), pl.col("score").cast(pl.Float64)),
            on="lead_key",
            how="left",
        )
        .join(
            engaged.select(pl.col("lead_key").cast(pl.Int64), pl.lit(True).alias("engaged")), on="lead_key", how="left"
        )
        .with_columns(pl.col("engaged").fill_null(False))
    )


def score_accounts(
    model: AccountModelSpec,
    figures: pl.DataFrame,
    accounts: pl.DataFrame,
    *,
    scale: Scale,
    bands: Bands,
) -> pl.DataFrame:
    """``ACCOUNT_RESULT_SCHEMA``: every account of the accounts file or with members, sorted by id.

    The score is fit points plus roll-up points, clamped to the scale; the breakdown lists each rule
    that gave points (and the clamp, as ``scale: maximum``/``minimum``), so its entries sum to the score."""
    engaged_level = pl.when(pl.col("engaged")).then(pl.col("seniority"))
    rolled = figures.group_by("account_id").agg(
        pl.len().cast(pl.Int64).alias("members"),
        pl.col("score").max().alias("max_score"),
        pl.col("score").sum().alias("sum_score"),
        pl.col("engaged").sum().cast(pl.Int64).alias("engaged_members"),
        engaged_level.drop_nulls().n_unique().cast(pl.Int64).alias("seniorities"),
        engaged_level.drop_nulls().unique().alias("_levels"),
    )
    ids = pl.concat([accounts.select("account_id"), rolled.select("account_id")]).unique().sort("account_id")
    frame = ids.join(rolled, on="account_id", how="left").with_columns(
        pl.col("members", "engaged_members", "seniorities").fill_null(0),
        pl.col("max_score").fill_null(0.0),
        pl.col("sum_score").fill_null(0.0),
        pl.col("_levels").fill_null(pl.lit([], pl.List(pl.Utf8))),
    )
    frame = frame.with_row_index("_key").with_columns(pl.col("_key").cast(pl.Int64))
    entries: list[tuple[str, str]] = []  # (column, rule name)
    if model.fit:
        keyed = frame.select(pl.col("_key").alias("lead_key"), "account_id").join(accounts, on="account_id", how="left")
        columns, fit_frame = fit_points(PointsModel(fit=model.fit), keyed.select("lead_key"), keyed.drop("account_id"))
        assert fit_frame is not None
        frame = frame.join(fit_frame.rename({"lead_key": "_key"}), on="_key", how="left")
        entries += [(column.key, column.rule) for column in columns]
    for index, rule in enumerate(model.rollups):
        value = pl.col(rule.metric).cast(pl.Float64)
        if rule.at_least is not None:
            points = pl.when(value >= rule.at_least).then(pl.lit(float(rule.points))).otherwise(0.0)
        else:
            points = value * rule.points
            if rule.max is not None:
                points = pl.min_horizontal(points, pl.lit(float(rule.max)))
        frame = frame.with_columns(points.alias(f"rollup:{index}"))
        entries.append((f"rollup:{index}", rule.name))
    raw = pl.sum_horizontal([pl.col(column) for column, _ in entries]) if entries else pl.lit(0.0)
    frame = frame.with_columns(raw.alias("_raw")).with_columns(pl.col("_raw").clip(scale.min, scale.max).alias("score"))
    clamp = (pl.col("score") - pl.col("_raw")).alias("_clamp")
    parts = [
        pl.struct(pl.lit(name).alias("rule"), pl.col(column).cast(pl.Float64).alias("points"))
        for column, name in entries
    ]
    parts.append(
        pl.struct(pl.lit(f"scale: [{scale.min:g}, {scale.max:g}]").alias("rule"), pl.col("_clamp").alias("points"))
    )
    breakdown = pl.concat_list(parts).list.eval(pl.element().filter(pl.element().struct.field("points") != 0))
    frame = frame.with_columns(clamp).with_columns(
        breakdown.alias("breakdown"),
        band_expr(bands, pl.col("score")).alias("band"),
        _qualifications(model).alias("qualifications"),
    )
    return frame.select(list(ACCOUNT_RESULT_SCHEMA)).cast(ACCOUNT_RESULT_SCHEMA)  # type: ignore[arg-type]


def _qualifications(model: AccountModelSpec) -> pl.Expr:
    """The names of the qualifications each account holds, in the model's order."""
    held = []
    for name, spec in model.qualifications.items():
        tests = []
        if spec.min_score is not None:
            tests.append(pl.col("score") >= spec.min_score)
        if spec.engaged_members is not None:
            tests.append(pl.col("engaged_members") >= spec.engaged_members)
        if spec.seniorities_any is not None:
            tests.append(pl.col("_levels").list.eval(pl.element().is_in(spec.seniorities_any)).list.any())
        held.append(pl.when(pl.all_horizontal(tests)).then(pl.lit(name)))
    if not held:
        return pl.lit([], pl.List(pl.Utf8))
    return pl.concat_list(held).list.drop_nulls()


@dataclass(frozen=True)
class _Scope:
    """One account trigger as ``fire`` watches it (``stages.triggers.Watched``)."""

    triggers: list[TriggerSpec]
    qualifications: list[tuple[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class AccountFired:
    firings: pl.DataFrame  # ACCOUNT_FIRING_SCHEMA
    armed: pl.DataFrame  # ACCOUNT_ARM_SCHEMA


def account_firings(
    model: AccountModelSpec, before: pl.DataFrame, after: pl.DataFrame, armed: pl.DataFrame, *, as_of: datetime
) -> AccountFired:
    """The account triggers that fire between ``before`` (``account_id, score, qualifications`` of the
    last snapshots; absent: a new account) and ``after`` (``score_accounts``), with the arm rows to store.

    Each trigger goes through ``stages.triggers.fire``: a score trigger watches the score, a
    ``qualification_reached`` trigger watches a 0/1 figure crossing up to 1 (so it re-arms when the
    qualification stops holding, unlike a lead's sticky milestone)."""
    ids = pl.concat([after.select("account_id"), before.select("account_id")]).unique().sort("account_id")
    ids = ids.with_row_index("journey_id").with_columns(pl.col("journey_id").cast(pl.Int64))
    firings, arms = [], []
    for trigger in model.triggers:
        reached = trigger.when.qualification_reached
        watched = pl.col("score").cast(pl.Float64)
        scope_trigger = trigger
        if reached is not None:
            watched = pl.col("qualifications").list.contains(reached).cast(pl.Float64)
            scope_trigger = trigger.model_copy(update={"when": When(score=Crossing(crosses_up=1.0))})
        previous = before.join(ids, on="account_id").select(
            "journey_id", pl.lit("account").alias("stage"), watched.alias("score")
        )
        current = after.join(ids, on="account_id").select(
            "journey_id",
            pl.col("journey_id").alias("lead_key"),
            pl.lit("account").alias("stage"),
            watched.alias("score"),
            "band",
        )
        stored = armed.filter(pl.col("trigger") == trigger.name).join(ids, on="account_id").drop("account_id")
        fired = fire(_Scope([scope_trigger]), previous, current, stored, as_of=as_of)
        names = ids.rename({"journey_id": "jid"})
        firings.append(
            fired.firings.join(names, left_on="journey_id", right_on="jid")
            .join(after.select("account_id", pl.col("score").alias("_score")), on="account_id", how="left")
            .join(before.select("account_id", pl.col("score").alias("_before")), on="account_id", how="left")
            .select(
                "account_id",
                "trigger",
                (pl.lit("reached") if reached else pl.col("direction")).alias("direction"),
                "action_index",
                "action",
                "params",
                pl.col("_score").alias("score"),
                pl.col("_before").alias("score_before"),
                "band",
                "armed_at",
            )
        )
        arms.append(fired.armed.join(names, left_on="journey_id", right_on="jid").select(list(ACCOUNT_ARM_SCHEMA)))
    empty = AccountFired(pl.DataFrame(schema=ACCOUNT_FIRING_SCHEMA), pl.DataFrame(schema=ACCOUNT_ARM_SCHEMA))
    if not firings:
        return empty
    return AccountFired(
        pl.concat(firings).cast(ACCOUNT_FIRING_SCHEMA).sort("account_id", "trigger", "action_index"),  # type: ignore[arg-type]
        pl.concat(arms).cast(ACCOUNT_ARM_SCHEMA).sort("account_id", "trigger"),  # type: ignore[arg-type]
    )


def changed(after: pl.DataFrame, before: pl.DataFrame) -> pl.DataFrame:
    """The accounts of ``after`` whose score, band or qualifications differ from their last snapshot
    (``before``: ``account_id, score, band, qualifications``), or that have none: the snapshots to write."""
    last = before.select(
        "account_id",
        pl.col("score").alias("_s"),
        pl.col("band").alias("_b"),
        pl.col("qualifications").alias("_q"),
    )
    joined = after.join(last, on="account_id", how="left")
    same = (
        (pl.col("score") == pl.col("_s"))
        & (pl.col("band") == pl.col("_b")).fill_null(False)
        & (pl.col("qualifications").list.join("\x1f") == pl.col("_q").list.join("\x1f"))
    ).fill_null(False)
    return joined.filter(~same).drop("_s", "_b", "_q")
