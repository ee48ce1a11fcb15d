"""The ``nurture:`` section of the portfolio: sender, frequency cap, send window and tracks.

Validated from the portfolio file as ``load_portfolio`` read it (errors name file:line: path), and cross-checked
against it: a track's product line, stages, bands and qualifications must exist, its email templates
must render with a sample context, its audience steps must name a declared audience.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails

from models.files import SpecError, line_of, validate_part
from models.spec import OneOf, Spec, _placed
from nurture.content import ContentSlot
from nurture.mail import Mailer, MailError, Sender, sample_context, validate_templates
from stages.portfolio import Portfolio
from stages.spec import EMAIL, TemplateName

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: str) -> timedelta:
    """``30m``, ``12h``, ``3d``, ``2w``."""
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration such as 30m, 12h, 3d or 2w")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


class SenderSpec(Spec):
    """Who nurture email is from; the postal address and unsubscribe links go into every message."""

    name: Annotated[str, Field(min_length=1)]
    address: str
    postal_address: Annotated[str, Field(min_length=5)]
    unsubscribe_url: str
    unsubscribe_mailto: str | None = None

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not EMAIL.fullmatch(value):
            raise ValueError(f"{value!r} is not an email address")
        return value

    @field_validator("unsubscribe_url")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("the one-click unsubscribe URL must be https:// (RFC 8058)")
        _check_placeholders(value)
        return value

    @field_validator("unsubscribe_mailto")
    @classmethod
    def _mailto(cls, value: str | None) -> str | None:
        if value is not None:
            if not value.startswith("mailto:"):
                raise ValueError("unsubscribe_mailto must start with mailto:")
            _check_placeholders(value)
        return value

    def sender(self) -> Sender:
        return Sender(self.name, self.address, self.postal_address, self.unsubscribe_url, self.unsubscribe_mailto)


def _check_placeholders(value: str) -> None:
    try:
        value.format(token="t", lead_id="l", message_id="m")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"unknown placeholder {exc}; use {{token}}, {{lead_id}} or {{message_id}}") from exc


class FrequencyCap(Spec):
    """At most ``emails`` nurture emails per lead in any ``per_days`` days, across all tracks."""

    emails: Annotated[int, Field(ge=1)]
    per_days: Annotated[float, Field(gt=0)]


class Pacing(Spec):
    """How fast nurture email goes out, so that a first run at 640k emails is not one burst: at most
    ``per_minute`` messages a minute over SMTP, ``daily`` per sender and ``per_domain_daily`` per
    recipient domain per day (``domains`` overrides it for named domains) in the portfolio's time
    zone. What a cap holds back is sent in later runs, oldest due first."""

    per_minute: Annotated[float, Field(gt=0)] | None = None
    daily: Annotated[int, Field(ge=1)] | None = None
    per_domain_daily: Annotated[int, Field(ge=1)] | None = None
    domains: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)

    def domain_cap(self, domain: str) -> int | None:
        return self.domains.get(domain.lower(), self.per_domain_daily)


class SendWindow(Spec):
    """When nurture email may go out, in the portfolio's time zone; ``end`` is exclusive."""

    days: Annotated[list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]], Field(min_length=1)] = Field(
        default_factory=lambda: list(DAYS)
    )
    start: time = time(0, 0)
    end: time | None = None  # None: until midnight

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end {self.end} must come after start {self.start} (windows stay within a day)")
        return self

    def next_open(self, at: datetime, zone: ZoneInfo) -> datetime:
        """``at`` itself when inside the window, else when the window next opens (UTC)."""
        local = at.astimezone(zone)
        for opens, closes in self._days(local, zone, 1):
            if local < closes:
                return max(opens, local).astimezone(at.tzinfo)
        raise AssertionError("a window with at least one day opens within a week")

    def last_open(self, at: datetime, zone: ZoneInfo) -> datetime:
        """``at`` itself when inside the window, else the window's last minute before it (the demo
        dates its run there, so that it shows nurture email on a Friday evening too)."""
        local = at.astimezone(zone)
        for opens, closes in self._days(local, zone, -1):
            if local >= opens:
                return min(local, closes - timedelta(minutes=1)).astimezone(at.tzinfo)
        raise AssertionError("a window with at least one day was open within a week")

    def _days(self, local: datetime, zone: ZoneInfo, step: int) -> Iterator[tuple[datetime, datetime]]:
        """``(opens, closes)`` of the window on each of its days from ``local``'s, a week forward or back."""
        for offset in range(8):
            day = (local + timedelta(days=step * offset)).date()
            if DAYS[day.weekday()] in self.days:
                closes = datetime.combine(day + timedelta(days=1), time(0), zone)
                yield (
                    datetime.combine(day, self.start, zone),
                    datetime.combine(day, self.end, zone) if self.end else closes,
                )


class Entry(Spec):
    """Who enters a track automatically: journeys of ``product_line`` matching every given test."""

    product_line: str
    stages: list[str] | None = None
    bands: list[str] | None = None
    score_below: float | None = None
    qualification_not_reached: str | None = None
    consent: Literal["email"] = "email"


class Exit(Spec):
    """Why an enrolment ends early. Unsubscribes, bounces and withdrawn consent always end it."""

    score_at_least: float | None = None
    qualification_reached: str | None = None
    converted: bool = True
    stage_changed: bool = False
    unsubscribed: Literal[True] = True
    bounced: Literal[True] = True


class Branch(Spec):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    if_: Literal["opened", "clicked"] = Field(alias="if")
    then: int | str
    else_: int | str = Field(alias="else")


class Variant(Spec):
    """One template of an A/B test and its share (weights are relative: 1 and 1 split in halves)."""

    template: TemplateName
    weight: Annotated[float, Field(gt=0)] = 1.0


class Step(OneOf):
    """Exactly one of: ``email: TEMPLATE``, ``variants: [{template, weight}, …]`` (an email whose
    template is drawn per enrolment by weight: an A/B test), ``wait: 3d``, ``audience: NAME`` (add),
    ``leave_audience: NAME`` (remove), ``branch: {if: opened|clicked, then: STEP, else: STEP}``; ``name``
    labels it so a branch can jump to it (a branch may also give a step's index, or ``end``)."""

    choices = ("email", "variants", "wait", "audience", "leave_audience", "branch")
    one_of_message = "a step has exactly one of {choices}; got {given}"

    name: str | None = None
    email: TemplateName | None = None
    variants: Annotated[list[Variant], Field(min_length=2)] | None = None
    wait: str | None = None
    audience: str | None = None
    leave_audience: str | None = None
    branch: Branch | None = None

    @field_validator("wait")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @property
    def kind(self) -> str:
        """``email`` for both kinds of email step (``variants`` are the templates it draws from)."""
        return "email" if self.variants else super().kind

    @property
    def templates(self) -> list[str]:
        return [v.template for v in self.variants] if self.variants else [self.email] if self.email else []


class Reentry(Spec):
    after_days: Annotated[float, Field(gt=0)]


class TrackSpec(Spec):
    entry: Entry
    steps: Annotated[list[Step], Field(min_length=1)]
    exit: Exit = Field(default_factory=Exit)
    reentry: Literal["never", "always"] | Reentry = "never"
    # Share of the leads entering the track held out: recorded as enrolled and at once ended
    # (``exit_reason`` holdout), never emailed: the control group the report measures uplift against.
    holdout: Annotated[float, Field(ge=0, lt=1)] = 0.0

    @field_validator("reentry", mode="before")
    @classmethod
    def _reentry(cls, value: Any) -> Any:
        if not (value in ("never", "always") or isinstance(value, dict)):
            raise ValueError(f"re-entry is never, always or {{after_days: N}}; got {value!r}")
        return value

    @model_validator(mode="after")
    def _branch_targets(self) -> Self:
        """Branches jump forward only (to a step index or name), so every enrolment reaches an end."""
        problems: list[InitErrorDetails] = []
        names = [step.name for step in self.steps]
        seen: set[str] = set()
        for index, step in enumerate(self.steps):
            if step.name is not None:
                if step.name == "end":
                    problems.append(_placed(("steps", index, "name"), "'end' names the end of the track", step.name))
                if step.name in seen:
                    problems.append(
                        _placed(("steps", index, "name"), f"step name {step.name!r} is used twice", step.name)
                    )
                seen.add(step.name)
            if step.branch is None:
                continue
            for key, target in (("then", step.branch.then), ("else", step.branch.else_)):
                position = self.target(target) if target == "end" or target in names else target
                if not isinstance(position, int):
                    problems.append(_placed(("steps", index, "branch", key), f"no step named {target!r}", target))
                elif not index < position <= len(self.steps):
                    problems.append(
                        _placed(
                            ("steps", index, "branch", key),
                            f"a branch jumps forward: to a step after {index} (or {len(self.steps)}, the end)",
                            target,
                        )
                    )
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self

    def target(self, value: int | str) -> int:
        """A branch target: a step index, a step name, or ``end``."""
        if isinstance(value, int):
            return value
        return len(self.steps) if value == "end" else [step.name for step in self.steps].index(value)


class TrackingSpec(Spec):
    """Open pixel and click redirects in nurture email, answered by the service at ``base_url``."""

    base_url: str

    @field_validator("base_url")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("the tracking base URL must be https://")
        return value


class NurtureSpec(Spec):
    sender: SenderSpec | None = None
    tracking: TrackingSpec | None = None
    content: dict[str, ContentSlot] = Field(default_factory=dict)  # web content slots (``nurture.content``)
    frequency_cap: FrequencyCap | None = None
    pacing: Pacing = Field(default_factory=Pacing)
    soft_bounces: Annotated[int, Field(ge=1)] = 3  # soft bounces that suppress like a hard one (nurture.events)
    send_window: SendWindow = Field(default_factory=SendWindow)
    audiences: dict[str, Any] = Field(default_factory=dict)  # validated by nurture.audiences
    exclusions: dict[str, Any] = Field(default_factory=dict)  # validated by nurture.exclusions
    tracks: dict[str, TrackSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _sender_for_tracks(self) -> Self:
        if self.tracks and self.sender is None:
            raise ValueError(
                "tracks send email: declare nurture.sender (name, address, postal_address, unsubscribe_url)"
            )
        return self


def load_nurture(portfolio: Portfolio, mailer: Mailer | None = None) -> NurtureSpec:
    """Validate the portfolio's ``nurture:`` section and check it against the portfolio and templates."""
    path, node = Path(portfolio.path), portfolio.node
    spec = nurture_section(portfolio)
    problems = _cross_check(spec, portfolio, node)
    mailer = mailer or Mailer.for_portfolio(path)
    templates = sorted({name for track in spec.tracks.values() for step in track.steps for name in step.templates})
    if spec.sender is not None and templates:
        try:
            validate_templates(mailer, templates, sample_context("nurture", spec.sender.sender()))
        except MailError as exc:
            problems += [
                ("nurture.tracks", line_of(node, ["nurture", "tracks"]), f"{file}{f':{line}' if line else ''}: {msg}")
                for file, line, msg in exc.problems
            ]
    if problems:
        raise SpecError(path, problems)
    return spec


def nurture_section(portfolio: Portfolio) -> NurtureSpec:
    """The ``nurture:`` section alone, without the cross-checks and template renders of ``load_nurture``:
    for callers that only need a setting of it (the owner alerts' sender), not a run's full check."""
    return validate_part(Path(portfolio.path), portfolio.node, portfolio.spec.nurture, NurtureSpec, at=("nurture",))


def _cross_check(spec: NurtureSpec, portfolio: Portfolio, node: Any) -> list[tuple[str, int | None, str]]:
    problems: list[tuple[str, int | None, str]] = []

    def problem(loc: list[str | int], message: str) -> None:
        dotted = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
        problems.append((dotted, line_of(node, loc), message))

    try:
        ZoneInfo(portfolio.spec.timezone)
    except (KeyError, ValueError):
        problem(["timezone"], f"unknown time zone {portfolio.spec.timezone!r}")
    for name, track in spec.tracks.items():
        at: list[str | int] = ["nurture", "tracks", name]
        entry = track.entry
        line = portfolio.product_lines.get(entry.product_line)
        if line is None:
            problem(
                [*at, "entry", "product_line"],
                f"unknown product line {entry.product_line!r}; known: {sorted(portfolio.product_lines)}",
            )
            continue
        stage_names = [stage.name for stage in line.stages]
        bands = {band for stage in line.stages for band in stage.bands.ranges}
        for stage in entry.stages or []:
            if stage not in stage_names:
                problem([*at, "entry", "stages"], f"unknown stage {stage!r}; stages: {stage_names}")
        for band in entry.bands or []:
            if band not in bands:
                problem([*at, "entry", "bands"], f"unknown band {band!r}; bands: {sorted(bands)}")
        for loc, qualification in (
            (["entry", "qualification_not_reached"], entry.qualification_not_reached),
            (["exit", "qualification_reached"], track.exit.qualification_reached),
        ):
            if qualification is not None and qualification not in line.spec.qualifications:
                problem(
                    [*at, *loc], f"unknown qualification {qualification!r}; known: {sorted(line.spec.qualifications)}"
                )
        for index, step in enumerate(track.steps):
            audience = step.audience or step.leave_audience
            if audience is not None and audience not in spec.audiences:
                problem(
                    [*at, "steps", index, step.kind],
                    f"unknown audience {audience!r}; declare it under nurture.audiences",
                )
    for slot_name, slot in spec.content.items():
        for index, variant in enumerate(slot.variants):
            at = ["nurture", "content", slot_name, "variants", index, "when"]
            if variant.when is None:
                problem(at, "a variant needs when: (only the default has none)")
            elif variant.when.product_line not in portfolio.product_lines:
                known = sorted(portfolio.product_lines)
                problem([*at, "product_line"], f"unknown product line {variant.when.product_line!r}; known: {known}")
    return problems
