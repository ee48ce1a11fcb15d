"""Explicit audience membership: idempotent, set-based adds and removes, readable as of a time."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select

from store.audiences import MEMBER_TABLE, add_members, member_keys, remove_members

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def test_add_and_remove_are_idempotent(engine: Engine) -> None:
    assert add_members(engine, "warm", [3, 1, 2, 2], run_id="r1", as_of=T0) == 3
    assert add_members(engine, "warm", [1, 2, 3], run_id="r2", as_of=T0 + timedelta(hours=1)) == 0
    assert add_members(engine, "other", [1], run_id="r1", as_of=T0) == 1
    assert member_keys(engine, "warm", T0) == [1, 2, 3]

    assert remove_members(engine, "warm", [2, 9], run_id="r3", as_of=T0 + timedelta(days=1)) == 1
    assert remove_members(engine, "warm", [2], run_id="r4", as_of=T0 + timedelta(days=2)) == 0
    assert member_keys(engine, "warm", T0 + timedelta(days=1)) == [1, 3]
    assert member_keys(engine, "other", T0 + timedelta(days=1)) == [1]
    # As of before the removal, the lead was still a member; before the add, nobody was.
    assert member_keys(engine, "warm", T0 + timedelta(hours=12)) == [1, 2, 3]
    assert member_keys(engine, "warm", T0 - timedelta(seconds=1)) == []

    with engine.connect() as conn:
        row = conn.execute(select(MEMBER_TABLE).where(MEMBER_TABLE.c.lead_key == 2)).one()._mapping
    assert (row["added_run_id"], row["removed_run_id"]) == ("r1", "r3")
    assert row["removed_at"] == T0 + timedelta(days=1)

    # Adding a removed lead again reopens its membership with the new run and time.
    assert add_members(engine, "warm", [2], run_id="r5", as_of=T0 + timedelta(days=3)) == 1
    with engine.connect() as conn:
        row = conn.execute(select(MEMBER_TABLE).where(MEMBER_TABLE.c.lead_key == 2)).one()._mapping
    assert (row["added_run_id"], row["removed_at"], row["removed_run_id"]) == ("r5", None, None)
    assert member_keys(engine, "warm", T0 + timedelta(days=3)) == [1, 2, 3]


def test_many_members_in_chunks(engine: Engine) -> None:
    keys = list(range(1, 25_001))
    assert add_members(engine, "big", keys, run_id="r1", as_of=T0) == 25_000
    assert remove_members(engine, "big", keys[::2], run_id="r2", as_of=T0 + timedelta(hours=1)) == 12_500
    assert member_keys(engine, "big", T0 + timedelta(hours=1)) == keys[1::2]
    assert add_members(engine, "big", [], run_id="r3", as_of=T0) == 0
    assert remove_members(engine, "big", [], run_id="r3", as_of=T0) == 0
