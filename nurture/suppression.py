"""Reading a suppression file: a CSV of ``lead_id`` or ``email`` values to unsubscribe at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stages.spec import EMAIL
from store.csvfile import open_csv


@dataclass(frozen=True)
class Reject:
    line: int
    field: str
    value: str
    reason: str


@dataclass(frozen=True)
class SuppressionFile:
    """``column`` is ``lead_id`` or ``email``; ``values`` are ``(line, value)``; emails are lower-cased."""

    column: str
    values: list[tuple[int, str]]
    rejects: list[Reject]


def read_suppression_file(path: Path) -> SuppressionFile:
    """Rows with an empty or malformed value are rejected with their line; a file with neither a
    ``lead_id`` nor an ``email`` column is an error (``ValueError``)."""
    with open_csv(path) as (names, rows):
        lowered = [name.lower() for name in names]
        column = "lead_id" if "lead_id" in lowered else "email" if "email" in lowered else None
        if column is None:
            raise ValueError(f"{path}: needs a lead_id or an email column; the header has {names}")
        position = lowered.index(column)
        values: list[tuple[int, str]] = []
        rejects: list[Reject] = []
        for row in rows:
            if row.error:
                rejects.append(Reject(row.line, column, ",".join(row.values), row.error))
                continue
            value = row.values[position].strip()
            if not value:
                rejects.append(Reject(row.line, column, value, f"empty {column}"))
            elif column == "email" and not EMAIL.fullmatch(value):
                rejects.append(Reject(row.line, column, value, "not an email address"))
            else:
                values.append((row.line, value.lower() if column == "email" else value))
    return SuppressionFile(column, values, rejects)
