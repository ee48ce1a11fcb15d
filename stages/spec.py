"""The portfolio file's grammar: product lines, their funnels, bands, qualifications, triggers and
the settings of ingestion, scoring, schedules and monitoring, with the cross-checks between them.

Everything a marketer decides lives here (and in the model files it points to); the code holds no
business constants. ``stages.portfolio`` loads a file against this grammar into the runtime objects.
"""

import re
from datetime import time
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from models.spec import Bands, OneOf, Scale, Spec
from stages.sales import SalesSpec

EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
BUILTIN_EVENT_TYPES = frozenset(
    {
        "page_view", "email_sent", "email_delivered", "email_open", "email_click", "email_reply",
        "email_bounce", "spam_complaint", "form_submit", "asset_download", "webinar_register", "webinar_attend",
        "demo_request", "trial_start", "meeting_booked", "unsubscribe", "manual_adjustment",
        "resubscribe", "content_served",  # the service: preferences and web content
        "identify",  # names a lead and an anonymous visitor: the visitor is that lead
    }
)  # fmt: skip


class StageSpec(Spec):
    """One funnel step: its model, when a journey moves on, and what it keeps on entry.

    ``entry: reset`` starts the stage afresh: only events from the moment of entry count (``score_from``
    becomes the entry time). ``entry: carry`` keeps what the previous stage counted (``score_from`` is
    unchanged: from the first stage, the whole history). ``carry_fraction`` (with ``carry`` only) blends
    the two, so that the past counts partly while scores stay derived:
    ``score = f × carried score + (1 − f) × reset score``, rule by rule in the breakdown. Fit points
    count fully; a behaviour seen only before entry counts at ``f``.

    ``promote_at`` moves a journey to the next funnel stage once its score reaches it, but not before it
    has spent ``min_dwell_days`` in the stage. ``after_crm_move`` says what a move by sales (an external
    CRM update) into this stage means: ``hold`` (the default) keeps the journey where sales put it until
    activity after the move (an event the models read) earns the promotion; ``promote`` promotes on the
    score alone, as after any other entry. A ``terminal`` stage (customer, lost) ends the funnel: it
    is entered only by an external (CRM) update, is never scored or promoted, and gives the journey its
    ``status``; terminal stages come after the funnel stages.
    """

    model: str | None = None
    promote_at: float | None = None
    min_dwell_days: Annotated[float, Field(ge=0)] | None = None
    after_crm_move: Literal["hold", "promote"] = "hold"
    entry: Literal["reset", "carry"] = "carry"
    carry_fraction: Annotated[float, Field(ge=0, le=1)] | None = None
    bands: Bands | None = None
    terminal: bool = False
    status: Literal["customer", "lost"] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.terminal:
            extra = sorted(
                name
                for name in (
                    "model",
                    "promote_at",
                    "min_dwell_days",
                    "after_crm_move",
                    "entry",
                    "carry_fraction",
                    "bands",
                )
                if name in self.model_fields_set
            )
            if extra:
                raise ValueError(f"a terminal stage is not scored nor promoted; drop {', '.join(extra)}")
            if self.status is None:
                raise ValueError("a terminal stage says which status it gives the journey: status: customer or lost")
            return self
        if self.model is None:
            raise ValueError("a funnel stage needs a model (or 'terminal: true' for customer/lost)")
        if self.status is not None:
            raise ValueError("status belongs to terminal stages; add 'terminal: true' or drop status")
        if self.min_dwell_days is not None and self.promote_at is None:
            raise ValueError("min_dwell_days delays a promotion; it needs promote_at")
        if self.carry_fraction is not None and self.entry != "carry":
            raise ValueError("carry_fraction says how much of the past an 'entry: carry' stage keeps; use entry: carry")
        return self


def _template_name(value: str) -> str:
    """A template is named, never given as a path: it is looked up in the portfolio's ``templates/``."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", value):
        raise ValueError(
            f"{value!r} is not a template name (letters, digits, '_', '-', '.'; no path): "
            "templates are looked up in the portfolio's templates/ folder"
        )
    return value


TemplateName = Annotated[str, AfterValidator(_template_name)]


class NotifyOwner(Spec):
    """Email the lead's owner (or the fixed address ``to``) from a template, with the score breakdown;
    with ``digest: "08:00"``, one email per owner a day at that time instead (``flows/digest.py``)."""

    template: TemplateName = "owner_alert"
    to: str | None = None
    digest: str | None = None

    @field_validator("digest")
    @classmethod
    def _time_of_day(cls, value: str | None) -> str | None:
        if value is not None:
            time.fromisoformat(value)
        return value

    @field_validator("to")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and not EMAIL.fullmatch(value):
            raise ValueError(f"{value!r} is not an email address")
        return value


class Webhook(Spec):
    """POST the firing as JSON; signed with HMAC-SHA256 when ``secret_env`` names an environment variable."""

    url: str
    secret_env: str | None = None

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+\S*", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("secret_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError(f"{value!r} is not an environment variable name (the secret itself never goes here)")
        return value


class Chat(Spec):
    """Post the firing to a Slack or Microsoft Teams channel through its incoming webhook; ``url_env``
    names the environment variable holding the webhook URL (a secret: the URL alone lets anyone post)."""

    platform: Literal["slack", "teams"]
    url_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class Action(OneOf):
    """Exactly one of: notify_owner, tag, untag, enrol, exit, webhook, chat."""

    one_of_message = "an action has exactly one of {choices}; got {given}"

    notify_owner: NotifyOwner | None = None
    tag: Annotated[str, Field(min_length=1)] | None = None
    untag: Annotated[str, Field(min_length=1)] | None = None
    enrol: Annotated[str, Field(min_length=1)] | None = None
    exit: Annotated[str, Field(min_length=1)] | None = None
    webhook: Webhook | None = None
    chat: Chat | None = None

    @property
    def params(self) -> dict[str, Any]:
        """The action's arguments as a plain dict (what a firing records)."""
        value = getattr(self, self.kind)
        if isinstance(value, NotifyOwner) and value.digest is None:
            return value.model_dump(exclude={"digest"})  # an immediate alert's params as they always were
        if isinstance(value, Spec):
            return value.model_dump()
        return {"tag": value} if self.kind in ("tag", "untag") else {"track": value}


class Crossing(OneOf):
    one_of_message = "score takes exactly one of {choices}"

    crosses_up: float | None = None
    crosses_down: float | None = None


class When(OneOf):
    """Exactly one condition: a score crossing, a qualification reached, a stage entered."""

    one_of_message = "'when' takes exactly one of {choices}; got {given}"

    score: Crossing | None = None
    qualification_reached: str | None = None
    stage_entered: str | None = None


class TriggerSpec(Spec):
    """Actions when a journey's current-stage score crosses a threshold, reaches a qualification or enters a stage.

    A crossing fires once and re-arms when the score goes back across; ``qualification_reached`` fires
    once per journey, ever. ``stage`` restricts a score or qualification trigger to journeys in that stage.
    """

    name: Annotated[str, Field(min_length=1)]
    when: When
    stage: str | None = None
    actions: Annotated[list[Action], Field(min_length=1)]

    @property
    def kind(self) -> Literal["crosses_up", "crosses_down", "qualification_reached", "stage_entered"]:
        if self.when.score is not None:
            return "crosses_up" if self.when.score.crosses_up is not None else "crosses_down"
        return "qualification_reached" if self.when.qualification_reached is not None else "stage_entered"

    @property
    def threshold(self) -> float | None:
        score = self.when.score
        return None if score is None else score.crosses_up if score.crosses_up is not None else score.crosses_down


class ProductLineSpec(Spec):
    title: str | None = None
    stages: Annotated[dict[str, StageSpec], Field(min_length=1)]
    bands: Bands
    qualifications: dict[str, float] = Field(default_factory=dict)
    triggers: list[TriggerSpec] = Field(default_factory=list)
    opportunity_stage: str | None = None
    """The stage that counts as "opportunity" for the MQL → opportunity KPI."""
    account_model: dict[str, Any] | None = None
    """Scores the line's accounts: validated by ``stages.account_spec`` when the portfolio loads."""


class IngestSpec(Spec):
    """How ingestion recognises machine activity (privacy proxies, link scanners), and the drop folder
    the daily pipeline reads (relative to the portfolio file)."""

    machine_window_seconds: Annotated[float, Field(ge=0)] = 2.0
    proxy_user_agents: list[str] | None = None
    drop_folder: str | None = None


class ScoringSpec(Spec):
    partition_size: Annotated[int, Field(ge=1000)] = 50_000


class IdentitySpec(Spec):
    """Anonymous visitors' events that no lead has claimed are deleted after ``anonymous_retention_days``
    (the daily pipeline's retention step, or ``leadscore leads purge-anonymous``)."""

    anonymous_retention_days: Annotated[float, Field(gt=0)] = 90


def _known_zone(value: str) -> str:
    """An IANA time zone, checked once when the portfolio loads (not when a report first needs it)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return str(ZoneInfo(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Paris)") from None


Zone = Annotated[str, AfterValidator(_known_zone)]


class ScheduleSpec(Spec):
    """When deployments run the portfolio (``leadscore serve``); the time zone defaults to the portfolio's."""

    cron: Annotated[str, Field(pattern=r"^\S+(\s+\S+){4}$")]
    timezone: Zone | None = None


WEEKLY_REVIEW = "0 7 * * 1"  # Mondays 07:00 in the portfolio's time zone, after the daily run


class MonitoringSpec(Spec):
    """What ``review_models`` checks on recent outcomes: the AUC floor, the MQL → opportunity target (B2B
    practice: about 30 %), how far back outcomes count, and where warnings are posted (optional webhook)."""

    auc_floor: Annotated[float, Field(ge=0.5, le=1)] = 0.7
    mql_to_opportunity_target: Annotated[float, Field(ge=0, le=1)] = 0.3
    qualification: str = "MQL"
    window_days: Annotated[float, Field(gt=0)] = 90
    min_leads_per_band: Annotated[int, Field(ge=1)] = 30
    notify_webhook: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = None
    schedule: ScheduleSpec | None = Field(default_factory=lambda: ScheduleSpec(cron=WEEKLY_REVIEW))
    """When ``leadscore serve`` runs the review (weekly by default; ``null``: only when asked)."""


class PrivacySpec(Spec):
    """What happens when an erased person (``leadscore leads erase``) comes back in a file or the API."""

    after_erasure: Literal["refuse", "suppress"] = "refuse"
    """``refuse``: the row is rejected (its content not kept); ``suppress``: stored without consent, unsubscribed."""


class PortfolioSpec(Spec):
    name: str = "portfolio"
    scale: Scale = Field(default_factory=Scale)
    timezone: Zone = "UTC"
    event_types: list[str] = Field(default_factory=list)
    ingest: IngestSpec = Field(default_factory=IngestSpec)
    scoring: ScoringSpec = Field(default_factory=ScoringSpec)
    identity: IdentitySpec = Field(default_factory=IdentitySpec)
    schedule: ScheduleSpec | None = None
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    product_lines: Annotated[dict[str, ProductLineSpec], Field(min_length=1)]
    sales: SalesSpec = Field(default_factory=SalesSpec)
    accounts: dict[str, Any] = Field(default_factory=dict)
    """Which email domains form no account (``stages.account_spec.AccountsSpec``)."""
    privacy: PrivacySpec = Field(default_factory=PrivacySpec)
    # Tracks, audiences and sending rules: validated by ``nurture.spec`` against this same file
    # (``nurture/`` builds on ``stages/``, never the reverse).
    nurture: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _within_scale(self) -> Self:
        """Cross-checks between the parts of a line; each problem is placed at its path (and line) in the file."""
        problems: list[InitErrorDetails] = []
        for line_name, line in self.product_lines.items():
            problems += _line_problems(line_name, line, self.scale)
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self


def _line_problems(line_name: str, line: ProductLineSpec, scale: Scale) -> list[InitErrorDetails]:
    lo, hi = scale.min, scale.max
    at = ("product_lines", line_name)
    problems: list[InitErrorDetails] = []

    def problem(loc: tuple[str | int, ...], message: str) -> None:
        problems.append(
            InitErrorDetails(
                type=PydanticCustomError("value_error", "{message}", {"message": message}), loc=at + loc, input=None
            )
        )

    for where, bands in [(("bands",), line.bands)] + [
        (("stages", name, "bands"), stage.bands) for name, stage in line.stages.items() if stage.bands is not None
    ]:
        try:
            bands.check_covers(scale)
        except ValueError as exc:
            problem(where, str(exc))
    for qual, threshold in line.qualifications.items():
        if not lo <= threshold <= hi:
            problem(("qualifications", qual), f"threshold {threshold} is outside the scale [{lo}, {hi}]")

    names = list(line.stages)
    funnel = [name for name, stage in line.stages.items() if not stage.terminal]
    if line.stages[names[0]].terminal:
        problem(("stages", names[0]), "the first stage is where journeys start; it cannot be terminal")
    elif names[: len(funnel)] != funnel:
        first_terminal = next(name for name in names if line.stages[name].terminal)
        problem(("stages", first_terminal), "terminal stages come after every funnel stage")
    for name, stage in line.stages.items():
        if stage.promote_at is None:
            continue
        if not lo <= stage.promote_at <= hi:
            problem(("stages", name, "promote_at"), f"{stage.promote_at} is outside the scale [{lo}, {hi}]")
        if funnel and name == funnel[-1]:
            problem(("stages", name, "promote_at"), "the last funnel stage has no next stage to promote to")
    if line.opportunity_stage is not None and line.opportunity_stage not in line.stages:
        problem(("opportunity_stage",), f"unknown stage {line.opportunity_stage!r}; stages: {names}")

    seen: set[str] = set()
    for index, trigger in enumerate(line.triggers):
        where: tuple[str | int, ...] = ("triggers", index)
        if trigger.name in seen:
            problem((*where, "name"), f"trigger name {trigger.name!r} is used twice; it keys the trigger's state")
        seen.add(trigger.name)
        when = trigger.when
        if trigger.threshold is not None and not lo < trigger.threshold <= hi:
            problem(
                (*where, "when", "score", trigger.kind),
                f"{trigger.threshold} must be above the scale minimum and at most its maximum ({lo}, {hi}]",
            )
        if when.qualification_reached is not None and when.qualification_reached not in line.qualifications:
            problem(
                (*where, "when", "qualification_reached"),
                f"unknown qualification {when.qualification_reached!r}; known: {sorted(line.qualifications)}",
            )
        if when.stage_entered is not None and when.stage_entered not in line.stages:
            problem((*where, "when", "stage_entered"), f"unknown stage {when.stage_entered!r}; stages: {names}")
        if trigger.stage is not None:
            if trigger.stage not in line.stages:
                problem((*where, "stage"), f"unknown stage {trigger.stage!r}; stages: {names}")
            elif when.stage_entered is not None:
                problem((*where, "stage"), "stage_entered already names its stage; drop 'stage'")
            elif line.stages[trigger.stage].terminal:
                problem((*where, "stage"), f"stage {trigger.stage!r} is terminal: it has no score to watch")
    return problems
