"""What an ingestion did and the rows it refused: the report returned to the caller and the reject
ledger kept in ``ingest_rejects`` (unique per file line and content, so a re-ingest adds nothing)."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import attrgetter
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Connection

from store.bulk import insert_ignore
from store.ingest.reading import Raw, dumps
from store.tables import EPOCH, IngestReject, to_micros


@dataclass(frozen=True)
class Reject:
    """One refused row: the physical line of the file, the field at fault (None: the whole row)."""

    line: int
    field: str | None
    reason: str
    raw: dict[str, Any]
    source: str = ""

    def __str__(self) -> str:
        where = f"{Path(self.source).name} line {self.line}" if self.source else f"line {self.line}"
        return f"{where}, field {self.field!r}: {self.reason}" if self.field else f"{where}: {self.reason}"


@dataclass
class IngestReport:
    """What one ingestion did. ``read = accepted + rejected``; ``accepted`` rows that were already
    stored (a re-ingest) are neither ``inserted`` nor ``updated``. For events, ``updated`` counts
    events of this file flagged as machine activity after their delivery appeared later in the file.
    """

    kind: str
    source: str
    read: int = 0
    accepted: int = 0
    inserted: int = 0
    updated: int = 0
    rejected: int = 0
    rejects: list[Reject] = field(default_factory=list)
    interests: list[tuple[int, str, datetime]] = field(default_factory=list)
    # Ids this call stored or changed, kept for ``Records`` only (None for files): the service answers per item.
    written: set[str] | None = None
    notes: list[str] = field(default_factory=list)  # what is odd about the file as a whole

    def summary(self) -> str:
        return (
            f"{self.kind} from {self.source}: read {self.read}, accepted {self.accepted}, "
            f"inserted {self.inserted}, updated {self.updated}, rejected {self.rejected}"
        ) + "".join(f"; {note}" for note in self.notes)

    def add(self, other: IngestReport) -> None:
        """Add ``other``'s counts and rejects to this report's (a chunk checked apart, or another file)."""
        self.read += other.read
        self.accepted += other.accepted
        self.inserted += other.inserted
        self.updated += other.updated
        self.rejected += other.rejected
        self.rejects.extend(other.rejects)


class RepeatedIds:
    """Counts ids that appear more than once among a file's accepted rows, as 64-bit hashes (8 bytes an
    id, so a 20M-row file costs 160 MB at most, not a set of strings)."""

    def __init__(self, id_name: str, which_wins: str) -> None:
        self.id_name, self.which_wins, self.hashes = id_name, which_wins, [pl.Series([], dtype=pl.UInt64)]

    def add(self, ids: Sequence[str] | pl.Series) -> None:
        if len(ids):
            self.hashes.append(pl.Series(ids, dtype=pl.Utf8).hash())

    def note(self, report: IngestReport) -> None:
        """Say so in the report when the file had no data rows, or repeated ids."""
        if report.read == 0:
            report.notes.append("the file is empty (no data rows)")
        hashes = pl.concat(self.hashes)
        repeated = hashes.len() - hashes.n_unique()
        if repeated:
            report.notes.append(
                f"{repeated} row(s) repeat a {self.id_name} seen earlier in the file ({self.which_wins})"
            )


def write_rejects_csv(report: IngestReport, path: Path) -> Path:
    """Write the report's rejects as CSV (source, line, field, reason, raw JSON) for people to fix."""
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "line", "field", "reason", "raw"])
        for reject in report.rejects:
            writer.writerow([report.source, reject.line, reject.field or "", reject.reason, dumps(reject.raw).decode()])
    return Path(path)


class Interests:
    """The earliest time each (lead key, product line) pair showed up: the journeys a file may open.
    Kept as epoch microseconds: an events file compares millions of times, and converts each pair once.
    Pairs come one at a time (``first``) or as a chunk's Polars frame (``frames``): an events file
    brings hundreds of thousands of pairs per chunk, whose minimum Polars keeps without a Python loop."""

    def __init__(self) -> None:
        self.first: dict[tuple[int, str], int] = {}
        self.frames: list[pl.DataFrame] = []
        self.framed = 0  # rows held in ``frames``
        self.compact_at = _COMPACT_ROWS

    def add(self, key: int, line: str, when: datetime) -> None:
        self.add_micros(key, line, to_micros(when))

    def add_micros(self, key: int, line: str, at: int) -> None:
        pair = (key, line)
        seen = self.first.get(pair)
        if seen is None or at < seen:
            self.first[pair] = at

    def add_pairs(self, keys: list[int], lines: list[str], ats: list[int]) -> None:
        """``add_micros`` for many pairs at once (a chunk's leads; a pair repeated among them at one time):
        the dictionary work runs in C, and only the pairs seen before are compared one by one."""
        found = dict(zip(zip(keys, lines, strict=True), ats, strict=True))
        first = self.first
        for pair in found.keys() & first.keys():
            found[pair] = min(found[pair], first[pair])
        first.update(found)

    def add_frame(self, frame: pl.DataFrame) -> None:
        """``add_micros`` for each row of ``frame`` (``key``: Int64, ``line``: String, ``at``: Int64
        microseconds); the frames held are reduced to one row per pair when they grow (bounded memory)."""
        self.frames.append(frame.select(_PAIR_SCHEMA.keys()).cast(_PAIR_SCHEMA))  # type: ignore[arg-type]
        self.framed += frame.height
        if self.framed > self.compact_at:
            reduced = self._reduced(self.frames)
            self.frames, self.framed = [reduced], reduced.height
            self.compact_at = max(_COMPACT_ROWS, 2 * reduced.height)

    def merge(self, other: Interests) -> None:
        """Take over what ``other`` (a chunk checked ahead, in its own ``Ingestion``) holds."""
        if other.first:
            keys, lines = zip(*other.first, strict=True)
            self.add_pairs(list(keys), list(lines), list(other.first.values()))
        for frame in other.frames:
            self.add_frame(frame)

    @staticmethod
    def _reduced(frames: list[pl.DataFrame]) -> pl.DataFrame:
        return pl.concat(frames).group_by("key", "line").agg(pl.col("at").min())

    def as_list(self) -> list[tuple[int, str, datetime]]:
        """Pairs held as frames (an events file: hundreds of thousands, nearly all of distinct times)
        convert each time as it comes (320,000 pairs, reduced and listed: 0.5 CPU s; with a set and a dict
        of the times, 0.9). Pairs held one by one convert each time once: a leads file's share a few."""
        if self.frames:
            held = pl.DataFrame(
                [(key, line, at) for (key, line), at in self.first.items()], schema=_PAIR_SCHEMA, orient="row"
            )
            reduced = self._reduced([held, *self.frames]).sort("key", "line")
            keys, lines, ats = (column.to_list() for column in reduced.get_columns())
            times = [EPOCH + timedelta(microseconds=at) for at in ats]
            return list(zip(keys, lines, times, strict=True))
        keys = [key for key, _ in self.first]
        lines = [line for _, line in self.first]
        ats = list(self.first.values())
        times = {at: EPOCH + timedelta(microseconds=at) for at in set(ats)}
        return [(key, line, times[at]) for key, line, at in zip(keys, lines, ats, strict=True)]


_PAIR_SCHEMA = {"key": pl.Int64, "line": pl.String, "at": pl.Int64}
_COMPACT_ROWS = 1_000_000


def row_hash(raw: dict[str, Any]) -> str:
    return hashlib.sha256(dumps(raw)).hexdigest()


class RejectLedger:
    """Collects a chunk's rejects for the report and the ``ingest_rejects`` table."""

    def __init__(self, report: IngestReport) -> None:
        self.report = report
        self.pending: list[Reject] = []

    def add(self, row: Raw, field_name: str | None, reason: str, *, redact: bool = False) -> None:
        """``redact``: keep the line and the reason only (an erased person's row must not be stored again)."""
        reject = Reject(row.line, field_name, reason, {} if redact else row.raw, self.report.source)
        self.pending.append(reject)
        self.report.rejects.append(reject)
        self.report.rejected += 1

    def flush(self, conn: Connection, now: datetime) -> None:
        rows = [
            {
                "kind": self.report.kind,
                "source": self.report.source,
                "line": r.line,
                "field": r.field,
                "reason": r.reason,
                "row_hash": row_hash(r.raw),
                "raw": r.raw,
                "rejected_at": now,
            }
            for r in self.pending
        ]
        insert_ignore(conn, IngestReject.__table__, rows)  # type: ignore[arg-type]
        self.pending = []

    def sort(self) -> None:
        """File order: read, validation and look-up rejects mix."""
        self.report.rejects.sort(key=attrgetter("line"))
