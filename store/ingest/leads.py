"""Leads and accounts: upserted on their id only when their content changes; ``key`` is assigned once by
the database. Both are "a row of known fields plus free attributes", so they share one set of chunk steps."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter
from sqlalchemy import Connection, Engine, Table

from store.account_tables import Account
from store.bulk import insert_ignore, upsert
from store.ingest.lookup import lookup
from store.ingest.reading import Progress, Raw, Records, is_csv
from store.ingest.report import IngestReport, RepeatedIds
from store.ingest.rows import ACCOUNTS, LEADS, AccountRow, LeadRow
from store.ingest.skeleton import Ingestion, run_chunks
from store.ingest.split import Splitter, split_lead
from store.ingest.validation import validate
from store.ingest.visitors import Visitors
from store.tables import Lead
from store.tombstones import ERASED_REASON, Erased

_LEAD_TABLE = Lead.__table__
_LEAD_FLAGS = frozenset({"email_opt_in", "ads_opt_in"})
_SPLIT_LINES = re.compile(r"[,;]")
_SUPPRESSED = ("email_opt_in", "ads_opt_in", "unsubscribed_at")


def _interest_lines(attributes: dict[str, Any]) -> list[str]:
    return _listed(attributes.get("product_interest"))


def _listed(value: Any) -> list[str]:
    """A list attribute: a JSON list, or text separated by commas or semicolons; blanks and repeats dropped."""
    if value is None:
        return []
    parts = value if isinstance(value, list) else _SPLIT_LINES.split(str(value))
    seen: dict[str, None] = {}
    for part in parts:
        text = str(part).strip()
        if text:
            seen[text] = None
    return list(seen)


@dataclass(frozen=True)
class _Kind:
    """What differs between leads and accounts: the row model, the table, the id and the sticky times."""

    name: str
    adapter: TypeAdapter[Any]
    fields: frozenset[str]
    table: Table
    id_name: str
    content: list[str]
    sticky_times: tuple[str, ...] = ()

    def value(self, model: BaseModel, name: str) -> Any:
        value = getattr(model, name)
        return bool(value) if name in _LEAD_FLAGS else value


def _kind(name: str, adapter: TypeAdapter[Any], row: type[BaseModel], table: Any, sticky: tuple[str, ...]) -> _Kind:
    id_name = next(iter(row.model_fields))
    content = [field for field in row.model_fields if field != id_name] + ["attributes"]
    return _Kind(name, adapter, frozenset(row.model_fields), table, id_name, content, sticky)


_LEADS = _kind("leads", LEADS, LeadRow, _LEAD_TABLE, ("unsubscribed_at", "bounced_at"))
_ACCOUNTS = _kind("accounts", ACCOUNTS, AccountRow, Account.__table__, ())


def _merge_time(old: datetime | None, new: datetime | None) -> datetime | None:
    """Suppression times are sticky: a file never clears them, the earliest known time wins."""
    if old is None or new is None:
        return old or new
    return min(old, new)


# A chunk's accepted rows by id: the row, attributes set, attribute names cleared, fields
# present in the row, product lines of interest (leads only).
_Latest = dict[str, tuple[BaseModel, dict[str, Any], set[str], set[str], list[str]]]


@dataclass
class _RecordSteps:
    kind: _Kind
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
        good, bad = validate(self.kind.adapter, items)
        for index, (field_name, reason) in sorted(bad.items()):
            run.rejects.add(rows[index], field_name, reason)

        latest: _Latest = {}
        accepted: list[str] = []
        product_lines = self.product_lines
        id_name = self.kind.id_name
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
            lines = _interest_lines(attributes) if self.kind is _LEADS else []
            unknown = [ln for ln in lines if product_lines is not None and ln not in product_lines]
            if unknown:
                known = ", ".join(sorted(product_lines or ())) or "none"
                run.rejects.add(rows[index], "product_interest", f"unknown product line(s) {unknown}; known: {known}")
                continue
            run.report.accepted += 1
            identifier = getattr(model, id_name)
            accepted.append(identifier)
            latest.pop(identifier, None)  # keep file order: the last row of an id wins
            latest[identifier] = (model, attributes, cleared, present, lines)
        if run.ids is not None:
            run.ids.add(accepted)
        return latest

    def write(self, conn: Connection, latest: _Latest, now: datetime, run: Ingestion) -> None:
        kind = self.kind
        table, id_name, content = kind.table, kind.id_name, kind.content
        found = lookup(conn, table.c[id_name], list(latest), list(table.c))
        stored = {row._mapping[id_name]: row._mapping for row in found}
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for identifier, (model, attributes, cleared, present, _lines) in latest.items():
            old = stored.get(identifier)
            if old is None:
                values = {name: kind.value(model, name) for name in kind.fields}
                values["attributes"] = attributes
                inserts.append({**values, "created_at": now, "updated_at": now})
                continue
            values = {name: old[name] for name in content}
            for name in present - {id_name}:
                values[name] = kind.value(model, name)
            for name in kind.sticky_times:
                values[name] = _merge_time(old[name], values[name])
            merged = {k: v for k, v in dict(old["attributes"] or {}).items() if k not in cleared}
            merged.update(attributes)
            values["attributes"] = merged
            if any(values[name] != old[name] for name in content):
                updates.append({id_name: identifier, **values, "updated_at": now})
        run.report.inserted += insert_ignore(conn, table, inserts)
        run.report.updated += upsert(conn, table, updates, [id_name], [*content, "updated_at"], compare_cols=content)
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
        _link_visitors(conn, latest, now)


def _link_visitors(conn: Connection, latest: _Latest, now: datetime) -> None:
    """A lead row's ``anonymous_ids`` (list column) claims those visitors for the lead, from its arrival on."""
    claimed = {lead_id: ids for lead_id, entry in latest.items() if (ids := _listed(entry[1].get("anonymous_ids")))}
    if not claimed:
        return
    visitors = Visitors()
    columns = [_LEAD_TABLE.c.lead_id, _LEAD_TABLE.c.key, _LEAD_TABLE.c.created_at]
    for lead_id, key, created_at in lookup(conn, _LEAD_TABLE.c.lead_id, list(claimed), columns):
        for anonymous_id in claimed[lead_id]:
            visitors.link(anonymous_id, key, created_at or now, source="lead row")
    visitors.write(conn)


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
    steps = _RecordSteps(_LEADS, is_csv(path), product_lines, Splitter(_LEADS.fields), erased)
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


def ingest_accounts(
    engine: Engine, path: Path | Records, *, chunk_size: int = 50_000, progress: Progress | None = None
) -> IngestReport:
    """Upsert accounts on ``account_id`` exactly as ``ingest_leads`` upserts leads: a column present sets
    the field (blank clears it), unknown columns are free ``attributes``, an unchanged row is not written."""
    steps = _RecordSteps(_ACCOUNTS, is_csv(path), None, Splitter(_ACCOUNTS.fields))
    return run_chunks(
        engine,
        path,
        "accounts",
        _ACCOUNTS.table,
        steps,
        chunk_size=chunk_size,
        progress=progress,  # type: ignore[arg-type]
        stamped=("account_id", "updated_at"),
        ids=RepeatedIds("account_id", "the last one wins"),
    )
