"""Columnar reads: key ranges, product lines (with line-less events), types, schema, partitions."""

import itertools
import json
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sqlalchemy import Engine, text

from store.ingest import ingest_leads
from store.live import lead_key
from store.partitions import lead_key_partitions
from store.reader import EVENT_SCHEMA, adbc_uri, read_events, read_frame, row_reads
from tests.store.samples import Loaded, lead_keys, write


def ids(frame: pl.DataFrame) -> list[tuple[int, str]]:
    return list(zip(frame["lead_key"].to_list(), frame["type"].to_list(), strict=True))


def test_read_events_key_range_and_product_line(loaded: Loaded) -> None:
    k = loaded.keys
    l1 = read_events(loaded.engine, (k["L1"], k["L1"] + 1), "crm")
    assert l1.schema == pl.Schema(EVENT_SCHEMA)
    assert ids(l1) == [(k["L1"], "page_view"), (k["L1"], "email_delivered"), (k["L1"], "email_open")]
    assert l1["product_line"].to_list() == ["crm", None, None]  # line-less events count for every journey
    assert l1["machine"].to_list() == [False, False, True]
    assert l1["occurred_at"][2].isoformat() == "2024-03-01T10:00:01+00:00"
    assert json.loads(l1["properties"][0]) == {"url": "/pricing"}

    analytics = read_events(loaded.engine, (k["L1"], k["L3"] + 1), "analytics")
    assert ids(analytics) == [
        (k["L1"], "email_delivered"),
        (k["L1"], "email_open"),
        (k["L2"], "email_delivered"),
        (k["L2"], "email_open"),
        (k["L2"], "email_click"),  # e17 and e6 share a time: event_id orders them
        (k["L2"], "email_open"),
        (k["L3"], "manual_adjustment"),
        (k["L3"], "page_view"),
    ]
    assert analytics["lead_key"].is_sorted()
    half_open = read_events(loaded.engine, (k["L2"], k["L3"]), None)
    assert set(half_open["lead_key"].to_list()) == {k["L2"]}
    assert read_events(loaded.engine).height == 9


def test_read_events_types_and_empty_result(loaded: Loaded) -> None:
    opens = read_events(loaded.engine, None, None, types=["email_open", "email_click"])
    assert sorted(opens["type"].to_list()) == ["email_click", "email_open", "email_open", "email_open"]
    assert read_events(loaded.engine, None, None, types=[]).height == 0
    empty = read_events(loaded.engine, (10**6, 10**6 + 5), "crm")
    assert empty.height == 0
    assert empty.schema == pl.Schema(EVENT_SCHEMA)


def test_read_frame_named_and_list_parameters(loaded: Loaded) -> None:
    frame = read_frame(
        loaded.engine,
        "SELECT lead_id, key FROM leads WHERE lead_id IN (:ids) AND key >= :lo ORDER BY lead_id",
        {"ids": ["L1", "L3", "nobody"], "lo": 0},
        {"lead_id": pl.Utf8(), "key": pl.Int64()},
    )
    assert frame.to_dicts() == [
        {"lead_id": "L1", "key": loaded.keys["L1"]},
        {"lead_id": "L3", "key": loaded.keys["L3"]},
    ]
    with pytest.raises(KeyError, match=":missing"):
        read_frame(loaded.engine, "SELECT key FROM leads WHERE key = :missing", {})


def test_lead_key_partitions_cover_all_leads(engine: Engine, tmp_path: Path) -> None:
    assert lead_key_partitions(engine, 3) == []
    ingest_leads(engine, write(tmp_path, "leads.csv", "lead_id\n" + "\n".join(f"L{i}" for i in range(10)) + "\n"))
    keys = sorted(lead_keys(engine).values())
    parts = lead_key_partitions(engine, 3)
    assert len(parts) == 4
    assert parts[0][0] == keys[0] and parts[-1][1] == keys[-1] + 1
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))  # contiguous
    sizes = [sum(lo <= key < hi for key in keys) for lo, hi in parts]
    assert sizes == [3, 3, 3, 1]
    assert lead_key_partitions(engine, 100) == [(keys[0], keys[-1] + 1)]
    with pytest.raises(ValueError):
        lead_key_partitions(engine, 0)


def test_adbc_uri(engine: Engine) -> None:
    uri = adbc_uri(engine)
    if engine.dialect.name == "sqlite":
        assert uri.endswith("/t.db") and "://" not in uri
    else:
        assert uri.startswith("postgresql://") and "+psycopg" not in uri
        assert "search_path" in uri  # the test schema set through connect_args is carried over


def test_shared_partition_reads_read_once_per_run_and_release(monkeypatch: pytest.MonkeyPatch) -> None:
    import store.partitions
    from store.identity import Identity

    calls: list[tuple[int, int]] = []

    def fake_read(engine: object, key_range: tuple[int, int], *args: object) -> pl.DataFrame:
        calls.append(key_range)
        return pl.DataFrame({"lead_key": [key_range[0]]})

    monkeypatch.setattr(store.partitions, "read_events", fake_read)
    monkeypatch.setattr(store.partitions, "read_identity", lambda engine, as_of=None: Identity())  # no alias
    shared = store.partitions.SharedPartitionReads(keep=4)
    engine = type("E", (), {"url": "sqlite:///x.db"})()

    first = shared.events(engine, (1, 10), token="run-1", types=["page_view"], properties=[])  # type: ignore[arg-type]
    again = shared.events(engine, (1, 10), token="run-1", types=["page_view"], properties=[])  # type: ignore[arg-type]
    other_run = shared.events(engine, (1, 10), token="run-2", types=["page_view"], properties=[])  # type: ignore[arg-type]

    assert calls == [(1, 10), (1, 10)]  # once per run, never twice within a run
    assert first is again and other_run is not first
    shared.release("run-1")
    assert [key[0] for key in shared.entries] == ["run-2"]


def test_row_reads_give_the_same_frames_as_the_columnar_reads(loaded: Loaded) -> None:
    """``row_reads`` (a few rows through a pooled DBAPI connection, for one lead's look-up) reads the same
    frames as ADBC: same SQL, same schema casts, an empty result typed too."""
    rows = row_reads(loaded.engine)
    k = loaded.keys
    for key_range, line in [((k["L1"], k["L3"] + 1), "analytics"), ((k["L1"], k["L1"] + 1), "crm"), (None, None)]:
        assert_frame_equal(read_events(rows, key_range, line), read_events(loaded.engine, key_range, line))
    promoted = read_events(rows, None, None, properties=["url", "duration_s"])
    assert_frame_equal(promoted, read_events(loaded.engine, None, None, properties=["url", "duration_s"]))
    assert read_events(rows, (10**6, 10**6 + 5), "crm").schema == pl.Schema(EVENT_SCHEMA)
    sql = "SELECT lead_id, key FROM leads WHERE lead_id IN (:ids) ORDER BY lead_id"
    schema = {"lead_id": pl.Utf8, "key": pl.Int64}
    assert_frame_equal(
        read_frame(rows, sql, {"ids": ["L1", "L3"]}, schema),
        read_frame(loaded.engine, sql, {"ids": ["L1", "L3"]}, schema),
    )


def test_row_reads_leave_the_shared_pool_writing_in_transactions(loaded: Loaded) -> None:
    """``row_reads`` reads without a transaction on PostgreSQL (no ``BEGIN``/``ROLLBACK`` round trips) from
    the pool the service's writes share: a connection it gives back writes in a transaction again, and
    a read sees what was committed since the one before."""
    loaded.engine.dispose()  # one pooled connection from here on: the one the reads used is the one that writes
    rows = row_reads(loaded.engine)
    sql = "SELECT email FROM leads WHERE lead_id = :id"
    assert lead_key(rows, "L1") == loaded.keys["L1"]  # a Core read through it too
    email = read_frame(rows, sql, {"id": "L1"}, {"email": pl.Utf8})["email"].item()  # its connection writes next

    with pytest.raises(RuntimeError), loaded.engine.begin() as conn:
        conn.execute(text("UPDATE leads SET email = 'changed@example.com' WHERE lead_id = 'L1'"))
        raise RuntimeError  # rolled back: the connection was in a transaction
    assert read_frame(rows, sql, {"id": "L1"}, {"email": pl.Utf8})["email"].item() == email

    with loaded.engine.begin() as conn:
        conn.execute(text("UPDATE leads SET email = 'changed@example.com' WHERE lead_id = 'L1'"))
    assert read_frame(rows, sql, {"id": "L1"}, {"email": pl.Utf8})["email"].item() == "changed@example.com"
