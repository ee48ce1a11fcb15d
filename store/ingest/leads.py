"""Leads: upserted on ``lead_id`` only when their content changes; ``key`` is assigned once by the database."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from store.bulk import insert_ignore, upsert
from store.ingest.lookup import lookup
from store.ingest.reading import Progress, Raw, Records, is_csv
from store.ingest.report import IngestReport, RepeatedIds
from store.ingest.rows import LEAD_FIELDS, LEADS, LeadRow
from store.ingest.skeleton import Ingestion, run_chunks
from store.ingest.split import Splitter, split_lead
from store.ingest.validation import validate
from store.tables import Lead
from store.tombstones import ERASED_REASON, Erased

_LEAD_TABLE = Lead.__table__
_LEAD_FLAGS = frozenset({"email_opt_in", "ads_opt_in"})
_LEAD_CONTENT = [name for name in LeadRow.model_fields if name != "lead_id"] + ["attributes"]
_SPLIT_LINES = re.compile(r"[,;]")
_SUPPRESSED = ("email_opt_in", "ads_opt_in", "unsubscribed_at")


def _interest_lines(attributes: dict[str, Any]) -> list[str]:
    value = attributes.get("product_interest")
    if value is None:
        return []
    parts = value if isinstance(value, list) else _SPLIT_LINES.split(str(value))
    seen: dict[str, None] = {}
    for part in parts:
        text = str(part).strip()
        if text:
            seen[text] = None
    return list(seen)


def _lead_value(model: LeadRow, name: str) -> Any:
    value = getattr(model, name)
    return bool(value) if name in _LEAD_FLAGS else value


def _merge_time(old: datetime | None, new: datetime | None) -> datetime | None:
    """Suppression times are sticky: a file never clears them, the earliest known time wins."""
    if old is None or new is None:
        return old or new
    return min(old, new)


# A chunk's accepted leads by lead_id: the row, attributes set, attribute names cleared, fields
# present in the row, product lines of interest.
_Latest = dict[str, tuple[LeadRow, dict[str, Any], set[str], set[str], list[str]]]


@dataclass
class _LeadSteps:
    csv_values: bool
    product_lines: set[str] | None
    splitter: Splitter
    erased: Erased | None = None

    def prepare(self, rows: list[Raw], run: Ingestion) -> _Latest:
        items: list[dict[str, Any]] = []
        extras: list[tuple[dict[str, Any], set[str]]] = []
        for row in rows:
            fields, attributes, cleared = split_lead(self.splitter, row.raw, self.csv_values)
            items.append(fields)
            extras.append((attributes, cleared))
        good, bad = validate(LEADS, items)
        for index, (field_name, reason) in sorted(bad.items()):
            run.rejects.add(rows[index], field_name, reason)

        latest: _Latest = {}
        accepted: list[str] = []
        product_lines = self.product_lines
        for index, model in good:
            attributes, cleared = extras[index]
            present = set(model.model_fields_set)
            erased = None if self.erased is None else self.erased.match(model.lead_id, model.email)
            if erased is not None and self.erased is not None:
                if self.erased.policy == "refuse":
                    run.rejects.add(rows[index], erased, ERASED_REASON, redact=True)
                    continue
                when = model.unsubscribed_at or datetime.now(UTC)
                model = model.model_copy(update={"email_opt_in": False, "ads_opt_in": False, "unsubscribed_at": when})
                present.update(_SUPPRESSED)
            lines = _interest_lines(attributes)
            unknown = [ln for ln in lines if product_lines is not None and ln not in product_lines]
            if unknown:
                known = ", ".join(sorted(product_lines or ())) or "none"
                run.rejects.add(rows[index], "product_interest", f"unknown product line(s) {unknown}; known: {known}")
                continue
            run.report.accepted += 1
            accepted.append(model.lead_id)
            latest.pop(model.lead_id, None)  # keep file order: the last row of a lead wins
            latest[model.lead_id] = (model, attributes, cleared, present, lines)
        if run.ids is not None:
            run.ids.add(accepted)
        return latest

    def write(self, conn: Connection, latest: _Latest, now: datetime, run: Ingestion) -> None:
        stored = {
            row.lead_id: row._mapping for row in lookup(conn, _LEAD_TABLE.c.lead_id, list(latest), list(_LEAD_TABLE.c))
        }
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for lead_id, (model, attributes, cleared, present, _lines) in latest.items():
            old = stored.get(lead_id)
            if old is None:
                values = {name: _lead_value(model, name) for name in LEAD_FIELDS}
                values["attributes"] = attributes
                inserts.append({**values, "created_at": now, "updated_at": now})
                continue
            values = {name: old[name] for name in _LEAD_CONTENT}
            for name in present - {"lead_id"}:
                values[name] = _lead_value(model, name)
            values["unsubscribed_at"] = _merge_time(old["unsubscribed_at"], values["unsubscribed_at"])
            values["bounced_at"] = _merge_time(old["bounced_at"], values["bounced_at"])
            merged = {k: v for k, v in dict(old["attributes"] or {}).items() if k not in cleared}
            merged.update(attributes)
            values["attributes"] = merged
            if any(values[name] != old[name] for name in _LEAD_CONTENT):
                updates.append({"lead_id": lead_id, **values, "updated_at": now})
        run.report.inserted += insert_ignore(conn, _LEAD_TABLE, inserts)  # type: ignore[arg-type]
        run.report.updated += upsert(
            conn,
            _LEAD_TABLE,  # type: ignore[arg-type]
            updates,
            ["lead_id"],
            [*_LEAD_CONTENT, "updated_at"],
            compare_cols=_LEAD_CONTENT,
        )
        with_lines = [lead_id for lead_id, entry in latest.items() if entry[4]]
        if with_lines:
            keyed = lookup(
                conn,
                _LEAD_TABLE.c.lead_id,
                with_lines,
                [_LEAD_TABLE.c.lead_id, _LEAD_TABLE.c.key, _LEAD_TABLE.c.created_at],
            )
            for lead_id, key, created_at in keyed:
                for line in latest[lead_id][4]:
                    run.interests.add(key, line, created_at or now)


def ingest_leads(
    engine: Engine,
    path: Path | Records,
    *,
    product_lines: set[str] | None = None,
    chunk_size: int = 50_000,
    progress: Progress | None = None,
    erased: Erased | None = None,
) -> IngestReport:
    """Upsert leads on ``lead_id``; ``key`` is assigned once by the database and never changes.

    A column present in the file sets the field (an empty cell clears it, except the sticky
    ``unsubscribed_at``/``bounced_at``); a column absent from the file (or a key absent from a JSON
    line) keeps the stored value. Unknown columns are free ``attributes``, kept as text from CSV.
    A lead whose stored content would not change is not written, so re-ingesting reports 0/0.
    Within one chunk a repeated ``lead_id`` keeps its last row. A row of an ``erased`` person (by lead id
    or email) is refused without keeping its content, or stored suppressed, as the portfolio's
    ``privacy: after_erasure`` says.
    """
    steps = _LeadSteps(is_csv(path), product_lines, Splitter(LEAD_FIELDS), erased)
    return run_chunks(
        engine,
        path,
        "leads",
        _LEAD_TABLE,
        steps,
        chunk_size=chunk_size,
        progress=progress,  # type: ignore[arg-type]
        stamped=("lead_id", "updated_at"),
        ids=RepeatedIds("lead_id", "the last one wins"),
    )
