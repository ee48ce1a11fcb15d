"""Splitting a read row into model fields and the rest (lead attributes, event properties)."""

from __future__ import annotations

from typing import Any

from store.ingest.reading import NUMBER, number

# (cell position, model field or None for a property, column name) for each column of a CSV header.
CsvPlan = list[tuple[int, str | None, str]]


class Splitter:
    """Splits a row into model fields and the rest, with the column → field mapping cached per name
    (a CSV file repeats the same names on every row; header case is forgiven: ``Email`` is ``email``).
    """

    def __init__(self, fields: frozenset[str]) -> None:
        self.fields = fields
        self.roles: dict[str, str | None] = {}

    def role(self, name: str) -> str | None:
        role = self.roles.get(name, "")
        if role == "":
            lowered = name.strip().lower()
            role = self.roles[name] = lowered if lowered in self.fields else None
        return role


def split_lead(
    splitter: Splitter, data: dict[str, Any], csv_values: bool
) -> tuple[dict[str, Any], dict[str, Any], set[str]]:
    """Model fields (blank → None: present and cleared), attributes to set, attribute names cleared."""
    fields: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    cleared: set[str] = set()
    nested = None if csv_values else data.get("attributes")
    for name, value in data.items():
        if isinstance(value, str):
            value = value.strip() or None
        role = splitter.role(name)
        if role is not None:
            fields[role] = value
        elif name == "attributes" and isinstance(nested, dict):
            continue
        elif value is None:
            cleared.add(name)
        else:
            attributes[name] = value
    if isinstance(nested, dict):
        attributes = {**nested, **attributes}
    return fields, attributes, cleared


def split_event(splitter: Splitter, data: dict[str, Any]) -> dict[str, Any]:
    """A JSON object's model fields and extra properties (its other keys); nulls and blanks dropped."""
    fields: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    roles = splitter.roles
    for name, value in data.items():
        if value.__class__ is str:
            value = value.strip()
            if not value:
                continue
        elif value is None:
            continue
        role = roles.get(name, "")
        if role == "":
            role = splitter.role(name)
        if role is not None:
            fields[role] = value
        else:
            extra[name] = value
    if extra:
        fields["extra"] = extra
    return fields


def csv_plan(splitter: Splitter, names: list[str]) -> CsvPlan:
    """(cell position, model field or None for a property, column name) for a CSV header."""
    return [(position, splitter.role(name), name) for position, name in enumerate(names)]


def split_event_cells(plan: CsvPlan, values: list[str]) -> dict[str, Any]:
    """A CSV row's model fields and extra properties, by cell position (no per-row dict); blank cells
    dropped. An extra cell that looks like a JSON number becomes a number (durations, points); "0123"
    stays text."""
    fields: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    matches = NUMBER.match
    for position, role, name in plan:
        value = values[position].strip()
        if not value:
            continue
        if role is not None:
            fields[role] = value
        elif matches(value):
            extra[name] = number(value)
        else:
            extra[name] = value
    if extra:
        fields["extra"] = extra
    return fields
