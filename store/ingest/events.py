"""Events: immutable facts, inserted once per ``event_id`` with their lead's key, promoted properties
and the machine-activity flag."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import TypeAdapter
from sqlalchemy import Connection, Engine, Table

from store.bulk import insert_ignore
from store.change_log import counted_per_lead
from store.db import GrowingTable
from store.identity_tables import ANONYMOUS_EVENTS
from store.ingest.columns import AcceptedEvents, EventColumns
from store.ingest.csv_chunks import CsvChunk
from store.ingest.event_stores import STORED, Stores, flag_machine, none_stored, stored_deliveries, stored_ids
from store.ingest.lookup import LeadKeys
from store.ingest.machine import DEFAULT_PROXY_AGENTS, MachineDetector, MachineRule
from store.ingest.properties import promoted_properties
from store.ingest.reading import Progress, Raw, Records
from store.ingest.report import IngestReport, RepeatedIds
from store.ingest.rows import EVENT_FIELDS, EventRow, event_row_adapter
from store.ingest.skeleton import FILE_TRANSACTION_ROWS, Ingestion, run_chunks
from store.ingest.split import CsvPlan, Splitter, csv_plan, split_event, split_event_cells
from store.ingest.staging import Encoded, encoded, merge_ignoring_stored
from store.ingest.stored_events import staged, stored_columns
from store.ingest.validation import Hints, event_hints, validate
from store.ingest.visitors import Visitors
from store.tables import Event, from_micros, to_micros
from store.tombstones import ERASED_REASON, Erased

_EVENT_TABLE = Event.__table__
# Rows per chunk (one transaction): each commit rewrites the events B-tree pages the chunk touched, and a
# chunk of lead-clustered rows touches pages all over the table, so fewer, larger commits cost less
# (measured, 1M events: 3.1 CPU s of commits at 50k rows per chunk, 1.0 at 200k).
EVENT_CHUNK = 200_000
# Fewer records than this (the service's single events, gathered a few dozen at a time) take the row
# model's path: the columnar path's set-up (Polars expressions, regexes, frames) costs ≈ 3 ms a call
# whatever its size, the row model ≈ 13 µs a row (measured: 30 rows 0.4 ms vs 3.6 ms; even at 300).
SMALL_RECORDS = 200


def _refuse_unknown(run: Ingestion, row: Raw, lead_id: str, erased: Erased | None) -> None:
    """An event of no stored lead: an erased person's is refused without keeping its content."""
    if erased is not None and erased.match(lead_id) is not None:
        run.rejects.add(row, "lead_id", ERASED_REASON, redact=True)
    else:
        run.rejects.add(row, "lead_id", f"unknown lead_id {lead_id!r} (ingest leads first)")


@dataclass
class _RowByRowSteps:
    """The reference path: one row model and one event dict per row, ``INSERT … ON CONFLICT`` per chunk.
    Kept as what the columnar path is tested against."""

    adapter: TypeAdapter[list[EventRow]]
    hints: Hints
    detector: MachineDetector
    splitter: Splitter = field(default_factory=lambda: Splitter(EVENT_FIELDS))
    plan_names: list[str] | None = None
    plan: CsvPlan = field(default_factory=list)
    lead_keys: LeadKeys = field(default_factory=LeadKeys)
    erased: Erased | None = None

    def prepare(self, rows: list[Raw], run: Ingestion) -> list[tuple[Raw, EventRow]]:
        items: list[dict[str, Any]] = []
        for row in rows:
            if row.data is not None:
                items.append(split_event(self.splitter, row.data))
            else:
                if row.names is not self.plan_names:
                    self.plan_names, self.plan = row.names, csv_plan(self.splitter, row.names or [])
                items.append(split_event_cells(self.plan, row.values or []))
        good, bad = validate(self.adapter, items, self.hints)
        for index, (field_name, reason) in sorted(bad.items()):
            run.rejects.add(rows[index], field_name, reason)
        return [(rows[index], model) for index, model in good]

    def write(self, conn: Connection, good: list[tuple[Raw, EventRow]], now: datetime, run: Ingestion) -> None:
        lead_keys = self.lead_keys.resolve(conn, (m.lead_id for _, m in good if m.lead_id is not None))
        events: list[dict[str, Any]] = []
        explicit: list[bool] = []
        visitors = Visitors()
        for row, model in good:
            message_id = model.message_id
            if message_id is None:
                promoted = model.properties.get("message_id")
                if promoted is not None and promoted != "":
                    message_id = str(promoted)
            values = _values(
                model.occurred_at, model.event_id, model.type, model.product_line, model.machine, message_id,
                model.properties, now,
            )  # fmt: skip
            if model.lead_id is None:
                visitors.event(model.anonymous_id, values)  # type: ignore[arg-type]
                continue
            key = lead_keys.get(model.lead_id)
            if key is None:
                _refuse_unknown(run, row, model.lead_id, self.erased)
                continue
            events.append({"lead_key": key, **values})
            explicit.append(model.machine is not None)
            if model.anonymous_id is not None:
                visitors.link(model.anonymous_id, key, model.occurred_at)
            if model.product_line is not None:
                run.interests.add(key, model.product_line, model.occurred_at)
        run.report.accepted += len(events) + len(visitors.events)
        if run.ids is not None:
            run.ids.add([event["event_id"] for event in events + visitors.events])
        times = [to_micros(event["occurred_at"]) for event in events]
        late = self.detector.run(events, times, explicit, lambda ids: stored_deliveries(conn, ids))
        # File order, one statement per chunk: of a repeated event_id the first row is kept.
        inserted = insert_ignore(conn, _EVENT_TABLE, events)  # type: ignore[arg-type]
        inserted += visitors.write(conn)
        _note_stored(run, [event["event_id"] for event in events + visitors.events], inserted)
        if late:
            run.report.updated += flag_machine(conn, late)


def _note_stored(run: Ingestion, tried: list[str], inserted: int) -> None:
    """Adds ``inserted`` to the report; when every row the chunk tried to store was inserted, they are
    exactly the ids it wrote (the skeleton need not look them up for a ``Records`` report)."""
    run.report.inserted += inserted
    if inserted == len(tried):
        run.stored = tried


@dataclass
class _CheckedEvents:
    """A chunk's accepted events and what is worked out of them before the chunk's transaction (in the
    thread that checks the next chunk while this one is written): each row's lead key (None: a visitor's
    event or an unknown lead), the positions of the rows of a stored lead, the event ids of earlier rows
    of this file to flag as machine activity now, and every row in stored form but ``ingested_at``
    (``stored_events.stored_columns`` with its ``lead_key`` and final ``machine`` flag)."""

    accepted: AcceptedEvents
    keys: list[int | None]
    known: list[int]
    first: list[int]  # the positions among ``known`` of each event_id's first row (the one kept, as documented)
    first_ids: list[str]  # and their ids
    late: list[str]
    stored: pl.DataFrame
    # The rows of a stored lead stamped and encoded for the merge when none seemed stored (a first load).
    fresh: Encoded | None


@dataclass
class _ColumnarSteps:
    """The fast path: columnar validation, column-wise event values, a staged append and one merge.

    ``prepare`` reads the store on a connection of its own (lead keys, stored deliveries): it runs in
    the thread that checks the next chunk while this one's transaction writes, and what it reads was
    committed before (a delivery of the chunk being written is in the detector's memory already).
    ``back_to_back``: each ``prepare`` runs right before its ``write``, no chunk of this ingestion
    written in between (``Records``: one chunk, no thread ahead); a probe of ``prepare`` that found none
    of the chunk's ids stored then stands for the write's (a service call: one round trip less)."""

    engine: Engine
    columns: EventColumns
    detector: MachineDetector
    lead_keys: LeadKeys = field(default_factory=LeadKeys)
    erased: Erased | None = None
    back_to_back: bool = False
    stage: Table | None = None  # a SQLite back-fill's staging table (``event_stage``): written instead of events

    @property
    def stores(self) -> Stores:
        return STORED if self.stage is None else (_EVENT_TABLE, self.stage)

    def prepare(self, rows: list[Raw] | CsvChunk, run: Ingestion) -> _CheckedEvents:
        accepted = self.columns.accept(rows, run.rejects.add)
        stored, with_message = stored_columns(accepted, self.detector)
        with self.engine.connect() as conn:
            named = [lead_id for lead_id in accepted.lead_id if lead_id is not None]
            lead_keys = self.lead_keys.resolve(conn, named)
            keys = list(map(lead_keys.get, accepted.lead_id))  # no lead_id (a visitor's event): None
            key_column = pl.Series("lead_key", keys, dtype=pl.Int64)
            machine, late = self._machine(conn, accepted, stored["machine"], with_message & key_column.is_not_null())
            known = key_column.is_not_null().arg_true().to_list()
            known_ids = stored["event_id"].gather(known)
            fresh = bool(known) and none_stored(conn, known_ids, self.stores)
        if run.ids is not None:  # the visitors' ids are added by ``write``
            run.ids.add(known_ids)
        firsts = known_ids.is_first_distinct()
        stored = stored.with_columns(key_column, machine)
        self._interests(stored, run)
        ready = None
        if fresh:
            ready = encoded(self.engine.dialect.name, _EVENT_TABLE, staged(stored, known, run.now))  # type: ignore[arg-type]
        first = known if firsts.all() else pl.Series(known).filter(firsts).to_list()
        return _CheckedEvents(accepted, keys, known, first, known_ids.filter(firsts).to_list(), late, stored, ready)

    def write(self, conn: Connection, checked: _CheckedEvents, now: datetime, run: Ingestion) -> None:
        accepted, keys, known = checked.accepted, checked.keys, checked.known
        visitors = self._visitors(accepted, keys, now)
        if len(known) + len(visitors.events) < len(keys):
            for i, key in enumerate(keys):
                if key is None and accepted.lead_id[i] is not None:
                    _refuse_unknown(run, accepted.row(i), accepted.lead_id[i], self.erased)
        run.report.accepted += len(known) + len(visitors.events)
        if run.ids is not None:
            run.ids.add([row["event_id"] for row in visitors.events])
        look_up = not (self.back_to_back and checked.fresh is not None)
        new, new_ids = _new_rows(conn, checked, look_up, self.stores)
        inserted = 0
        if new:  # fresh: ``_new_rows`` dropped repeated and stored ids (the odd one its probe missed is merged)
            every = checked.fresh is not None and len(new) == len(known)  # the rows encoded ahead are the ones
            rows = checked.fresh if every else staged(checked.stored, new, now)
            if self.stage is not None:  # no change log there: the merge counts the rows it brings to events
                inserted = merge_ignoring_stored(conn, self.stage, rows, fresh=True)
            else:
                frame = rows.frame if isinstance(rows, Encoded) else rows
                with counted_per_lead(conn, frame["lead_key"]):
                    inserted = merge_ignoring_stored(conn, _EVENT_TABLE, rows, fresh=True)  # type: ignore[arg-type]
        inserted += visitors.write(conn)
        _note_stored(run, new_ids + [row["event_id"] for row in visitors.events], inserted)
        if checked.late:
            run.report.updated += flag_machine(conn, checked.late, self.stores)

    def _machine(
        self, conn: Connection, accepted: AcceptedEvents, machine: pl.Series, email: pl.Series
    ) -> tuple[pl.Series, list[str]]:
        """Each row's machine flag (by position) and the event ids of earlier rows of this file to flag
        now: the ``email`` rows (a stored lead's, with a message id) go through the detector; the others'
        flags are ``machine`` as ``stored_columns`` settled them."""
        positions = email.arg_true().to_list()
        if not positions:
            return machine, []
        rows = [
            {
                "event_id": accepted.event_id[i],
                "type": accepted.type[i],
                "message_id": accepted.message_id[i],
                "properties": accepted.properties[i],
                "machine": bool(accepted.machine[i]),
            }
            for i in positions
        ]
        times = [accepted.at[i] for i in positions]
        explicit = [accepted.machine[i] is not None for i in positions]
        late = self.detector.run(rows, times, explicit, lambda ids: stored_deliveries(conn, ids, self.stores))
        return machine.clone().scatter(positions, [row["machine"] for row in rows]), late

    @staticmethod
    def _interests(stored: pl.DataFrame, run: Ingestion) -> None:
        """Each (lead, product line) pair's first time, kept by Polars: a pair shows up many times in a
        chunk and in the chunks after it, and only its minimum matters. Taken from the stored-form
        columns (``stored_columns`` with ``lead_key``), not rebuilt from the accepted rows' lists."""
        frame = stored.select(key="lead_key", line="product_line", at="occurred_at").drop_nulls()
        if not frame.is_empty():
            run.interests.add_frame(frame)

    @staticmethod
    def _visitors(accepted: AcceptedEvents, keys: list[int | None], now: datetime) -> Visitors:
        """The chunk's anonymous events (rows without a lead) and links (rows with both ids): few, and all
        validated by the row model (the columnar checks send any ``anonymous_id`` there)."""
        visitors = Visitors()
        for i, anonymous_id in enumerate(accepted.anonymous_id):
            if anonymous_id is None:
                continue
            at = from_micros(accepted.at[i])
            if accepted.lead_id[i] is None:
                visitors.event(
                    anonymous_id,
                    _values(
                        at, accepted.event_id[i], accepted.type[i], accepted.product_line[i], accepted.machine[i],
                        accepted.message_id[i], accepted.properties[i], now,
                    ),
                )  # fmt: skip
            elif keys[i] is not None:
                visitors.link(anonymous_id, keys[i], at)  # type: ignore[arg-type]
        return visitors


def _new_rows(conn: Connection, checked: _CheckedEvents, look_up: bool, stores: Stores) -> tuple[list[int], list[str]]:
    """``checked.first`` and ``first_ids`` but the stored ids (``look_up`` False: a probe just found none
    stored; one it missed is skipped by the merge). A re-ingest stops here."""
    first, first_ids = checked.first, checked.first_ids
    stored = stored_ids(conn, first_ids, stores) if look_up else None
    kept = [n for n, event_id in enumerate(first_ids) if event_id not in stored] if stored else None
    return (first, first_ids) if kept is None else ([first[n] for n in kept], [first_ids[n] for n in kept])


def _values(
    at: datetime,
    event_id: str,
    kind: str,
    product_line: str | None,
    machine: bool | None,
    message_id: str | None,
    properties: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """An event's stored columns but its owner (``lead_key`` or ``anonymous_id``)."""
    return {
        "occurred_at": at,
        "event_id": event_id,
        "type": kind,
        "product_line": product_line,
        "machine": bool(machine),
        "message_id": message_id,
        "properties": properties,
        "ingested_at": now,
        **promoted_properties(properties),
    }


def ingest_events(
    engine: Engine,
    path: Path | Records,
    *,
    event_types: set[str] | frozenset[str],
    product_lines: set[str] | None = None,
    machine_window_seconds: float = 2.0,
    proxy_user_agents: tuple[str, ...] = DEFAULT_PROXY_AGENTS,
    chunk_size: int = EVENT_CHUNK,
    progress: Progress | None = None,
    row_by_row: bool = False,
    erased: Erased | None = None,
    lead_keys: LeadKeys | None = None,
    growth: GrowingTable | None = None,
    transaction_rows: int = FILE_TRANSACTION_ROWS,
    stage: Table | None = None,
) -> IngestReport:
    """Insert events (ignore an ``event_id`` already stored: events are immutable).

    The lead must already exist (``lead_id`` → ``lead_key`` is looked up per chunk). ``message_id`` is
    promoted from the properties when the row has no column for it; CSV columns that are not event
    fields become properties. An explicit ``machine`` value on the row wins over detection.
    ``row_by_row`` takes the reference path the columnar one is tested against (same results, slower).
    An event of an ``erased`` person is refused without keeping its content. ``lead_keys`` and
    ``growth`` (the events table's statistics upkeep) may be kept across calls by a caller that
    ingests again and again (the service); by default each call has its own. ``transaction_rows``: on
    SQLite, a file's chunks are written in transactions of at least this many rows (``run_chunks``).
    ``stage``: a SQLite back-fill's staging table (``event_stage.EventStage``), attached to ``engine``'s
    connections: accepted rows go there, and the checks see it as part of the store (columnar path only).
    """
    types = frozenset(event_types)
    lines = None if product_lines is None else frozenset(product_lines)
    detector = MachineDetector(MachineRule(machine_window_seconds, proxy_user_agents))
    adapter, hints = event_row_adapter(types, lines), event_hints(types, product_lines)
    steps: _RowByRowSteps | _ColumnarSteps
    small = isinstance(path, Records) and len(path.items) < SMALL_RECORDS
    if stage is not None and (row_by_row or small):
        raise ValueError("only the columnar path stages events")
    if row_by_row or small:
        steps = _RowByRowSteps(adapter, hints, detector, lead_keys=lead_keys or LeadKeys(), erased=erased)
    else:
        columns = EventColumns(adapter, hints, types, lines, Splitter(EVENT_FIELDS))
        steps = _ColumnarSteps(
            engine, columns, detector, lead_keys=lead_keys or LeadKeys(), erased=erased,
            back_to_back=isinstance(path, Records), stage=stage,
        )  # fmt: skip
    repeated = RepeatedIds("event_id", "events are immutable: the first one is kept")
    return run_chunks(
        engine,
        path,
        "events",
        _EVENT_TABLE,
        steps,  # type: ignore[arg-type]
        chunk_size=chunk_size,
        progress=progress,
        stamped=("event_id", "ingested_at"),
        ids=repeated,
        also_written_to=(ANONYMOUS_EVENTS,),
        columnar_csv=not row_by_row,
        growth=growth,
        first_halved=True,
        transaction_rows=transaction_rows,
    )
