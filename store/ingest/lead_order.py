"""A big events CSV file stored in its leads' order instead of its own.

The events table is clustered by ``(lead_key, occurred_at, event_id)`` (SQLite's ``WITHOUT ROWID``
B-tree), and an export's file is in time order: each chunk of 200,000 rows then names most leads, its
inserts land on leaf pages all over the table, and its commit writes every one of them again (a 20M-event
load slowed from ≈ 86k to 20k events per CPU second as the table grew). ``lead_ordered`` reads the whole
file first (the ``csv_chunks`` chunks, line numbers and all), spills each chunk sorted by lead key to a
temporary Parquet run, then hands the rows back range of lead keys by range, sorted by lead key (a lead's
rows in file order), as chunks of the same size: each chunk then appends to a few neighbouring pages
(the write sorts a chunk by the whole clustered key; sorting the file by time and id too, as text, cost
more than it saved).

Only the order changes, never what is stored or reported (lines stay each row's own, for rejects), because
the order matters to an events load only where this keeps it:
- of rows repeating an ``event_id`` the first in the file is kept: every row but the first of a
  repeated id is held back and handed over last, in file order (after all the first ones);
- rows of no stored lead go after the others, in file order;
- visitors' rows (an ``anonymous_id``: links whose first one wins, chunk by chunk) and rows the ``csv``
  path reads (``list[Raw]``, not ``CsvChunk``) end the reordering: what came before them is handed over
  in lead order, they and the rest of the file as read;
- machine-activity detection matches deliveries and opens in either order (``MachineDetector``). The
  report's ``updated`` (opens flagged after they were stored because their delivery came later) may be
  lower, the stored flags are the same. One case differs: when a repeat of an id is an open whose
  delivery comes later in the file, file order flags the id's first (stored) row too; here repeats come
  last, once every delivery is known, and the first row keeps its own flag.

Measured on the 20M-event demo file (README): ten times less written, ≈ 20 % less CPU at 5–6M stored
events; the CPU per event still grows with the table (its indexes and look-ups are not in lead order).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from functools import partial
from itertools import chain
from pathlib import Path

import polars as pl
from sqlalchemy import Engine

from store.ingest.csv_chunks import CsvChunk
from store.ingest.lookup import LeadKeys
from store.ingest.reading import Raw
from store.ingest.rows import EVENT_FIELDS
from store.ingest.split import Splitter

# A file of more rows than this is reordered: into a small store a file of 1M plain events cost 1–2 CPU s
# more in lead order (measured in the README), a daily file is smaller still.
SORT_ROWS = 1_000_000
RANGE_ROWS = 2_000_000  # rows sorted in memory at a time (≈ 0.5 GB of an export's cells)
# Rows a transaction of such a load holds on SQLite (several chunks): in lead order a chunk's rows append
# to the table, but the unique ``event_id`` index takes them all over its pages, and each commit writes
# every page it touched again.
COMMIT_ROWS = 1_000_000
_SAMPLE_EVERY = 97  # one lead key in this many kept to cut the key ranges
_KEY, _LINE = "__lead_key", "__line"

Chunk = CsvChunk | list[Raw]
KeysOf = Callable[[list[str]], dict[str, int]]  # lead ids → their keys (the stored ones; a superset is fine)


def reordering(engine: Engine, lead_keys: LeadKeys, size: int) -> Callable[[Iterator[Chunk]], Iterator[Chunk]]:
    """``lead_ordered`` for ``run_chunks(reorder=…)``, its lead keys looked up (and kept) in ``lead_keys``."""

    def keys_of(lead_ids: list[str]) -> dict[str, int]:
        with engine.connect() as conn:
            return lead_keys.resolve(conn, lead_ids)

    return partial(lead_ordered, keys_of=keys_of, size=size)


def lead_ordered(chunks: Iterator[Chunk], keys_of: KeysOf, size: int) -> Iterator[Chunk]:
    """``chunks`` (``csv_chunks``' of ``size`` rows) in lead order when they hold more than ``SORT_ROWS``
    rows (see the module's docstring); ``keys_of`` looks lead keys up."""
    head: list[Chunk] = []
    rows = 0
    for chunk in chunks:
        head.append(chunk)
        rows += len(chunk)
        if rows > SORT_ROWS:
            break
    else:
        yield from head
        return
    rest = chain(head, chunks)
    with tempfile.TemporaryDirectory(prefix="leadscore-events-") as folder:
        spill: _Spill | None = None
        for chunk in rest:
            if spill is None and isinstance(chunk, CsvChunk):
                spill = _Spill.of(chunk.names, Path(folder), keys_of)
            if spill is None or not isinstance(chunk, CsvChunk) or spill.has_visitors(chunk):
                if spill is not None:
                    yield from spill.ordered(size)
                yield chunk
                yield from rest
                return
            spill.add(chunk)
        yield from spill.ordered(size) if spill is not None else ()


class _Spill:
    """The file's rows so far as Parquet runs, each sorted by lead key (``add``), read back in lead order
    (``ordered``)."""

    def __init__(self, names: list[str], roles: dict[str, str], folder: Path, keys_of: KeysOf) -> None:
        self.names, self.roles, self.folder, self.keys_of = names, roles, folder, keys_of
        self.runs: list[Path] = []
        self.unreadable: list[Raw] = []
        self.ids: list[pl.DataFrame] = []  # each row's event id hash and line: the repeated ids, at the end
        self.sample: list[pl.Series] = []
        self.rows = 0

    @classmethod
    def of(cls, names: list[str], folder: Path, keys_of: KeysOf) -> _Spill | None:
        """A spill for a header that names each of the columns the order needs once (None: keep the file's)."""
        splitter = Splitter(EVENT_FIELDS)
        roles: dict[str, str] = {}
        for name in names:
            role = splitter.role(name)
            if role is not None:
                if role in roles:
                    return None  # two columns for one field: the row model decides which counts
                roles[role] = name
        if not {"event_id", "lead_id"} <= roles.keys():
            return None
        return cls(names, roles, folder, keys_of)

    def has_visitors(self, chunk: CsvChunk) -> bool:
        column = self.roles.get("anonymous_id")
        return column is not None and bool(chunk.cells[column].str.strip_chars().ne("").any())

    def add(self, chunk: CsvChunk) -> None:
        self.unreadable.extend(chunk.unreadable)
        if chunk.cells.is_empty():
            return
        lead, event = self.roles["lead_id"], self.roles["event_id"]
        cells = chunk.cells.with_columns(pl.Series(_LINE, chunk.lines, dtype=pl.Int64))
        ids = cells[lead].str.strip_chars().unique()
        known = self.keys_of(ids.to_list())
        keys = pl.DataFrame(
            {"id": ids, _KEY: pl.Series([known.get(lead_id) for lead_id in ids.to_list()], dtype=pl.Int64)}
        )
        cells = cells.with_columns(pl.col(lead).str.strip_chars().alias("id")).join(keys, on="id", how="left")
        cells = cells.drop("id").sort(_KEY, nulls_last=True, maintain_order=True)
        event_id = pl.col(event).str.strip_chars()
        self.ids.append(cells.select(pl.when(event_id != "").then(event_id.hash()).alias("hash"), pl.col(_LINE)))
        self.sample.append(cells[_KEY].drop_nulls().gather_every(_SAMPLE_EVERY))
        run = self.folder / f"{len(self.runs):06d}.parquet"
        cells.write_parquet(run, compression="lz4", row_group_size=16_384, statistics=True)
        self.runs.append(run)
        self.rows += cells.height

    def ordered(self, size: int) -> Iterator[CsvChunk]:
        """The rows in lead order, ``size`` a chunk; the unreadable rows ride with the first chunk."""
        pending = pl.DataFrame(schema={**dict.fromkeys(self.names, pl.String), _LINE: pl.Int64})
        for part in self._parts():
            pending = pl.concat([pending, part.select(*self.names, _LINE)])
            while pending.height >= size:
                yield self._chunk(pending.head(size))
                pending = pending.slice(size)
        if pending.height or self.unreadable:
            yield self._chunk(pending)

    def _chunk(self, frame: pl.DataFrame) -> CsvChunk:
        unreadable, self.unreadable = self.unreadable, []
        return CsvChunk(self.names, frame.select(self.names), frame[_LINE].to_list(), unreadable)

    def _parts(self) -> Iterator[pl.DataFrame]:
        """Frames in lead order: key ranges of about ``RANGE_ROWS`` rows each, then the rows of no stored
        lead, then the repeats of an id seen earlier in the file (both in file order)."""
        if not self.runs:
            return
        ids = pl.concat(self.ids).drop_nulls("hash").sort(_LINE)
        repeats = ids.filter(~pl.col("hash").is_first_distinct())[_LINE]
        scan = pl.scan_parquet(self.runs)
        firsts = scan.filter(~pl.col(_LINE).is_in(repeats.implode())) if repeats.len() else scan
        sample = pl.concat(self.sample).sort()
        ranges = -(-self.rows // RANGE_ROWS)
        cuts = sorted({sample[sample.len() * n // ranges] for n in range(1, ranges)}) if sample.len() else []
        key = pl.col(_KEY)
        for low, high in zip([None, *cuts], [*cuts, None], strict=True):
            within = key.is_not_null()
            if low is not None:
                within &= key >= low
            if high is not None:
                within &= key < high
            yield firsts.filter(within).sort(_KEY, maintain_order=True).collect()
        yield firsts.filter(key.is_null()).sort(_LINE).collect()
        if repeats.len():
            yield scan.filter(pl.col(_LINE).is_in(repeats.implode())).sort(_LINE).collect()
