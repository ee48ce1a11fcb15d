"""Validation of a chunk of split rows in one pydantic call, with messages phrased for the person who
fixes the file."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

# Per field, how to say that a value is not one of the allowed ones (the allowed list in words).
Hints = Mapping[str, Callable[[Any], str]]

# PostgreSQL text and jsonb hold no NUL: a row with one is refused on every database, so the store is the same.
NUL_REASON = "contains a NUL character (\\x00), which the database cannot store"
NO_NUL = r"^[^\x00]*$"  # a ``StringConstraints`` pattern, checked in pydantic-core


class NulCharacter(ValueError):
    """A NUL inside a value a row model passes on whole (event properties); ``field`` names the column
    it came from (an extra column's own name, not ``properties``), printable."""

    def __init__(self, field: str) -> None:
        super().__init__(NUL_REASON)
        self.field = field.replace("\x00", "\\x00")


def holds_nul(value: Any) -> bool:
    """Whether text, or any key or text inside a JSON value, contains a NUL."""
    if value.__class__ is str:
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in key or holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(holds_nul(item) for item in value)
    return False


def refuse_nul(values: Mapping[str, Any]) -> None:
    """Raise ``NulCharacter`` for the first key whose name or value holds a NUL."""
    for key, value in values.items():
        if "\x00" in key or holds_nul(value):
            raise NulCharacter(key)


def readable(error: Any, hints: Hints) -> str:
    """Pydantic's message, phrased for the person who fixes the file."""
    message, kind, value = str(error["msg"]), error["type"], error.get("input")
    loc = error["loc"]
    if isinstance(value, str) and "\x00" in value:  # whatever else is wrong with it, the NUL is what to fix
        return NUL_REASON
    if kind in ("literal_error", "none_required") and len(loc) > 1 and str(loc[1]) in hints:
        return hints[str(loc[1])](value)
    if message.startswith("Value error, "):
        return message[len("Value error, ") :]
    if kind == "missing" or (kind == "string_type" and value is None):
        return "required"
    if kind == "string_too_short":
        return "must not be empty"
    if kind in ("bool_parsing", "bool_type"):
        return f"expected true/false/yes/no/1/0, got {value!r}"
    if kind == "string_type":
        return f"expected text, got {type(value).__name__} {value!r}"
    return message[:1].lower() + message[1:]


def validate(
    adapter: TypeAdapter[Any],
    items: list[dict[str, Any]],
    hints: Hints | None = None,
) -> tuple[list[tuple[int, Any]], dict[int, tuple[str | None, str]]]:
    """Validate a chunk in one call; on errors drop the failing items and validate the rest again.

    Returns ``(index, model)`` for good items and ``index → (field, reason)`` for bad ones (the first
    failing field names the reject; the reason lists every problem of the row).
    """
    alive = list(range(len(items)))
    bad: dict[int, tuple[str | None, str]] = {}
    while alive:
        try:
            models = adapter.validate_python([items[i] for i in alive])
        except ValidationError as exc:
            problems: dict[int, list[tuple[str | None, str]]] = {}
            for error in exc.errors(include_url=False):
                loc = error["loc"]
                position = loc[0] if loc and isinstance(loc[0], int) else None
                if position is None:  # not an item error: cannot happen for list[Model], keep it loud
                    raise
                cause = error.get("ctx", {}).get("error")
                name = cause.field if isinstance(cause, NulCharacter) else str(loc[1]) if len(loc) > 1 else None
                problems.setdefault(alive[position], []).append((name, readable(error, hints or {})))
            for index, found in problems.items():
                first_field = found[0][0]
                if len(found) == 1:
                    bad[index] = (first_field, found[0][1])
                else:
                    bad[index] = (first_field, "; ".join(f"{n or 'row'}: {r}" for n, r in found))
            alive = [i for i in alive if i not in problems]
            continue
        return list(zip(alive, models, strict=True)), bad
    return [], bad


def event_hints(event_types: frozenset[str], product_lines: set[str] | frozenset[str] | None) -> Hints:
    types = ", ".join(sorted(event_types))
    lines = ", ".join(sorted(product_lines or ())) or "none"
    return {
        "type": lambda value: (
            f"unknown event type {value!r}; allowed: {types} (declare custom types under event_types: in the portfolio)"
        ),
        "product_line": lambda value: f"unknown product line {value!r}; known: {lines}",
    }
