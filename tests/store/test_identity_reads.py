"""Reading events as they count: merged leads' events under their survivor, through the event cache too,
and the cache still catching merges, unmerges and new events of an alias."""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sqlalchemy import Engine, insert, text

from stages.spec import BUILTIN_EVENT_TYPES
from store import event_cache, partitions
from store.db import make_engine
from store.identity import MergeCycle, resolve_chains
from store.ingest import ingest_events, ingest_leads
from store.merges import Pair, merge, unmerge
from store.partitions import shared_partition_reads
from store.reader import read_events
from store.tables import Journey, QualificationMilestone
from tests.store.samples import lead_keys, write

TYPES = ["email_click", "page_view"]
PROPERTIES = ["url"]
AT = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setattr(event_cache, "CHUNK_KEYS", 4)  # 10 leads span three chunk files
    monkeypatch.setattr(partitions, "CACHE_MIN_KEYS", 2)  # and every partition below reads through the cache
    engine = make_engine(f"sqlite:///{tmp_path}/m.db")
    ingest_leads(engine, write(tmp_path, "leads.csv", "lead_id\n" + "\n".join(f"L{i}" for i in range(10)) + "\n"))
    lines = ["event_id,lead_id,type,occurred_at,url"]
    lines += [f"e{i}-{j},L{i},page_view,2026-01-0{1 + j}T1{i}:00:00Z,/p{i}" for i in range(10) for j in range(2)]
    ingest_events(engine, write(tmp_path, "events.csv", "\n".join(lines) + "\n"), event_types=set(BUILTIN_EVENT_TYPES))
    yield engine
    engine.dispose()


def _read(engine: Engine, key_range: tuple[int, int], token: str) -> pl.DataFrame:
    frame = shared_partition_reads.events(engine, key_range, token=token, types=TYPES, properties=PROPERTIES)
    shared_partition_reads.release(token)
    return frame


def _under(engine: Engine, key_range: tuple[int, int], moved: dict[int, int]) -> pl.DataFrame:
    """What the partition must read: its own leads' events but the moved ones, plus the moved leads' events
    whose survivor is in the range, under the survivor's key, in (lead, time) order."""
    own = read_events(engine, key_range, None, TYPES, PROPERTIES).filter(~pl.col("lead_key").is_in(list(moved)))
    incoming = [m for m, s in moved.items() if key_range[0] <= s < key_range[1]]
    if incoming:
        extra = read_events(engine, None, None, TYPES, PROPERTIES, lead_keys=incoming)
        extra = extra.with_columns(pl.col("lead_key").replace_strict(moved, return_dtype=pl.Int64))
        own = pl.concat([own, extra]).sort("lead_key", "occurred_at", maintain_order=True)
    return own


def test_a_survivors_partition_reads_its_aliases_events_and_the_cache_sees_merge_and_unmerge(
    sqlite: Engine, tmp_path: Path
) -> None:
    keys = lead_keys(sqlite)
    first, second = (keys["L0"], keys["L5"]), (keys["L5"], keys["L9"] + 1)
    assert_frame_equal(_read(sqlite, first, "a"), _under(sqlite, first, {}))  # warms the cache files
    _read(sqlite, second, "a")

    merge(sqlite, [Pair("L1", "L8", "t:2"), Pair("L8", "L9", "t:3")], at=AT, source="test")  # a chain
    moved = {keys["L8"]: keys["L1"], keys["L9"]: keys["L1"]}
    after = _read(sqlite, first, "b")
    assert_frame_equal(after, _under(sqlite, first, moved))
    assert after.filter(pl.col("lead_key") == keys["L1"])["url"].to_list() == ["/p1", "/p8", "/p9", "/p1", "/p8", "/p9"]
    assert_frame_equal(_read(sqlite, second, "b"), _under(sqlite, second, moved))

    # A new event of an alias reaches its survivor's partition (the cache's generations see it).
    late = write(
        tmp_path, "late.csv", "event_id,lead_id,type,occurred_at,url\nlate,L9,email_click,2026-02-01T00:00:00Z,/x\n"
    )
    ingest_events(sqlite, late, event_types=set(BUILTIN_EVENT_TYPES))
    assert_frame_equal(_read(sqlite, first, "c"), _under(sqlite, first, moved))
    assert "/x" in _read(sqlite, first, "d")["url"].to_list()

    # A replay before the merge reads the leads apart; after an unmerge, so does a run.
    before = shared_partition_reads.events(
        sqlite, first, token="e", types=TYPES, properties=PROPERTIES, as_of=datetime(2026, 2, 1, tzinfo=UTC)
    )
    shared_partition_reads.release("e")
    assert_frame_equal(before, _under(sqlite, first, {}))
    unmerge(sqlite, [Pair("", "L9", "u:2")], at=datetime(2026, 3, 2, tzinfo=UTC))
    assert_frame_equal(_read(sqlite, first, "f"), _under(sqlite, first, {keys["L8"]: keys["L1"]}))
    assert_frame_equal(_read(sqlite, second, "f"), _under(sqlite, second, {keys["L8"]: keys["L1"]}))


def test_chains_resolve_to_the_final_survivor_and_cycles_are_named() -> None:
    assert resolve_chains([(1, 2), (2, 3), (4, 3)]) == {1: 3, 2: 3, 4: 3}
    with pytest.raises(MergeCycle) as cycle:
        resolve_chains([(1, 2), (2, 3), (3, 1)])
    assert cycle.value.keys == [1, 2, 3, 1]


def _journey(engine: Engine, key: int, line: str, opened: datetime) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                insert(Journey.__table__).values(  # type: ignore[attr-defined]
                    lead_key=key, product_line=line, stage="discovery", status="active", opened_at=opened,
                    stage_entered_at=opened, entered_by="opened",
                )
            ).inserted_primary_key[0]
        )  # fmt: skip


def _milestone(engine: Engine, journey: int, key: int, qualification: str, at: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(QualificationMilestone.__table__).values(  # type: ignore[attr-defined]
                journey_id=journey, lead_key=key, product_line="crm", qualification=qualification, threshold=40,
                reached_at=at, stage="discovery", score=40, run_id="r", breakdown=[],
            )
        )  # fmt: skip


def _state(engine: Engine) -> list[tuple[object, ...]]:
    sql = (
        "SELECT l.lead_id, j.product_line, j.status, j.opened_at, m.qualification, m.reached_at FROM journeys j "
        "JOIN leads l ON l.key = j.lead_key LEFT JOIN qualification_milestones m ON m.journey_id = j.id "
        "ORDER BY l.lead_id, j.product_line, m.qualification"
    )
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql))]


def test_a_merge_keeps_the_earliest_milestones_and_opens_lines_and_unmerge_puts_all_back(sqlite: Engine) -> None:
    keys = lead_keys(sqlite)
    day = lambda n: datetime(2026, 1, n, tzinfo=UTC)  # noqa: E731
    mine = _journey(sqlite, keys["L1"], "crm", day(10))
    theirs = _journey(sqlite, keys["L8"], "crm", day(5))
    _journey(sqlite, keys["L8"], "web", day(7))
    _milestone(sqlite, mine, keys["L1"], "MQL", day(20))
    _milestone(sqlite, theirs, keys["L8"], "MQL", day(15))
    _milestone(sqlite, theirs, keys["L8"], "SQL", day(18))
    apart = _state(sqlite)

    merge(sqlite, [Pair("L1", "L8", "t:2")], at=AT, source="test")
    micros = lambda n: int(day(n).timestamp() * 1_000_000)  # noqa: E731
    assert _state(sqlite) == [
        ("L1", "crm", "active", micros(5), "MQL", micros(15)),  # opened and qualified at the earlier dates
        ("L1", "crm", "active", micros(5), "SQL", micros(18)),
        ("L1", "web", "active", micros(7), None, None),  # a line only the merged lead had
        ("L8", "crm", "aliased", micros(5), "MQL", micros(15)),
        ("L8", "crm", "aliased", micros(5), "SQL", micros(18)),
        ("L8", "web", "aliased", micros(7), None, None),
    ]
    unmerge(sqlite, [Pair("L1", "L8", "u:2")], at=datetime(2026, 3, 2, tzinfo=UTC))
    assert _state(sqlite) == apart
