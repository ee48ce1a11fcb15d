"""The account grammar: which leads form an account (portfolio ``accounts:``) and a product line's
``account_model:`` — fit rules on account attributes (the points-rule grammar of ``models.spec``),
roll-ups of the members' journeys, bands, qualifications and triggers.

A roll-up rule turns one figure of the account into points: ``points`` per unit (``max`` caps the
sum) or, with ``at_least``, ``points`` once when the figure reaches it. The figures (``METRICS``):

- ``members``: leads of the account; ``max_score`` / ``sum_score``: of the members' current scores
  in this product line (a member without a journey there counts nothing);
- ``engaged_members``: members with a qualifying event (``engaged.events``, machine activity
  excluded) within ``engaged.within_days`` before ``as_of``;
- ``seniorities``: distinct seniority levels among the engaged members (``seniority`` maps a lead
  attribute, by default ``job_title``, to a level: the first matching pattern wins).

An account qualification holds while all its conditions hold (it is not sticky: a buying group that
goes quiet is no longer engaged); its trigger fires once per crossing and re-arms when it stops holding.
"""

from functools import cache
from importlib.resources import files
from typing import Annotated, Literal, Self

import polars as pl
from pydantic import Field, ValidationError, ValidationInfo, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from models.spec import Bands, FieldTest, FitRule, Scale, Spec
from stages.spec import TriggerSpec

METRICS = ("members", "max_score", "sum_score", "engaged_members", "seniorities")
Metric = Literal["members", "max_score", "sum_score", "engaged_members", "seniorities"]
ACCOUNT_ACTIONS = ("notify_owner", "webhook")
DEFAULT_ENGAGING_EVENTS = (
    "page_view", "email_click", "email_reply", "form_submit", "asset_download", "webinar_register",
    "webinar_attend", "demo_request", "trial_start", "meeting_booked",
)  # fmt: skip


@cache
def default_free_mail_domains() -> frozenset[str]:
    """The documented list shipped with leadscore (``stages/free_mail_domains.txt``)."""
    text = files("stages").joinpath("free_mail_domains.txt").read_text(encoding="utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#"))


class AccountsSpec(Spec):
    """Portfolio-wide: which email domains never form an account. ``free_mail_domains`` replaces the
    shipped list; ``extra_free_mail_domains`` adds to it."""

    free_mail_domains: list[str] | None = None
    extra_free_mail_domains: list[str] = Field(default_factory=list)

    @property
    def free_mail(self) -> frozenset[str]:
        base = default_free_mail_domains() if self.free_mail_domains is None else frozenset()
        listed = [*(self.free_mail_domains or []), *self.extra_free_mail_domains]
        return base | {domain.strip().lower().lstrip("@") for domain in listed}


class EngagedSpec(Spec):
    """What makes a member engaged: one of ``events`` in the last ``within_days`` days."""

    within_days: Annotated[float, Field(gt=0)] = 30
    events: Annotated[list[str], Field(min_length=1)] = Field(default_factory=lambda: list(DEFAULT_ENGAGING_EVENTS))


class SeniorityMap(Spec):
    """A lead attribute mapped to a seniority level by patterns (Polars regex), the first match winning."""

    attribute: str = "job_title"
    levels: Annotated[dict[str, str], Field(min_length=1)]

    @model_validator(mode="after")
    def _patterns(self) -> Self:
        for level, pattern in self.levels.items():
            FieldTest(matches=pattern)  # the same check as a fit rule's pattern: Polars must accept it
            if not level.strip():
                raise ValueError("a seniority level needs a name")
        return self


class RollupRule(Spec):
    """Points from one figure of the account (see the module docstring)."""

    name: Annotated[str, Field(min_length=1)]
    metric: Metric
    points: float
    at_least: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.at_least is not None and self.max is not None:
            raise ValueError(f"roll-up {self.name!r}: 'max' caps points per unit; with at_least the points come once")
        return self


class AccountQualification(Spec):
    """Conditions that must all hold, e.g. buying group engaged: ``{engaged_members: 3, seniorities_any:
    [executive, director]}`` (three engaged members, one of them a decision maker)."""

    min_score: float | None = None
    engaged_members: Annotated[int, Field(ge=1)] | None = None
    seniorities_any: Annotated[list[str], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.min_score is None and self.engaged_members is None and self.seniorities_any is None:
            raise ValueError("a qualification needs at least one of min_score, engaged_members, seniorities_any")
        return self


class AccountModelSpec(Spec):
    """A product line's account model; ``bands`` default to the line's."""

    fit: list[FitRule] = Field(default_factory=list)
    rollups: list[RollupRule] = Field(default_factory=list)
    engaged: EngagedSpec = Field(default_factory=EngagedSpec)
    seniority: SeniorityMap | None = None
    bands: Bands | None = None
    qualifications: dict[str, AccountQualification] = Field(default_factory=dict)
    triggers: list[TriggerSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> Self:
        """Each problem at its path (so the error names the line of the file)."""
        problems: list[InitErrorDetails] = []

        def problem(loc: tuple[str | int, ...], message: str) -> None:
            problems.append(_problem(loc, message))

        names = [rule.name for rule in self.fit] + [rule.name for rule in self.rollups]
        for group, rules in (("fit", self.fit), ("rollups", self.rollups)):
            for index, rule in enumerate(rules):
                if names.count(rule.name) > 1:
                    problem((group, index, "name"), f"rule name {rule.name!r} is used twice; names label the breakdown")
        levels = set(self.seniority.levels) if self.seniority else set()
        for index, rule in enumerate(self.rollups):
            if rule.metric == "seniorities" and self.seniority is None:
                problem(("rollups", index, "metric"), "the seniorities figure needs a 'seniority' map")
        for name, qualification in self.qualifications.items():
            unknown = sorted(set(qualification.seniorities_any or []) - levels)
            if unknown:
                message = f"unknown levels {unknown}; known: {sorted(levels)}"
                problem(("qualifications", name, "seniorities_any"), message)
        scale: Scale = (info.context or {}).get("scale") or Scale()
        if self.bands is not None:
            try:
                self.bands.check_covers(scale)
            except ValueError as exc:
                problem(("bands",), str(exc))
        for index, trigger in enumerate(self.triggers):
            problems += _trigger_problems(trigger, index, self, scale)
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self

    @property
    def qualification_names(self) -> list[str]:
        return list(self.qualifications)

    def attribute_names(self) -> set[str]:
        """The account attributes the fit rules read."""
        return {name for rule in self.fit for cond in [rule.when, *(rule.any_of or [])] for name in cond}

    def seniority_expr(self, column: pl.Expr) -> pl.Expr:
        """The level of each value of ``column`` (null when no pattern matches)."""
        expr: pl.Expr = pl.lit(None, pl.Utf8)
        for level, pattern in reversed(list((self.seniority.levels if self.seniority else {}).items())):
            expr = pl.when(column.str.contains(pattern).fill_null(False)).then(pl.lit(level)).otherwise(expr)
        return expr


def _trigger_problems(
    trigger: TriggerSpec, index: int, model: AccountModelSpec, scale: Scale
) -> list[InitErrorDetails]:
    where: tuple[str | int, ...] = ("triggers", index)
    found: list[tuple[tuple[str | int, ...], str]] = []
    if trigger.kind == "stage_entered" or trigger.stage is not None:
        found.append(((*where, "when"), "an account has no stage: use score or qualification_reached"))
    reached = trigger.when.qualification_reached
    if reached is not None and reached not in model.qualifications:
        message = f"unknown account qualification {reached!r}; known: {sorted(model.qualifications)}"
        found.append(((*where, "when", "qualification_reached"), message))
    if trigger.threshold is not None and not scale.min < trigger.threshold <= scale.max:
        found.append(
            ((*where, "when", "score", trigger.kind), f"{trigger.threshold} must be within ({scale.min}, {scale.max}]")
        )
    if [t.name for t in model.triggers].count(trigger.name) > 1:
        found.append(((*where, "name"), f"trigger name {trigger.name!r} is used twice; it keys the trigger's state"))
    for position, action in enumerate(trigger.actions):
        if action.notify_owner is not None and action.notify_owner.digest is not None:
            found.append(((*where, "actions", position, "notify_owner", "digest"), "account alerts are sent at once"))
        if action.kind not in ACCOUNT_ACTIONS:
            message = f"account triggers take {' or '.join(ACCOUNT_ACTIONS)}, not {action.kind}"
            found.append(((*where, "actions", position), message))
    return [_problem(loc, message) for loc, message in found]


def _problem(loc: tuple[str | int, ...], message: str) -> InitErrorDetails:
    error = PydanticCustomError("value_error", "{message}", {"message": message})
    return InitErrorDetails(type=error, loc=loc, input=None)
