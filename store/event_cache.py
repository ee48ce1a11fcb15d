"""A columnar cache of the event log: Arrow IPC files on local disk, read memory-mapped.

Reading events out of the database is the largest cost of a scoring run (ADBC moves ≈ 1.2M rows/s
out of SQLite, fewer out of PostgreSQL), yet between two runs almost all events are unchanged. The
cache keeps each chunk of ``CHUNK_KEYS`` lead keys as one Arrow IPC file; a run maps the files (no
copy, no parsing) and re-reads from the database only the leads whose events changed since the file
was written. A SQLite store keeps its files next to it, under ``<database>.mirror/``; a PostgreSQL
store (shared by many machines) under a local folder per (server, database, schema) in the cache
root (``LEADSCORE_CACHE_DIR``): each machine of a scaled-out run keeps its own copy.

What changed is known exactly, whoever wrote it: triggers on ``events`` bump a per-lead generation
counter in the writing transaction (``store/change_log.py``). Each file records the generations it
reflects (read *before* its events, so a concurrent write can only make the file look older than it
is, never newer: it is picked up by the next run). A file of another epoch (a replaced database,
triggers lost) is ignored. Delete the folder at any time: the next run rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import uuid
import weakref
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pyarrow as pa
from sqlalchemy import Engine, text

from store.change_log import BLOCK_KEYS, block_leads, ensure_tracking, generations_params, generations_query
from store.reader import adbc_uri, read_events, read_frame
from store.tables import PROMOTED_PROPERTIES

CHUNK_KEYS = BLOCK_KEYS
"""Lead keys per file: a scoring partition (≈ 25,000 leads) maps two or three files; one change-log block
each (a bulk load's block counter makes its file re-read whole)."""
REREAD_SHARE = 0.5
"""Above this share of changed leads a chunk is re-read whole (one range scan beats a long key list)."""
FORMAT = 1
"""Bump when the files' layout or ``read_events``' columns change: older files are then ignored."""
_GENERATION_SCHEMA = {"lead_key": pl.Int64(), "generation": pl.Int64()}

_locks_guard = threading.Lock()
_locks: dict[Path, threading.Lock] = {}


_cache_root = Path(tempfile.gettempdir()) / f"leadscore-cache-{os.getuid()}"
_store_names: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()


def use_cache_root(root: Path | None) -> None:
    """Where PostgreSQL stores keep their files (``LEADSCORE_CACHE_DIR``, given at start-up); None keeps
    the default, a per-user folder in the temporary directory."""
    global _cache_root
    if root is not None:
        _cache_root = Path(root)


def supported(engine: Engine) -> bool:
    """The cache serves SQLite files (ADBC cannot read an in-memory database) and PostgreSQL."""
    if engine.dialect.name == "postgresql":
        return True
    if engine.dialect.name != "sqlite":
        return False
    try:
        adbc_uri(engine)
    except ValueError:
        return False
    return True


def cache_dir(engine: Engine) -> Path:
    """``<database>.mirror`` next to a SQLite file; for PostgreSQL a folder of the cache root named
    after the server, database and schema (the store's identity; its epoch tells a recreated one)."""
    if engine.dialect.name != "postgresql":
        return Path(adbc_uri(engine) + ".mirror")
    if engine not in _store_names:
        with engine.connect() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        url = engine.url
        identity = json.dumps([url.host, url.port, url.database, schema])
        _store_names[engine] = f"pg-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"
    _cache_root.mkdir(mode=0o700, parents=True, exist_ok=True)  # events are personal data: the user's alone
    return _cache_root / _store_names[engine]


def cached_events(
    engine: Engine, key_range: tuple[int, int], types: Sequence[str], properties: Sequence[str]
) -> pl.DataFrame:
    """``read_events(engine, key_range, None, types, properties)``, served from the cache.

    Same rows, columns and order; stale chunks are brought up to date first (and the cache is
    created on first use).
    """
    lo, hi = int(key_range[0]), int(key_range[1])
    if hi <= lo:
        return read_events(engine, (lo, hi), None, types, properties)
    epoch = ensure_tracking(engine)
    folder = cache_dir(engine) / _signature(types, properties)
    parts = []
    for chunk in range(lo // CHUNK_KEYS, (hi - 1) // CHUNK_KEYS + 1):
        frame = _fresh_chunk(engine, folder, chunk, epoch, types, properties)
        keys = frame["lead_key"]
        start, end = keys.search_sorted(lo, "left"), keys.search_sorted(hi, "left")
        parts.append(frame.slice(start, end - start))
    return pl.concat(parts, rechunk=False) if len(parts) > 1 else parts[0]


def drop_cache(engine: Engine) -> None:
    """Delete the cache; the next read rebuilds what it needs."""
    shutil.rmtree(cache_dir(engine), ignore_errors=True)


def forget(engine: Engine, lead_keys: Sequence[int]) -> int:
    """Delete every cache file that holds one of these leads' events (erasure: no copy may stay on disk).

    The files are dropped rather than patched: the next run re-reads those chunks from the store, where
    the events are gone. Returns how many files were deleted.
    """
    if not supported(engine):
        return 0
    names = {f"chunk-{int(key) // CHUNK_KEYS:06d}.arrow" for key in lead_keys}
    deleted = 0
    for folder in cache_dir(engine).glob("*"):
        for name in names:
            path = folder / name
            with _lock(path):
                if path.exists():
                    path.unlink()
                    deleted += 1
    return deleted


def _signature(types: Sequence[str], properties: Sequence[str]) -> str:
    """A folder per projection: a portfolio that reads other types or properties gets its own files (and
    so does a leadscore whose event columns differ)."""
    key = json.dumps([FORMAT, list(PROMOTED_PROPERTIES), sorted(set(types)), list(dict.fromkeys(properties))])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _lock(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


def _fresh_chunk(
    engine: Engine, folder: Path, chunk: int, epoch: str, types: Sequence[str], properties: Sequence[str]
) -> pl.DataFrame:
    """The chunk's events, up to date: from its file, patched or rebuilt from SQLite when stale."""
    lo, hi = chunk * CHUNK_KEYS, (chunk + 1) * CHUNK_KEYS
    path = folder / f"chunk-{chunk:06d}.arrow"
    with _lock(path):
        generations = read_frame(engine, generations_query(), generations_params((lo, hi)), _GENERATION_SCHEMA)
        stored = _load(path, epoch)
        if stored is not None:
            frame, known = stored
            changed = _changed_leads(known, generations, engine, (lo, hi))
            if changed is not None and not changed:
                return frame
            if changed is not None and len(changed) <= REREAD_SHARE * CHUNK_KEYS:
                fresh = read_events(engine, (lo, hi), None, types, properties, lead_keys=changed)
                kept = frame.filter(~pl.col("lead_key").is_in(changed))
                # Stable sort on the lead alone: each lead's rows keep their (occurred_at, event_id) order.
                frame = pl.concat([kept, fresh]).sort("lead_key", maintain_order=True)
                _save(path, frame, generations, epoch)
                return frame  # already in memory: mapping the file too would hold it twice
        frame = read_events(engine, (lo, hi), None, types, properties)
        _save(path, frame, generations, epoch)
        return frame


def _changed_leads(
    known: pl.DataFrame, current: pl.DataFrame, engine: Engine, key_range: tuple[int, int]
) -> list[int] | None:
    """Leads of ``key_range`` whose generation differs (or exists on one side only), with those the bumps
    of a changed block counter (a negative key) stand for (``change_log.block_leads``); None when any
    lead may have changed: a block counter moved and the log no longer holds every bump in between."""
    joined = known.join(current, on="lead_key", how="full", coalesce=True, suffix="_now")
    differs = joined.filter(pl.col("generation").ne_missing(pl.col("generation_now")))
    leads = set(differs.filter(pl.col("lead_key") >= 0)["lead_key"].to_list())
    for counter, was, now in differs.filter(pl.col("lead_key") < 0).iter_rows():
        logged = None if now is None else block_leads(engine, -1 - counter, was or 0, now)
        if logged is None:
            return None
        leads.update(key for key in logged if key_range[0] <= key < key_range[1])
    return sorted(leads)


def _save(path: Path, frame: pl.DataFrame, generations: pl.DataFrame, epoch: str) -> None:
    """Write atomically (temporary file, then rename): a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
    metadata = {
        b"leadscore.epoch": epoch.encode(),
        b"leadscore.generations": _ipc_bytes(generations.to_arrow()),
    }
    table = table.replace_schema_metadata(metadata)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    try:
        with pa.OSFile(str(temporary), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _open(path: Path) -> pa.Table:
    return pa.ipc.open_file(pa.memory_map(str(path))).read_all()


def _load(path: Path, epoch: str) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """The file's events and the generations they reflect, or None (absent, unreadable, other epoch)."""
    try:
        table = _open(path)
    except (FileNotFoundError, pa.ArrowInvalid, OSError):
        return None
    metadata = table.schema.metadata or {}
    if metadata.get(b"leadscore.epoch") != epoch.encode() or b"leadscore.generations" not in metadata:
        return None
    known = pl.from_arrow(pa.ipc.open_stream(metadata[b"leadscore.generations"]).read_all())
    frame = pl.from_arrow(table.replace_schema_metadata(None))
    assert isinstance(frame, pl.DataFrame) and isinstance(known, pl.DataFrame)
    return frame, known
