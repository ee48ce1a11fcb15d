"""A scoring run's partitions: lead-key ranges covering every lead, and each partition's reads done once
per run and shared by its product-line tasks (events from the event cache on a SQLite file)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import datetime
from typing import Any, TypeVar

import polars as pl
from sqlalchemy import Engine

from store import event_cache
from store.identity import Identity, attach, read_identity
from store.reader import read_events, read_frame

T = TypeVar("T")


def lead_key_partitions(engine: Engine, partition_size: int) -> list[tuple[int, int]]:
    """Half-open ``leads.key`` ranges covering every lead, each holding ``partition_size`` leads
    (the last one fewer). Boundaries come from the keys themselves, so gaps in keys don't skew sizes.
    """
    if partition_size < 1:
        raise ValueError("partition_size must be at least 1")
    # All keys (SQLite reads them from the small lead_id index), sorted and cut here: a window function
    # over the table costs several times more.
    keys = read_frame(engine, "SELECT key FROM leads", None, {"key": pl.Int64()})["key"].sort()
    if keys.is_empty():
        return []
    bounds, last = keys.gather_every(partition_size).to_list(), keys[-1]
    edges = [*bounds, int(last) + 1]
    return [(edges[i], edges[i + 1]) for i in range(len(bounds))]


class SharedPartitionReads:
    """Reads of a lead partition (its events, and whatever else ``shared`` is given), done once per run
    and shared by that partition's product-line tasks.

    Every product line of a partition needs (almost) the same events; reading them from the store is
    the costly part of scoring, so the first task to ask reads the whole partition and the others wait
    for it and reuse it. Only the most recent ``keep`` reads stay in memory.
    """

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self.lock = threading.Lock()
        self.entries: OrderedDict[tuple[Any, ...], Future[Any]] = OrderedDict()
        self.identities: OrderedDict[tuple[Any, ...], Future[Any]] = OrderedDict()

    def events(
        self,
        engine: Engine,
        key_range: tuple[int, int],
        *,
        token: str,
        types: Sequence[str],
        properties: Sequence[str],
        as_of: datetime | None = None,
    ) -> pl.DataFrame:
        """The partition's events as they count (merges and visitor links in force now, or at ``as_of``
        for a replay): the raw read is shared, and so is the run's identity mapping."""
        identity = self.identity(engine, token=token, as_of=as_of)
        key = ("events", str(engine.url), key_range, tuple(types), tuple(properties), as_of)

        def read() -> pl.DataFrame:
            raw = _partition_events(engine, key_range, types, properties)
            return attach(engine, raw, key_range, identity, types, properties)

        return self.shared(token, key, read)

    def shared(self, token: str, key: tuple[Any, ...], read: Callable[[], T]) -> T:
        """``read()``, or the result of the run's (``token``) first call with this ``key``."""
        return self._once(self.entries, (token, *key), read, keep=self.keep)

    def identity(self, engine: Engine, *, token: str, as_of: datetime | None = None) -> Identity:
        """The merges and visitor links in force (``as_of`` None: now), read once per run and kept until
        the run is released (outside the partitions' memory budget: it is small)."""
        entry = (token, str(engine.url), as_of)
        return self._once(self.identities, entry, lambda: read_identity(engine, as_of), keep=None)

    def _once(
        self,
        entries: OrderedDict[tuple[Any, ...], Future[Any]],
        entry: tuple[Any, ...],
        read: Callable[[], T],
        keep: int | None,
    ) -> T:
        with self.lock:
            future = entries.get(entry)
            owner = future is None
            if future is None:
                future = entries[entry] = Future()
                while keep is not None and len(entries) > keep:
                    entries.popitem(last=False)
        if owner:
            try:
                future.set_result(read())
            except BaseException as exc:
                future.set_exception(exc)
                with self.lock:
                    entries.pop(entry, None)
        return future.result()

    def release(self, token: str) -> None:
        """Drop a finished run's partitions (a long-lived process must not keep them)."""
        with self.lock:
            for entries in (self.entries, self.identities):
                for key in [key for key in entries if key[0] == token]:
                    del entries[key]


def _partition_events(
    engine: Engine, key_range: tuple[int, int], types: Sequence[str], properties: Sequence[str]
) -> pl.DataFrame:
    """A partition's events: from the event cache on a SQLite file (unless the range is a handful of
    leads, where a direct read is cheaper than keeping a chunk file fresh), else from the database."""
    if key_range[1] - key_range[0] >= CACHE_MIN_KEYS and event_cache.supported(engine):
        return event_cache.cached_events(engine, key_range, types, properties)
    return read_events(engine, key_range, None, types, properties)


CACHE_MIN_KEYS = 1024
shared_partition_reads = SharedPartitionReads()
