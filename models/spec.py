"""The points-model grammar: what a marketer can say, validated by Pydantic.

A model file holds fit rules (lead attributes), behaviour rules (events), combo rules (several
behaviours close together), decay, group caps and, optionally, its own scale and bands so it stands
alone. Every rule has a name; that name is what the score breakdown shows.
"""

import itertools
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

import polars as pl
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

NUMERIC_OPS = ("lt", "le", "gt", "ge", "between")


class Spec(BaseModel):
    """Base of every spec: unknown keys (a typo never silently scores nothing) and inf/NaN are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


class OneOf(Spec):
    """A choice: exactly one of ``choices`` (default: every field) is given, and ``kind`` names it.

    ``one_of_message`` says what is wrong in the grammar's words (``{choices}`` and ``{given}`` are
    filled in). An empty text counts as not given.
    """

    choices: ClassVar[tuple[str, ...]] = ()
    one_of_message: ClassVar[str] = "exactly one of {choices}; got {given}"

    @classmethod
    def _choice_names(cls) -> tuple[str, ...]:
        return cls.choices or tuple(cls.model_fields)

    def _given(self) -> list[str]:
        return [name for name in self._choice_names() if getattr(self, name) not in (None, "")]

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = self._given()
        if len(given) != 1:
            raise ValueError(self.one_of_message.format(choices=", ".join(self._choice_names()), given=given or "none"))
        return self

    @property
    def kind(self) -> str:
        """The name of the one field given."""
        return self._given()[0]


class FieldTest(Spec):
    """Tests on one attribute or event property; several tests on one field must all hold.

    String equality (``eq``, ``ne``, ``in``, ``not_in``) ignores case and surrounding spaces;
    numeric tests cast the value to a number (a non-number fails the test).
    """

    eq: str | float | bool | None = None
    ne: str | float | bool | None = None
    in_: list[str | float] | None = Field(default=None, alias="in")
    not_in: list[str | float] | None = None
    lt: float | None = None
    le: float | None = None
    gt: float | None = None
    ge: float | None = None
    between: tuple[float, float] | None = None
    matches: str | None = None
    contains: str | None = None
    present: bool | None = None

    @model_validator(mode="after")
    def _one_test_at_least(self) -> Self:
        # ``eq: null`` sets a field but tests nothing (and would make the scorer fail): not a test.
        if all(getattr(self, name) is None for name in type(self).model_fields):
            raise ValueError("a field test needs at least one of: " + ", ".join(_test_names()))
        if self.between is not None and self.between[0] > self.between[1]:
            raise ValueError(f"between: lower bound {self.between[0]} is above upper bound {self.between[1]}")
        return self

    @field_validator("matches")
    @classmethod
    def _regex_compiles(cls, pattern: str | None) -> str | None:
        """The scorer runs patterns with Polars' (Rust) regex engine, so that is the one that must accept it:
        it has no look-around or back-references, which Python's ``re`` would let through."""
        if pattern is not None:
            try:
                pl.Series([""], dtype=pl.Utf8).str.contains(pattern)
            except pl.exceptions.PolarsError as exc:
                lines = [line.strip() for line in str(exc).splitlines()]
                reason = next((line.removeprefix("error: ") for line in lines if line.startswith("error:")), lines[0])
                raise ValueError(f"invalid regular expression {pattern!r}: {reason}") from exc
        return pattern


def _placed(loc: tuple[str | int, ...], message: str, value: Any) -> InitErrorDetails:
    """A validation problem at ``loc`` (relative to the model being validated)."""
    return InitErrorDetails(
        type=PydanticCustomError("value_error", "{message}", {"message": message}), loc=loc, input=value
    )


def _test_names() -> list[str]:
    return [f.alias or name for name, f in FieldTest.model_fields.items()]


Condition = dict[str, FieldTest]
"""Field name → tests; every field's tests must hold (AND)."""


class FitRule(Spec):
    """Points for who the lead is. ``when`` must hold, and one of ``any_of`` when given. Never decays."""

    name: str
    when: Condition = Field(default_factory=dict)
    any_of: list[Condition] | None = None
    points: float

    @model_validator(mode="after")
    def _has_condition(self) -> Self:
        if not self.when and not self.any_of:
            raise ValueError(f"fit rule {self.name!r} needs 'when' or 'any_of'")
        return self


class BehaviourRule(Spec):
    """Points for what the lead did.

    ``per: once`` (default) gives the points once when a matching event exists; ``per: occurrence``
    gives them for every matching event, up to ``max`` (or down to ``min`` for negative points).
    ``count_at_least`` / ``total_at_least`` make a threshold rule: the points come once when the
    count of matching events (or the sum of a numeric property) reaches the threshold.
    ``within_days`` only counts events of the last N days before ``as_of``. Machine activity (Apple
    Mail Privacy Protection prefetches, link scanners) is ignored unless ``include_machine``.
    Decay applies to each occurrence by its age; a once or threshold rule decays with the age of
    its most recent matching event.
    """

    name: str
    event: str | list[str]
    where: Condition = Field(default_factory=dict)
    points: float
    per: Literal["once", "occurrence"] = "once"
    max: float | None = None
    min: float | None = None
    within_days: Annotated[float, Field(gt=0)] | None = None
    count_at_least: Annotated[int, Field(ge=1)] | None = None
    total_at_least: dict[str, float] | None = None
    include_machine: bool = False
    decay: bool = True

    @property
    def event_types(self) -> list[str]:
        return [self.event] if isinstance(self.event, str) else list(self.event)

    @property
    def is_threshold(self) -> bool:
        return self.count_at_least is not None or self.total_at_least is not None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.is_threshold and self.per == "occurrence":
            raise ValueError(f"rule {self.name!r}: a threshold rule gives its points once; drop 'per: occurrence'")
        if self.count_at_least is not None and self.total_at_least is not None:
            raise ValueError(f"rule {self.name!r}: use count_at_least or total_at_least, not both")
        if self.total_at_least is not None and len(self.total_at_least) != 1:
            raise ValueError(f"rule {self.name!r}: total_at_least names exactly one property, e.g. {{duration_s: 300}}")
        if (self.max is not None or self.min is not None) and self.per != "occurrence":
            raise ValueError(f"rule {self.name!r}: max/min cap the sum of a 'per: occurrence' rule")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"rule {self.name!r}: min {self.min} is above max {self.max}")
        if not self.event_types:
            raise ValueError(f"rule {self.name!r}: 'event' names at least one event type")
        return self


class ComboRule(Spec):
    """A bonus when every named behaviour rule matched an event within ``within_days`` of each other."""

    name: str
    all_of: Annotated[list[str], Field(min_length=2)]
    within_days: Annotated[float, Field(gt=0)]
    points: float
    decay: bool = True


class DecayStep(Spec):
    after_days: Annotated[float, Field(gt=0)]
    keep: Annotated[float, Field(ge=0, le=1)]


class Decay(OneOf):
    """Behaviour points fade with age: a half-life, or steps ("keep 50 % after 90 days")."""

    one_of_message = "decay takes either half_life_days or steps"

    half_life_days: Annotated[float, Field(gt=0)] | None = None
    steps: list[DecayStep] | None = None

    @model_validator(mode="after")
    def _increasing_steps(self) -> Self:
        if self.steps is not None:
            days = [s.after_days for s in self.steps]
            if days != sorted(set(days)):
                raise ValueError("decay steps must be in increasing after_days order")
        return self


class Caps(Spec):
    """Upper bounds for the sum of a rule group (combos count as behaviour)."""

    fit: float | None = None
    behaviour: float | None = None


class Scale(Spec):
    min: float = 0
    max: float = 100

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min >= self.max:
            raise ValueError(f"scale min {self.min} must be below max {self.max}")
        return self


class Bands(BaseModel):
    """Named half-open ranges ``[lo, hi)`` tiling the scale; the top band is closed."""

    model_config = ConfigDict(frozen=True)
    ranges: dict[str, tuple[float, float]]

    @model_validator(mode="before")
    @classmethod
    def _from_mapping(cls, value: Any) -> Any:
        if isinstance(value, dict) and "ranges" not in value:
            return {"ranges": value}
        return value

    @model_validator(mode="after")
    def _tiled(self) -> Self:
        if not self.ranges:
            raise ValueError("bands: at least one band")
        ordered = sorted(self.ranges.items(), key=lambda item: item[1][0])
        for name, (lo, hi) in ordered:
            if lo >= hi:
                raise ValueError(f"band {name!r}: lower bound {lo} must be below upper bound {hi}")
        for (name_a, (_, hi_a)), (name_b, (lo_b, _)) in itertools.pairwise(ordered):
            if lo_b < hi_a:
                raise ValueError(f"bands {name_a!r} and {name_b!r} overlap ({name_b!r} starts at {lo_b} < {hi_a})")
            if lo_b > hi_a:
                raise ValueError(f"gap between bands {name_a!r} and {name_b!r}: no band covers [{hi_a}, {lo_b})")
        return self

    @property
    def ordered(self) -> list[tuple[str, float, float]]:
        return sorted(((n, lo, hi) for n, (lo, hi) in self.ranges.items()), key=lambda b: b[1])

    def check_covers(self, scale: Scale) -> None:
        first, last = self.ordered[0], self.ordered[-1]
        if first[1] > scale.min or last[2] < scale.max:
            raise ValueError(f"bands cover [{first[1]}, {last[2]}] but the scale is [{scale.min}, {scale.max}]")

    def band_of(self, score: float) -> str:
        ordered = self.ordered
        for name, lo, hi in ordered:
            if lo <= score < hi:
                return name
        return ordered[-1][0] if score >= ordered[-1][1] else ordered[0][0]


class ProbabilityFeature(Spec):
    """An input of a learned probability model: an attribute, or a count of one event type in a window."""

    name: str
    kind: Literal["numeric", "categorical", "count"]
    event: str | None = None
    within_days: Annotated[float, Field(gt=0)] | None = None
    levels: list[str] = Field(default_factory=list)
    """Categorical: the levels the estimator knows, in code order (any other value is "other")."""
    reference: float | str | None = None
    """What a reason compares the lead's value with (a typical lead's value)."""


class ProbabilitySpec(Spec):
    """The estimator of a ``kind: probability`` model, stored next to the model file under its version."""

    artifact: str
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    base_rate: Annotated[float, Field(ge=0, le=1)]
    reasons: Annotated[int, Field(ge=1)] = 3
    missing_values: list[str] = Field(default_factory=list)
    features: Annotated[list[ProbabilityFeature], Field(min_length=1)]


class PointsModel(Spec):
    """A points model for one (product line, stage), or a stand-alone file for ``score-file``.

    ``kind: probability`` is a learned estimator instead of rules (``probability`` says where it is and
    what it reads); it scores through the same ``models.engine.score`` with the same breakdown shape.
    """

    kind: Literal["points", "probability"] = "points"
    probability: ProbabilitySpec | None = None
    _source: Path | None = PrivateAttr(default=None)
    name: str | None = None
    description: str | None = None
    version: str | None = None
    scale: Scale | None = None
    bands: Bands | None = None
    base_points: float = 0
    """Points every lead starts from (a learned scorecard's offset; shown as "base points" in the breakdown)."""
    fit: list[FitRule] = Field(default_factory=list)
    behaviour: list[BehaviourRule] = Field(default_factory=list)
    combos: list[ComboRule] = Field(default_factory=list)
    decay: Decay | None = None
    caps: Caps = Field(default_factory=Caps)
    manual_adjustments: bool = True
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _kind(self, info: ValidationInfo) -> Self:
        if (self.kind == "probability") != (self.probability is not None):
            raise ValueError("a 'probability' section goes with kind: probability, and only with it")
        if self.probability is not None and (self.fit or self.behaviour or self.combos or self.base_points):
            raise ValueError("a probability model has no rules: its estimator scores")
        self._source = (info.context or {}).get("source")  # artifacts resolve relative to the model file
        return self

    @property
    def artifact_path(self) -> Path | None:
        if self.probability is None:
            return None
        base = self._source.parent if self._source is not None else Path()
        return base / self.probability.artifact

    @model_validator(mode="after")
    def _names(self) -> Self:
        problems: list[InitErrorDetails] = []
        seen: set[str] = set()
        groups: list[tuple[str, list[FitRule] | list[BehaviourRule] | list[ComboRule]]] = [
            ("fit", self.fit),
            ("behaviour", self.behaviour),
            ("combos", self.combos),
        ]
        for group, rules in groups:
            for index, rule in enumerate(rules):
                if rule.name in seen:
                    message = f"rule name {rule.name!r} is used twice; names label the breakdown"
                    problems.append(_placed((group, index, "name"), message, rule.name))
                seen.add(rule.name)
        behaviour_names = {r.name for r in self.behaviour}
        for index, combo in enumerate(self.combos):
            for position, name in enumerate(combo.all_of):
                if name not in behaviour_names:
                    message = (
                        f"combo {combo.name!r} names unknown behaviour rule {name!r}; known: {sorted(behaviour_names)}"
                    )
                    problems.append(_placed(("combos", index, "all_of", position), message, name))
        if self.scale and self.bands:
            try:
                self.bands.check_covers(self.scale)
            except ValueError as exc:
                problems.append(_placed(("bands",), str(exc), None))
        if problems:
            # A ValidationError raised here keeps each problem's location (prefixed by pydantic with the
            # path to this model), so the error names the offending rule, not just the whole file.
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self

    def event_types(self) -> set[str]:
        types = {t for r in self.behaviour for t in r.event_types}
        types |= {f.event for f in (self.probability.features if self.probability else []) if f.event}
        if self.manual_adjustments:
            types.add("manual_adjustment")
        return types

    def attribute_names(self) -> set[str]:
        """The lead attributes the fit rules read."""
        names = {name for rule in self.fit for cond in [rule.when, *(rule.any_of or [])] for name in cond}
        return names | {f.name for f in (self.probability.features if self.probability else []) if f.kind != "count"}

    def property_keys(self) -> set[str]:
        """The event properties the rules read (so a reader fetches only those)."""
        keys = {key for rule in self.behaviour for key in [*rule.where, *(rule.total_at_least or {})]}
        if self.manual_adjustments:
            keys.add("points")
        return keys
