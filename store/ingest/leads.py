"""Leads: upserted on ``lead_id`` only when their content changes; ``key`` is assigned once by the database."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine

from store.bulk import json_text, upsert
from store.ingest.lead_columns import TIME_FIELDS, LeadColumns, NewLeads, interest_lines
from store.ingest.lookup import lookup
from store.ingest.reading import Progress, Raw, Records, is_csv
from store.ingest.report import IngestReport, RepeatedIds
from store.ingest.rows import LEAD_FIELDS, LEADS, LeadRow
from store.ingest.skeleton import Ingestion, run_chunks
from store.ingest.split import Splitter, split_lead
from store.ingest.staging import merge_ignoring_stored
from store.ingest.validation import validate
from store.tables import Lead, to_micros

_LEAD_TABLE = Lead.__table__
_LEAD_FLAGS = frozenset({"email_opt_in", "ads_opt_in"})
_LEAD_CONTENT = [name for name in LeadRow.model_fields if name != "lead_id"] + ["attributes"]


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
class _Prepared:
    """A checked chunk: the row model's leads (``latest``, with the chunk position of each lead's last
    row in ``order``) and the rows the columns accepted (``new``)."""

    latest: _Latest
    order: dict[str, int]
    new: NewLeads


@dataclass
class _LeadSteps:
    csv_values: bool
    product_lines: set[str] | None
    splitter: Splitter
    columns: LeadColumns | None  # None: every row through the row model (JSON, or the reference path)

    def prepare(self, rows: list[Raw], run: Ingestion) -> _Prepared:
        new, slow = self.columns.split(rows) if self.columns is not None else (NewLeads(), range(len(rows)))
        run.report.accepted += len(new.positions)
        if run.ids is not None:
            run.ids.add(new.lead_ids)
        latest, order = self._by_model(rows, slow, run)
        return _Prepared(latest, order, new)

    def _by_model(
        self, rows: list[Raw], positions: Iterable[int], run: Ingestion, *, counted: bool = False
    ) -> tuple[_Latest, dict[str, int]]:
        """The row model for ``rows`` at ``positions``: the last accepted row of each lead, by lead_id.
        ``counted``: the rows were counted as accepted already (the columns checked them)."""
        positions = list(positions)
        items: list[dict[str, Any]] = []
        extras: list[tuple[dict[str, Any], set[str]]] = []
        for position in positions:
            fields, attributes, cleared = split_lead(self.splitter, rows[position].raw, self.csv_values)
            items.append(fields)
            extras.append((attributes, cleared))
        good, bad = validate(LEADS, items)
        for index, (field_name, reason) in sorted(bad.items()):
            run.rejects.add(rows[positions[index]], field_name, reason)

        latest: _Latest = {}
        order: dict[str, int] = {}
        accepted: list[str] = []
        product_lines = self.product_lines
        for index, model in good:
            attributes, cleared = extras[index]
            lines = interest_lines(attributes)
            unknown = [ln for ln in lines if product_lines is not None and ln not in product_lines]
            if unknown:
                known = ", ".join(sorted(product_lines or ())) or "none"
                row = rows[positions[index]]
                run.rejects.add(row, "product_interest", f"unknown product line(s) {unknown}; known: {known}")
                continue
            accepted.append(model.lead_id)
            present = set(model.model_fields_set)
            latest.pop(model.lead_id, None)  # keep file order: the last row of a lead wins
            latest[model.lead_id] = (model, attributes, cleared, present, lines)
            order[model.lead_id] = positions[index]
        if not counted:
            run.report.accepted += len(accepted)
            if run.ids is not None:
                run.ids.add(accepted)
        return latest, order

    def write(self, conn: Connection, prepared: _Prepared, now: datetime, run: Ingestion) -> None:
        latest, order, new = prepared.latest, prepared.order, prepared.new
        wanted = [*latest, *new.lead_ids]
        stored = {row.lead_id: row._mapping for row in lookup(conn, _LEAD_TABLE.c.lead_id, wanted, list(_LEAD_TABLE.c))}
        fresh = [n for n, lead_id in enumerate(new.lead_ids) if lead_id not in stored]
        if len(fresh) < len(new.positions):  # checked rows of leads stored by now: compared as updates
            known = [n for n, lead_id in enumerate(new.lead_ids) if lead_id in stored]
            more, more_order = self._by_model(new.rows, known, run, counted=True)
            latest.update(more)
            order.update((lead_id, new.positions[n]) for lead_id, n in more_order.items())
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for lead_id, (model, attributes, cleared, present, _lines) in latest.items():
            old = stored.get(lead_id)
            if old is None:
                values = {name: _lead_value(model, name) for name in LEAD_FIELDS}
                values["attributes"] = attributes
                inserts.append(_stored_form(values, order[lead_id]))
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
        run.report.inserted += _insert(conn, new, fresh, inserts, now)
        run.report.updated += upsert(
            conn,
            _LEAD_TABLE,  # type: ignore[arg-type]
            updates,
            ["lead_id"],
            [*_LEAD_CONTENT, "updated_at"],
            compare_cols=_LEAD_CONTENT,
        )
        with_lines = [lead_id for lead_id, entry in latest.items() if entry[4]]
        with_lines += [new.lead_ids[n] for n in fresh if new.lines[n]]
        lines_of = {new.lead_ids[n]: new.lines[n] for n in fresh}
        if with_lines:
            keyed = lookup(
                conn,
                _LEAD_TABLE.c.lead_id,
                with_lines,
                [_LEAD_TABLE.c.lead_id, _LEAD_TABLE.c.key, _LEAD_TABLE.c.created_at],
            )
            for lead_id, key, created_at in keyed:
                for line in latest[lead_id][4] if lead_id in latest else lines_of[lead_id]:
                    run.interests.add(key, line, created_at or now)


def _stored_form(values: dict[str, Any], position: int) -> dict[str, Any]:
    """A row model's new lead in the form the columns give (epoch microseconds, JSON text)."""
    for name in TIME_FIELDS:
        values[name] = None if values[name] is None else to_micros(values[name])
    values["attributes"] = json_text(values["attributes"])
    return {**values, "position": position}


def _insert(conn: Connection, new: NewLeads, fresh: list[int], inserts: list[dict[str, Any]], now: datetime) -> int:
    """Insert the chunk's new leads in the order of their last row, as the row model alone would: keys
    are assigned in that order."""
    checked = new.frame[fresh].with_columns(position=pl.Series([new.positions[n] for n in fresh], dtype=pl.Int64))
    modelled = pl.DataFrame(inserts, schema=checked.schema, orient="row") if inserts else checked.clear()
    stamp = pl.lit(to_micros(now), dtype=pl.Int64)
    frame = (
        pl.concat([checked, modelled.select(checked.columns)])
        .sort("position")
        .drop("position")
        .with_columns(created_at=stamp, updated_at=stamp)
    )
    return merge_ignoring_stored(conn, _LEAD_TABLE, frame)  # type: ignore[arg-type]


def ingest_leads(
    engine: Engine,
    path: Path | Records,
    *,
    product_lines: set[str] | None = None,
    chunk_size: int = 50_000,
    progress: Progress | None = None,
    row_by_row: bool = False,
) -> IngestReport:
    """Upsert leads on ``lead_id``; ``key`` is assigned once by the database and never changes.

    A column present in the file sets the field (an empty cell clears it, except the sticky
    ``unsubscribed_at``/``bounced_at``); a column absent from the file (or a key absent from a JSON
    line) keeps the stored value. Unknown columns are free ``attributes``, kept as text from CSV.
    A lead whose stored content would not change is not written, so re-ingesting reports 0/0.
    Within one chunk a repeated ``lead_id`` keeps its last row. New leads of a CSV file are checked
    as columns; ``row_by_row`` takes the reference path (every row through the row model) instead.
    """
    lines = None if product_lines is None else frozenset(product_lines)
    columns = LeadColumns(lines) if is_csv(path) and not row_by_row else None
    steps = _LeadSteps(is_csv(path), product_lines, Splitter(LEAD_FIELDS), columns)
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
