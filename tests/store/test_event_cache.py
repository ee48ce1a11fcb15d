"""The event cache: whatever happens to the event log, it serves exactly what the store holds (SQLite
file or PostgreSQL schema)."""

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sqlalchemy import Engine, text

from stages.spec import BUILTIN_EVENT_TYPES
from store import change_log, event_cache, partitions
from store.db import make_engine
from store.event_cache import cache_dir, cached_events, drop_cache
from store.ingest import events as events_module
from store.ingest import ingest_events, ingest_leads
from store.partitions import shared_partition_reads
from store.reader import read_events
from tests.postgres import postgres_url, throwaway_schema
from tests.store.samples import lead_keys, write

TYPES = ["email_click", "manual_adjustment", "page_view"]
EVENT_COLUMNS = ["lead_key", "occurred_at", "type", "product_line", "machine"]
PROPERTIES = ["url", "points", "topic"]  # promoted columns and one JSON-only key: every column kind


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """Ten leads in a SQLite file or a PostgreSQL schema (its cache under tmp_path)."""
    monkeypatch.setattr(event_cache, "CHUNK_KEYS", 4)  # 10 leads span three chunk files
    monkeypatch.setattr(event_cache, "_cache_root", tmp_path / "cache")
    leads = write(tmp_path, "leads.csv", "lead_id\n" + "\n".join(f"L{i}" for i in range(10)) + "\n")
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path}/m.db")
        ingest_leads(engine, leads)
        yield engine
        engine.dispose()
        return
    with throwaway_schema(postgres_url(), "ec") as schema:
        engine = make_engine(postgres_url(), connect_args={"options": f"-csearch_path={schema}"})
        ingest_leads(engine, leads)
        try:
            yield engine
        finally:
            engine.dispose()


def events_csv(tmp_path: Path, name: str, rows: list[tuple[str, str, str, str, str]]) -> Path:
    """``(event_id, lead_id, type, occurred_at, url)`` rows as an events CSV."""
    lines = ["event_id,lead_id,type,occurred_at,url,topic"]
    lines += [f"{e},{lead},{kind},{at},{url},t-{e}" for e, lead, kind, at, url in rows]
    return write(tmp_path, name, "\n".join(lines) + "\n")


def ingest(engine: Engine, path: Path) -> int:
    return ingest_events(engine, path, event_types=set(BUILTIN_EVENT_TYPES)).inserted


def check(engine: Engine, key_range: tuple[int, int]) -> pl.DataFrame:
    """The cache's answer equals a direct read, rows, order and types."""
    mirrored = cached_events(engine, key_range, TYPES, PROPERTIES)
    assert_frame_equal(mirrored, read_events(engine, key_range, None, TYPES, PROPERTIES))
    return mirrored


def spy_on_reads(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The keyword arguments of every database read the event cache makes from now on (``lead_keys`` when
    it re-reads some leads only, none when it reads a whole range)."""
    reads: list[dict[str, Any]] = []
    original = event_cache.read_events

    def spy(*args: Any, **kwargs: Any) -> pl.DataFrame:
        reads.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(event_cache, "read_events", spy)
    return reads


def initial_events() -> list[tuple[str, str, str, str, str]]:
    rows = []
    for i in range(10):
        for j in range(3):
            kind = ("page_view", "email_click", "email_open")[j]
            rows.append((f"e{i}-{j}", f"L{i}", kind, f"2026-0{1 + j}-0{1 + i % 9}T10:00:00Z", f"/p{i}"))
    return rows


def test_cache_serves_exactly_the_log_and_follows_every_change(store: Engine, tmp_path: Path) -> None:
    assert ingest(store, events_csv(tmp_path, "a.csv", initial_events())) == 30
    keys = lead_keys(store)
    everyone = (min(keys.values()), max(keys.values()) + 1)
    first = check(store, everyone)
    assert first.height == 20  # email_open is not a scored type
    assert first.columns == [*EVENT_COLUMNS, "properties", "url", "points"]
    files = sorted(cache_dir(store).rglob("chunk-*.arrow"))
    assert len(files) == 3
    check(store, (keys["L2"], keys["L7"]))  # a range that cuts chunks

    # New events into an old lead (earlier than its others: order must follow occurred_at), a new
    # event for another lead, and a re-ingested event_id (ignored: events are immutable).
    late = [
        ("n1", "L1", "page_view", "2025-12-31T00:00:00Z", "/new"),
        ("n2", "L8", "email_click", "2026-05-01T00:00:00Z", "/c"),
        ("e3-0", "L3", "page_view", "2026-09-09T00:00:00Z", "/changed"),
    ]
    assert ingest(store, events_csv(tmp_path, "b.csv", late)) == 2
    after = check(store, everyone)
    assert after.height == 22
    l1 = after.filter(pl.col("lead_key") == keys["L1"])
    assert l1["url"].to_list() == ["/new", "/p1", "/p1"]
    assert after.filter(pl.col("url") == "/changed").height == 0

    # Updates and deletes by any writer are seen too.
    with store.begin() as conn:
        conn.execute(text("UPDATE events SET machine = true WHERE event_id = 'e5-0'"))
        conn.execute(text("DELETE FROM events WHERE lead_key = :k"), {"k": keys["L9"]})
    after = check(store, everyone)
    assert after.filter(pl.col("lead_key") == keys["L9"]).height == 0
    assert after.filter(pl.col("machine"))["lead_key"].to_list() == [keys["L5"]]

    drop_cache(store)  # a cache: deleting it changes nothing but the time
    assert not cache_dir(store).exists()
    assert_frame_equal(check(store, everyone), after)


def test_unchanged_chunks_are_not_read_again_and_changed_leads_alone_are(
    store: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest(store, events_csv(tmp_path, "a.csv", initial_events()))
    keys = lead_keys(store)
    everyone = (min(keys.values()), max(keys.values()) + 1)
    check(store, everyone)
    reads = spy_on_reads(monkeypatch)
    cached_events(store, everyone, TYPES, PROPERTIES)
    assert reads == []
    ingest(store, events_csv(tmp_path, "b.csv", [("n1", "L4", "page_view", "2026-07-01T00:00:00Z", "/x")]))
    mirrored = cached_events(store, everyone, TYPES, PROPERTIES)
    assert reads == [{"lead_keys": [keys["L4"]]}]
    assert "/x" in mirrored["url"].to_list()


def test_a_bulk_insert_counts_each_lead_once_and_keeps_the_triggers(
    store: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk of ``SQLITE_BULK_ROWS`` rows or more is counted per lead, not per row (SQLite drops its row
    trigger for the insert): the cache re-reads the leads it touched, and the triggers and the epoch stay
    (also when the insert fails: the transaction puts the trigger back)."""
    monkeypatch.setattr(change_log, "SQLITE_BULK_ROWS", 2)
    ingest(store, events_csv(tmp_path, "a.csv", initial_events()))
    keys = lead_keys(store)
    everyone = (min(keys.values()), max(keys.values()) + 1)
    check(store, everyone)  # installs the triggers
    epoch = change_log.ensure_tracking(store)

    def generations() -> dict[int, int]:
        with store.connect() as conn:
            return dict(conn.execute(text("SELECT lead_key, generation FROM event_generations")).all())

    before = generations()
    reads = spy_on_reads(monkeypatch)
    more = [
        ("n1", "L1", "page_view", "2026-07-01T00:00:00Z", "/x"),
        ("n2", "L1", "page_view", "2026-07-02T00:00:00Z", "/y"),
        ("n3", "L4", "email_click", "2026-07-03T00:00:00Z", "/z"),
    ]
    assert ingest(store, events_csv(tmp_path, "b.csv", more)) == 3
    after = generations()
    assert {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)} == {
        keys["L1"]: 1,
        keys["L4"]: 1,
    }
    mirrored = check(store, everyone)
    assert sorted(key for read in reads for key in read["lead_keys"]) == [keys["L1"], keys["L4"]]  # those alone
    assert sorted(mirrored.filter(pl.col("url").is_in(["/x", "/y", "/z"]))["url"].to_list()) == ["/x", "/y", "/z"]
    assert change_log.ensure_tracking(store) == epoch

    def failing(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr(events_module, "merge_ignoring_stored", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        ingest(
            store,
            events_csv(
                tmp_path, "c.csv", [(f"f{i}", "L2", "page_view", "2026-08-01T00:00:00Z", "/f") for i in range(3)]
            ),
        )
    assert generations() == after
    assert change_log.ensure_tracking(store) == epoch  # the insert trigger is still there


def test_lost_triggers_start_a_new_epoch(store: Engine, tmp_path: Path) -> None:
    """Changes made while the triggers were missing went uncounted: every file is rebuilt."""
    ingest(store, events_csv(tmp_path, "a.csv", initial_events()))
    keys = lead_keys(store)
    everyone = (min(keys.values()), max(keys.values()) + 1)
    check(store, everyone)
    with store.begin() as conn:
        on_events = " ON events" if store.dialect.name == "postgresql" else ""
        conn.execute(text(f"DROP TRIGGER event_generations_update{on_events}"))
        conn.execute(text("UPDATE events SET url = '/untracked' WHERE event_id = 'e0-0'"))
    assert "/untracked" in check(store, everyone)["url"].to_list()


def test_shared_partition_reads_use_the_cache_for_wide_ranges(
    store: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(partitions, "CACHE_MIN_KEYS", 5)
    ingest(store, events_csv(tmp_path, "a.csv", initial_events()))
    keys = lead_keys(store)
    one = shared_partition_reads.events(store, (keys["L1"], keys["L1"] + 1), token="t", types=TYPES, properties=[])
    shared_partition_reads.release("t")
    assert one.columns == EVENT_COLUMNS and one.height == 2
    assert not cache_dir(store).exists()  # a single lead reads directly
    wide = (0, max(keys.values()) + 1)
    frame = shared_partition_reads.events(store, wide, token="t", types=TYPES, properties=PROPERTIES)
    shared_partition_reads.release("t")
    assert_frame_equal(frame, read_events(store, wide, None, TYPES, PROPERTIES))
    assert cache_dir(store).exists()


def test_shared_reads_of_other_kinds_run_once_per_run_and_key() -> None:
    shared = partitions.SharedPartitionReads()
    calls: list[str] = []

    def read(name: str) -> str:
        calls.append(name)
        return name.upper()

    assert shared.shared("run", ("leads", (1, 10)), lambda: read("a")) == "A"
    assert shared.shared("run", ("leads", (1, 10)), lambda: read("b")) == "A"  # the first read is reused
    assert shared.shared("run", ("leads", (10, 20)), lambda: read("c")) == "C"
    with pytest.raises(ZeroDivisionError):
        shared.shared("run", ("leads", (20, 30)), lambda: 1 // 0)
    assert shared.shared("run", ("leads", (20, 30)), lambda: read("d")) == "D"  # a failed read is not kept
    assert calls == ["a", "c", "d"]
    shared.release("run")
    assert not shared.entries


def test_postgresql_counts_each_statement_once_per_lead_and_truncate_starts_a_new_epoch(
    store: Engine, tmp_path: Path
) -> None:
    if store.dialect.name != "postgresql":
        pytest.skip("statement triggers and TRUNCATE are PostgreSQL's")
    ingest(store, events_csv(tmp_path, "a.csv", initial_events()))
    keys = lead_keys(store)
    everyone = (min(keys.values()), max(keys.values()) + 1)
    check(store, everyone)  # installs the triggers

    def generations() -> dict[int, int]:
        with store.connect() as conn:
            return dict(conn.execute(text("SELECT lead_key, generation FROM event_generations")).all())

    before = generations()
    with store.begin() as conn:  # one statement over six rows of two leads: each lead counted once
        conn.execute(
            text("UPDATE events SET url = '/moved' WHERE lead_key IN (:a, :b)"), {"a": keys["L1"], "b": keys["L2"]}
        )
    after = generations()
    assert {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)} == {
        keys["L1"]: 1,
        keys["L2"]: 1,
    }
    assert check(store, everyone).filter(pl.col("url") == "/moved").height == 4  # L1's email_open is not read

    with store.begin() as conn:
        conn.execute(text("TRUNCATE events"))
    assert check(store, everyone).height == 0  # the files of the old epoch are ignored


def test_postgresql_counts_a_statement_touching_many_leads_of_a_block_once_for_the_block(
    store: Engine, tmp_path: Path
) -> None:
    if store.dialect.name != "postgresql":
        pytest.skip("statement triggers are PostgreSQL's")
    ingest(store, events_csv(tmp_path, "a.csv", initial_events()))
    everyone = (0, 2 * change_log.BLOCK_LEADS)
    check(store, everyone)  # installs the triggers and writes the files

    def bumped(work: str) -> dict[int, int]:
        with store.connect() as conn:
            before = dict(conn.execute(text("SELECT lead_key, generation FROM event_generations")).all())
        with store.begin() as conn:
            conn.execute(text(work))
        with store.connect() as conn:
            after = dict(conn.execute(text("SELECT lead_key, generation FROM event_generations")).all())
        return {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)}

    many = change_log.BLOCK_LEADS + 5  # leads 1 … 1,029 of block 0: its counter, under key -1
    bulk = (
        "INSERT INTO events (lead_key, occurred_at, event_id, type, machine, properties, url) "
        f"SELECT g, 1767261600000000, 'bulk-' || g, 'page_view', false, '{{}}', '/bulk' "
        f"FROM generate_series(1, {many}) AS g"
    )
    assert bumped(bulk) == {-1: 1}
    assert check(store, everyone).filter(pl.col("url") == "/bulk").height == many  # the files saw the block change
    assert bumped("UPDATE events SET url = '/one' WHERE event_id IN ('bulk-5', 'bulk-7')") == {5: 1, 7: 1}
    assert check(store, everyone).filter(pl.col("url") == "/one").height == 2


def test_postgresql_a_block_counter_bump_re_reads_only_the_leads_it_touched(
    store: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A statement over many leads of a block bumps the block's counter and logs its leads: a reader one or
    a few bumps behind re-reads those leads only; once the log misses a bump in between, the whole range."""
    if store.dialect.name != "postgresql":
        pytest.skip("statement triggers are PostgreSQL's")
    monkeypatch.setattr(event_cache, "CHUNK_KEYS", 4 * change_log.BLOCK_LEADS)  # one file, re-read whole past half
    ingest(store, events_csv(tmp_path, "a.csv", initial_events()))
    everyone = (0, 2 * change_log.BLOCK_LEADS)
    check(store, everyone)  # installs the triggers and writes the file
    reads = spy_on_reads(monkeypatch)

    def update(leads: range, url: str) -> None:
        with store.begin() as conn:  # one statement per call
            conn.execute(
                text(
                    "UPDATE events SET url = :url WHERE event_id LIKE 'bulk-%' AND lead_key >= :lo AND lead_key < :hi"
                ),
                {"url": url, "lo": leads.start, "hi": leads.stop},
            )

    many = change_log.BLOCK_LEADS + 5
    with store.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO events (lead_key, occurred_at, event_id, type, machine, properties, url) "
                "SELECT g, 1767261600000000, 'bulk-' || g, 'page_view', false, '{}', '/bulk' "
                "FROM generate_series(1, :many) AS g"
            ),
            {"many": many},
        )
    update(range(600, many + 1), "/late")  # 430 leads: their own counters, beside the block's
    assert check(store, everyone).filter(pl.col("url") == "/late").height == many + 1 - 600
    assert [read["lead_keys"] for read in reads] == [list(range(1, many + 1))]  # not the whole file

    for i in range(change_log.BLOCK_LOG_KEEP + 1):  # the first of these bumps falls out of the log
        update(range(1, many + 1), f"/u{i}")
    with store.connect() as conn:
        kept = conn.execute(text("SELECT generation FROM event_block_leads WHERE block = 0 ORDER BY 1")).scalars().all()
    assert kept == list(range(3, 3 + change_log.BLOCK_LOG_KEEP))  # bumps 1 (insert) … 18, the last 16
    reads.clear()
    assert check(store, everyone).filter(pl.col("url") == f"/u{change_log.BLOCK_LOG_KEEP}").height == many
    assert reads == [{}]  # a bump missing in between: the file read whole


def test_installers_starting_together_agree_on_one_epoch(store: Engine) -> None:
    """The partitions of a first run all install the triggers at once (threads, processes): one installs,
    the others wait for it and take its epoch (they used to fail on a trigger the first had created)."""
    for _ in range(20):  # a race: one round alone missed it about every other time
        with store.begin() as conn:
            conn.execute(text("DELETE FROM event_mirror_epoch"))
        start = threading.Barrier(4)

        def install(start: threading.Barrier) -> str:
            start.wait()
            return change_log.ensure_tracking(store)

        with ThreadPoolExecutor(4) as pool:
            epochs = set(pool.map(install, [start] * 4))
        assert len(epochs) == 1
        assert change_log.ensure_tracking(store) in epochs
