"""The row models a lead, an event and a CRM stage update must pass, wherever they come from (a file,
the HTTP service). Rows are normalised while they are split into fields (strings stripped; blank cells
dropped for events, ``None`` for leads so that a blank clears the stored value), so most fields
validate in pydantic-core without a Python call: only timestamps, emails and the portfolio checks run
Python."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    create_model,
    field_validator,
)

from store.ingest.reading import NUMBER, loads, number
from store.ingest.validation import NO_NUL, NUL_REASON, NulCharacter, holds_nul, refuse_nul
from store.tables import PROMOTED_NUMBER_PROPERTIES

_EMAIL = re.compile(r"^[^@\s\x00,;<>()\[\]\"]+@[^@\s\x00,;<>()\[\]\"]+\.[^@\s\x00,;<>()\[\]\".]{2,}$")


def _timestamp(value: Any) -> datetime | None:
    """ISO-8601 with an offset or ``Z``, normalised to UTC. A naive time is refused: guessing a zone
    shifts every event of the file by hours. (Pydantic's own parser also takes Unix numbers.)"""
    if value is None or isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        if "\x00" in value:  # ``fromisoformat`` reads up to a trailing NUL and ignores the rest
            raise ValueError(NUL_REASON)
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not an ISO-8601 timestamp: {value!r}") from None
    else:
        raise ValueError(f"expected an ISO-8601 timestamp string, got {type(value).__name__}")
    if parsed is None:
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"timezone missing in {value!r}: add an offset such as +00:00 or Z")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is before the first representable UTC time
        raise ValueError(f"{value!r} is out of range once converted to UTC") from None


def _email(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected an email address string, got {type(value).__name__}")
    lowered = value.lower()
    if not _EMAIL.match(lowered):
        raise ValueError(f"value is not a valid email address: {value!r} (expected name@domain.tld)")
    return lowered


OptEmail = Annotated[str | None, BeforeValidator(_email)]
OptTime = Annotated[datetime | None, BeforeValidator(_timestamp)]
Time = Annotated[datetime, BeforeValidator(_timestamp)]
Text = Annotated[str, StringConstraints(pattern=NO_NUL)]  # every text field: PostgreSQL stores no NUL
Identifier = Annotated[str, StringConstraints(min_length=1, pattern=NO_NUL)]
_ROW_CONFIG = ConfigDict(extra="ignore", coerce_numbers_to_str=True)  # a JSON zip code 12345 is text


class LeadRow(BaseModel):
    """A lead as it arrives; every column not named here is a free attribute (kept beside the model).
    Flags accept true/false/yes/no/1/0 (pydantic's lax booleans); blank means false."""

    model_config = _ROW_CONFIG

    lead_id: Identifier
    email: OptEmail = None
    first_name: Text | None = None
    last_name: Text | None = None
    phone: Text | None = None
    company: Text | None = None
    city: Text | None = None
    state: Text | None = None
    zip: Text | None = None
    country: Text | None = None
    owner_email: OptEmail = None
    email_opt_in: bool | None = False
    ads_opt_in: bool | None = False
    unsubscribed_at: OptTime = None
    bounced_at: OptTime = None
    account_id: Text | None = None


def event_properties(value: Any, extra: dict[str, Any] | None, kind: str | None) -> dict[str, Any]:
    """An event's properties: a JSON object (or JSON text of one) plus the row's extra columns; checks
    manual_adjustment. Shared by the row model and the columnar fast path, so both accept the same."""
    suspect = True
    if value is None:
        value = {}
    elif isinstance(value, str):
        suspect = "\\u0000" in value  # how JSON text spells a NUL (a raw one is not valid JSON)
        try:
            value = loads(value)
        except ValueError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"must be a JSON object, got {type(value).__name__}")
    if suspect and holds_nul(value):
        raise NulCharacter("properties")
    if extra:
        refuse_nul(extra)
        value = {**value, **extra}
    if kind == "manual_adjustment":
        points = value.get("points")
        if isinstance(points, str) and NUMBER.match(points.strip()):
            points = number(points.strip())
            value = {**value, "points": points}
        if not isinstance(points, int | float) or isinstance(points, bool):
            raise ValueError(f"manual_adjustment needs a numeric 'points' property, got {points!r}")
        reason = value.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("manual_adjustment needs a non-empty 'reason' property")
    _check_finite(value)
    return value


def _check_finite(properties: dict[str, Any]) -> None:
    """The number properties rules add up must be finite: one ``inf`` would poison every later score."""
    for key in PROMOTED_NUMBER_PROPERTIES:
        value = properties.get(key)
        if value is None or value == "" or isinstance(value, bool):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue  # not a number at all: stored as text, rules see no number
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise ValueError(f"{key} must be a finite number, got {value!r}")


class EventRow(BaseModel):
    """An event as it arrives; ``extra`` holds the row's other columns, merged into ``properties``.

    ``type`` and ``product_line`` are free text here: ``ingest_events`` validates with a subclass
    restricted to the portfolio's lists (``Literal`` fields checked inside pydantic-core, which is
    measurably faster than a Python validator per row), see ``event_row_adapter``."""

    model_config = _ROW_CONFIG

    event_id: Identifier
    anonymous_id: Identifier | None = None  # a website visitor not known as a lead (yet)
    lead_id: Identifier | None = Field(default=None, validate_default=True)
    type: Identifier
    occurred_at: Time
    product_line: Text | None = None
    machine: bool | None = None
    message_id: Text | None = None
    extra: Any = Field(default=None, repr=False)
    properties: Any = Field(default=None, validate_default=True)

    @field_validator("properties", mode="before")
    @classmethod
    def _properties(cls, value: Any, info: ValidationInfo) -> dict[str, Any]:
        return event_properties(value, info.data.get("extra"), info.data.get("type"))

    @field_validator("lead_id")
    @classmethod
    def _someone(cls, value: str | None, info: ValidationInfo) -> str | None:
        """An event is about a lead or an anonymous visitor (both: the visitor is that lead, see ``identify``)."""
        if value is None and info.data.get("anonymous_id") is None:
            raise ValueError("required (or anonymous_id for a visitor not known as a lead)")
        return value


LEADS = TypeAdapter(list[LeadRow])


@lru_cache(maxsize=32)
def event_row_adapter(event_types: frozenset[str], product_lines: frozenset[str] | None) -> TypeAdapter[list[EventRow]]:
    """A list-of-rows validator whose ``type`` (and ``product_line``, when the lines are known) only
    accept the portfolio's values."""
    overrides: dict[str, Any] = {"type": (Literal[tuple(sorted(event_types))], ...)}
    if product_lines is not None:
        allowed = Literal[tuple(sorted(product_lines))] | None if product_lines else None
        overrides["product_line"] = (allowed, None)
    row = create_model("PortfolioEventRow", __base__=EventRow, **overrides)
    return TypeAdapter(list[row])  # type: ignore[valid-type]


class StageUpdateRow(BaseModel):
    """A CRM stage change: the lead, the product line, the stage it is now in, since when, and who said so."""

    model_config = _ROW_CONFIG

    lead_id: Identifier
    product_line: Identifier
    stage: Identifier
    changed_at: Time
    source: Text | None = None


STAGE_UPDATES = TypeAdapter(list[StageUpdateRow])


def _domain(value: Any) -> str | None:
    """A company's web domain, lower-cased, without scheme, ``www.``, path or ``@``: ``acme.com``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected a domain such as acme.com, got {type(value).__name__}")
    text = re.sub(r"^[a-z]+://", "", value.strip().lower()).split("/")[0].lstrip("@")
    text = text.removeprefix("www.")
    if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", text):
        raise ValueError(f"not a domain: {value!r} (expected e.g. acme.com)")
    return text


class AccountRow(BaseModel):
    """An account (company) as it arrives; every other column is a free attribute. ``owner`` is the
    account owner's email (who gets the account alerts); ``domain`` links leads without an account_id."""

    model_config = _ROW_CONFIG

    account_id: Identifier
    name: Text | None = None
    domain: Annotated[str | None, BeforeValidator(_domain)] = None
    industry: Text | None = None
    employees: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    region: Text | None = None
    owner: OptEmail = None


ACCOUNTS = TypeAdapter(list[AccountRow])
ACCOUNT_FIELDS = frozenset(AccountRow.model_fields)
LEAD_FIELDS = frozenset(LeadRow.model_fields)
EVENT_FIELDS = frozenset(EventRow.model_fields) - {"extra"}
