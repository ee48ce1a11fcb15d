"""Leads and accounts: upserted on their id only when their content changes; ``key`` is assigned once by
the database. Both are "a row of known fields plus free attributes", so they share the row model's chunk
steps (``_RecordSteps``: the reference path). CSV leads take the columnar fast path (``_ColumnarSteps``,
checks in ``lead_columns``, stored keys and values read by ``lead_keys``) which hands the row model every
row its checks do not accept, inserts new leads in one set-based append and merges stored ones with the
same ``_merged``; the side effects (erasure, interests, visitor claims) go through the same functions on
both paths."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel, TypeAdapter
from sqlalchemy import Connection, Engine, Table, func, select

from store.account_tables import Account
from store.bulk import insert_ignore, json_text, upsert
from store.bulk_indexes import indexes_deferred
from store.ingest.csv_chunks import CsvChunk
from store.ingest.lead_columns import CLAIMS, STORED, TIME_FIELDS, CheckedLeads, LeadColumns
from store.ingest.lead_keys import KEYS, appended_keys, claim, stored_frame, stored_keys
from store.ingest.lookup import lookup
from store.ingest.reading import Progress, Raw, Records, is_csv
from store.ingest.report import IngestReport, RepeatedIds
from store.ingest.rows import ACCOUNTS, LEADS, AccountRow, LeadRow
from store.ingest.skeleton import Ingestion, run_chunks
from store.ingest.split import Splitter, split_lead
from store.ingest.staging import merge_ignoring_stored
from store.ingest.validation import NUL_REASON, NulCharacter, refuse_nul, validate
from store.tables import Lead, to_micros
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


@dataclass
class _Accepted:
    """A chunk's accepted row of one id: the row, attributes set, attribute names cleared, fields present
    in the row, product lines of interest (leads only) and the row's position in the chunk."""

    model: BaseModel
    attributes: dict[str, Any]
    cleared: set[str]
    present: set[str]
    lines: list[str]
    position: int


_Latest = dict[str, _Accepted]  # by id, in the file order of each id's last row (the last row wins)


@dataclass
class _RecordSteps:
    """The row model for every row: the reference path (and the path of accounts and JSON Lines)."""

    kind: _Kind
    csv_values: bool
    product_lines: set[str] | None
    splitter: Splitter
    erased: Erased | None = None

    def prepare(self, rows: list[Raw], run: Ingestion) -> _Latest:
        return self.accept(rows, range(len(rows)), run)

    def accept(self, rows: list[Raw], positions: Iterable[int], run: Ingestion) -> _Latest:
        """The row model for ``rows`` at ``positions``: rejects the bad ones, returns the last accepted row
        of each id."""
        kept: list[int] = []
        items: list[dict[str, Any]] = []
        extras: list[tuple[dict[str, Any], set[str]]] = []
        for position in positions:
            fields, attributes, cleared = split_lead(self.splitter, rows[position].raw, self.csv_values)
            try:
                refuse_nul(attributes)  # the row model sees the fields only
            except NulCharacter as exc:
                run.rejects.add(rows[position], exc.field, NUL_REASON)
                continue
            kept.append(position)
            items.append(fields)
            extras.append((attributes, cleared))
        positions = kept
        good, bad = validate(self.kind.adapter, items)
        for index, (field_name, reason) in sorted(bad.items()):
            run.rejects.add(rows[positions[index]], field_name, reason)

        latest: _Latest = {}
        accepted: list[str] = []
        product_lines = self.product_lines
        id_name = self.kind.id_name
        for index, model in good:
            row = rows[positions[index]]
            attributes, cleared = extras[index]
            present = set(model.model_fields_set)
            erased = None if self.erased is None else self.erased.match(model.lead_id, model.email)
            if erased is not None and self.erased is not None:
                if self.erased.policy == "refuse":
                    run.rejects.add(row, erased, ERASED_REASON, redact=True)
                    continue
                when = model.unsubscribed_at or datetime.now(UTC)
                model = model.model_copy(update={"email_opt_in": False, "ads_opt_in": False, "unsubscribed_at": when})
                present.update(_SUPPRESSED)
            lines = _interest_lines(attributes) if self.kind is _LEADS else []
            unknown = [ln for ln in lines if product_lines is not None and ln not in product_lines]
            if unknown:
                known = ", ".join(sorted(product_lines or ())) or "none"
                run.rejects.add(row, "product_interest", f"unknown product line(s) {unknown}; known: {known}")
                continue
            run.report.accepted += 1
            identifier = getattr(model, id_name)
            accepted.append(identifier)
            latest.pop(identifier, None)  # keep file order: the last row of an id wins
            latest[identifier] = _Accepted(model, attributes, cleared, present, lines, positions[index])
        if run.ids is not None:
            run.ids.add(accepted)
        return latest

    def write(self, conn: Connection, latest: _Latest, now: datetime, run: Ingestion) -> None:
        kind = self.kind
        stored = _stored(conn, kind, list(latest))
        inserts, updates = _changes(kind, latest, stored, now)
        run.report.inserted += insert_ignore(conn, kind.table, [row for _, row in inserts])
        run.report.updated += _update(conn, kind, updates)
        if kind is _LEADS:
            lines, visitors = _claims(latest)
            wanted = pl.concat([lines["lead_id"], visitors["lead_id"]]).unique().sort().to_list()
            claim(run, lines, visitors, stored_keys(conn, wanted, now)).write(conn)


def _stored(conn: Connection, kind: _Kind, ids: list[str]) -> dict[str, Any]:
    """The stored rows of these ids, by id."""
    table = kind.table
    return {row._mapping[kind.id_name]: row._mapping for row in lookup(conn, table.c[kind.id_name], ids, list(table.c))}


def _changes(
    kind: _Kind, latest: _Latest, stored: dict[str, Any], now: datetime
) -> tuple[list[tuple[int, dict[str, Any]]], list[dict[str, Any]]]:
    """The rows to insert (in file order, with their chunk position) and the stored rows whose content
    changes."""
    inserts: list[tuple[int, dict[str, Any]]] = []
    updates: list[dict[str, Any]] = []
    for identifier, entry in latest.items():
        old = stored.get(identifier)
        if old is None:
            values = {name: kind.value(entry.model, name) for name in kind.fields}
            inserts.append(
                (entry.position, {**values, "attributes": entry.attributes, "created_at": now, "updated_at": now})
            )
            continue
        given = {name: kind.value(entry.model, name) for name in entry.present - {kind.id_name}}
        if (changed := _merged(kind, old, given, entry.attributes, entry.cleared, now)) is not None:
            updates.append(changed)
    return inserts, updates


def _merged(
    kind: _Kind, old: Any, given: dict[str, Any], attributes: dict[str, Any], cleared: set[str], now: datetime
) -> dict[str, Any] | None:
    """A stored row with a file row's ``given`` fields and attributes applied (sticky times keep the
    earliest), or None when its content would not change."""
    values = {name: old[name] for name in kind.content}
    values.update(given)
    for name in kind.sticky_times:
        values[name] = _merge_time(old[name], values[name])
    merged = {k: v for k, v in dict(old["attributes"] or {}).items() if k not in cleared}
    merged.update(attributes)
    values["attributes"] = merged
    if all(values[name] == old[name] for name in kind.content):
        return None
    return {kind.id_name: old[kind.id_name], **values, "updated_at": now}


def _update(conn: Connection, kind: _Kind, updates: list[dict[str, Any]]) -> int:
    content = kind.content
    return upsert(conn, kind.table, updates, [kind.id_name], [*content, "updated_at"], compare_cols=content)


def _claims(latest: _Latest) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The row model's leads' product lines of interest and claimed visitors, as ``CLAIMS`` pairs."""
    lines = [(lead_id, line) for lead_id, entry in latest.items() for line in entry.lines]
    visitors = [
        (lead_id, anonymous_id)
        for lead_id, entry in latest.items()
        for anonymous_id in _listed(entry.attributes.get("anonymous_ids"))
    ]
    return (
        pl.DataFrame(lines, schema=CLAIMS, orient="row"),
        pl.DataFrame(visitors, schema=CLAIMS, orient="row"),
    )


@dataclass
class _Prepared:
    """A checked chunk: the rows the columns accepted and the row model's leads (the other rows)."""

    checked: CheckedLeads
    latest: _Latest


@dataclass
class _ColumnarSteps:
    """The fast path for CSV leads: columnar checks, the row model only for the rows they leave, new
    leads appended in one set-based insert; stored leads merged like the reference's. Until a chunk
    meets a stored lead the chunks are appended first and only the leads the append skipped are read
    back (a first load looks nothing up); from then on the stored leads are looked up first (a
    re-ingest appends nothing)."""

    reference: _RecordSteps
    columns: LeadColumns
    look_up_first: bool = False

    def prepare(self, chunk: list[Raw] | CsvChunk, run: Ingestion) -> _Prepared:
        checked, slow = self.columns.split(chunk)
        run.report.accepted += len(checked.positions)
        if run.ids is not None:
            run.ids.add(checked.lead_ids)
        row_of = chunk.row if isinstance(chunk, CsvChunk) else chunk.__getitem__
        slow_rows = [row_of(position) for position in slow]
        latest = self.reference.accept(slow_rows, range(len(slow_rows)), run)
        for entry in latest.values():  # positions in the chunk, to merge the new leads in file order
            entry.position = slow[entry.position]
        return _Prepared(checked, latest)

    def write(self, conn: Connection, prepared: _Prepared, now: datetime, run: Ingestion) -> None:
        checked, latest = prepared.checked, prepared.latest
        modelled_stored = _stored(conn, _LEADS, list(latest))
        inserts, updates = _changes(_LEADS, latest, modelled_stored, now)
        present = sorted(checked.present)
        new = checked.frame.with_columns(position=pl.Series(checked.positions, dtype=pl.Int64))
        old = stored_frame(conn, checked.lead_ids, present) if self.look_up_first else None
        if old is not None:
            new = new.filter(pl.col("lead_id").is_in(old["lead_id"].to_list()).not_())
        modelled = [_stored_form(row, position) for position, row in inserts]
        if modelled:
            new = pl.concat([new, pl.DataFrame(modelled, schema=new.schema, orient="row")]).sort("position")
        stamp = pl.lit(to_micros(now), dtype=pl.Int64)
        frame = _without_empty_columns(new.drop("position").with_columns(created_at=stamp, updated_at=stamp))
        last_key = conn.execute(select(func.coalesce(func.max(_LEAD_TABLE.c.key), 0))).scalar_one()
        inserted = merge_ignoring_stored(conn, _LEAD_TABLE, frame, fresh=True)  # type: ignore[arg-type]
        run.report.inserted += inserted
        new_keys = appended_keys(conn, frame["lead_id"], inserted, last_key, now)
        if old is None:  # appended first: the leads it skipped are stored ones
            skipped = checked.frame.filter(pl.col("lead_id").is_in(new_keys["lead_id"].to_list()).not_())["lead_id"]
            old = stored_frame(conn, skipped.to_list(), present)
            self.look_up_first = not old.is_empty()
        if not old.is_empty():  # only the leads whose content the merge changes are read whole
            changing = checked.changing(old)
            lead_ids = checked.lead_ids
            stored = _stored(conn, _LEADS, [lead_ids[n] for n in changing])
            for n, (given, attributes, cleared) in zip(changing, checked.merge_inputs(changing), strict=True):
                if (changed := _merged(_LEADS, stored[lead_ids[n]], given, attributes, cleared, now)) is not None:
                    updates.append(changed)
        run.report.updated += _update(conn, _LEADS, updates)
        keys = pl.concat([old.select(list(KEYS)), stored_keys(conn, list(modelled_stored), now), new_keys])
        lines, visitors = _claims(latest)
        lines, visitors = pl.concat([lines, checked.lines]), pl.concat([visitors, checked.visitors])
        claim(run, lines, visitors, keys.with_columns(pl.col("at").fill_null(to_micros(now)))).write(conn)


def _without_empty_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """The columns that hold a value: a column the file does not fill is NULL by default, and binding
    NULLs costs SQLite's insert about as much as the values it stores (a file names 5 of the 16 fields)."""
    if frame.is_empty():
        return frame
    return frame.select([column.name for column in frame.get_columns() if column.null_count() < frame.height])


def _stored_form(values: dict[str, Any], position: int) -> dict[str, Any]:
    """A row model's new lead in the columns' form (``lead_columns.SCHEMA``: epoch microseconds, JSON text)."""
    row = {name: values[name] for name in STORED}
    for name in TIME_FIELDS:
        row[name] = None if row[name] is None else to_micros(row[name])
    row["attributes"] = json_text(row["attributes"])
    return {**row, "position": position}


def ingest_leads(
    engine: Engine,
    path: Path | Records,
    *,
    product_lines: set[str] | None = None,
    chunk_size: int = 50_000,
    progress: Progress | None = None,
    erased: Erased | None = None,
    row_by_row: bool = False,
) -> IngestReport:
    """Upsert leads on ``lead_id``; ``key`` is assigned once by the database and never changes.

    A column present in the file sets the field (an empty cell clears it, except the sticky
    ``unsubscribed_at``/``bounced_at``); a column absent from the file (or a key absent from a JSON
    line) keeps the stored value. Unknown columns are free ``attributes``, kept as text from CSV.
    A lead whose stored content would not change is not written, so re-ingesting reports 0/0.
    Within one chunk a repeated ``lead_id`` keeps its last row. A row of an ``erased`` person (by lead id
    or email) is refused without keeping its content, or stored suppressed, as the portfolio's
    ``privacy: after_erasure`` says. CSV rows are checked as columns (the row model only for the rows
    those checks leave) and new leads appended in one set-based insert; ``row_by_row`` takes the
    reference path the columnar one is tested against (every row through the row model; same results).
    """
    reference = _RecordSteps(_LEADS, is_csv(path), product_lines, Splitter(_LEADS.fields), erased)
    steps: _RecordSteps | _ColumnarSteps = reference
    if is_csv(path) and not row_by_row:
        lines = None if product_lines is None else frozenset(product_lines)
        steps = _ColumnarSteps(reference, LeadColumns(lines, erased))
    with indexes_deferred(engine, "leads", [] if isinstance(path, Records) else [Path(path)]):
        return run_chunks(
            engine,
            path,
            "leads",
            _LEAD_TABLE,
            steps,  # type: ignore[arg-type]
            chunk_size=chunk_size,
            progress=progress,
            stamped=("lead_id", "updated_at"),
            ids=RepeatedIds("lead_id", "the last one wins"),
            columnar_csv=steps is not reference,
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
