"""The scoring reads and writes of store/scores.py, on SQLite and PostgreSQL."""

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import Engine, inspect, select, text

from store.bulk import insert_ignore
from store.reader import read_frame
from store.score_indexes import deferred_score_indexes
from store.scores import open_journeys, read_leads, start_run
from store.tables import Lead, Run, to_micros
from tests.postgres import postgres_url, search_path_url

ROOT = Path(__file__).resolve().parents[2]


def _leads(engine: Engine, attributes: list[dict]) -> None:
    rows = [
        {"lead_id": f"L{i}", "attributes": a, "email_opt_in": False, "ads_opt_in": False}
        for i, a in enumerate(attributes, 1)
    ]
    with engine.begin() as conn:
        insert_ignore(conn, Lead.__table__, rows)


def test_read_leads_decodes_named_attributes_into_text_columns(engine: Engine) -> None:
    _leads(engine, [{"company_size": 250, "vip": True, "industry": "Software"}, {"company_size": "12"}, {}])

    frame = read_leads(engine, (0, 1000), ["company_size", "industry", "vip", "email"]).sort("lead_key")

    assert frame.select("lead_id", "company_size", "industry", "vip").rows() == [
        ("L1", "250", "Software", "true"),
        ("L2", "12", None, None),
        ("L3", None, None, None),
    ]
    assert frame["email"].to_list() == [None, None, None]  # a standard column is not overwritten


def test_read_leads_leaves_nested_values_to_the_rules(engine: Engine) -> None:
    _leads(engine, [{"address": {"city": "Lyon"}}, {"address": "x"}])

    frame = read_leads(engine, (0, 1000), ["address"])

    assert "address" not in frame.columns  # the engine reads such values from the JSON text itself
    assert frame.height == 2


AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
SCORE_INDEXES = {
    "ix_journeys_product_line_score": ["product_line", "score"],
    "ix_journeys_stage_score": ["stage", "score"],
    "ix_journeys_band_score": ["band", "score"],
    "ix_journeys_qualification_score": ["qualification", "score"],
    "ix_journeys_score": ["score"],
    "ix_journeys_line_stage_score": ["product_line", "stage", "score"],
}


def _open_journeys(engine: Engine, count: int) -> None:
    _leads(engine, [{} for _ in range(count)])
    keys = read_frame(engine, "SELECT key FROM leads ORDER BY key", None, {"key": pl.Int64})["key"]
    open_journeys(
        engine, [{"lead_key": key, "product_line": "crm", "stage": "discovery", "opened_at": AS_OF} for key in keys]
    )


def test_opening_again_inserts_new_journeys_and_moves_unmoved_ones_back_to_an_earlier_time(engine: Engine) -> None:
    _open_journeys(engine, 3)  # keys 1, 2, 3 opened at AS_OF
    with engine.begin() as conn:  # journey 2 entered its stage by a threshold since: only its opening moves back
        moved = "UPDATE journeys SET stage_entered_at = opened_at + 5, entered_by = 'threshold' WHERE lead_key = 2"
        conn.execute(text(moved))
    earlier, later = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    rows = [
        {"lead_key": 1, "product_line": "crm", "stage": "discovery", "opened_at": earlier},
        {"lead_key": 2, "product_line": "crm", "stage": "discovery", "opened_at": earlier},
        {"lead_key": 3, "product_line": "crm", "stage": "discovery", "opened_at": later},
        {"lead_key": 3, "product_line": "erp", "stage": "discovery", "opened_at": later},
    ]

    assert open_journeys(engine, rows) == 1

    columns = ["lead_key", "product_line", "opened_at", "stage_entered_at", "entered_by"]
    query = f"SELECT {', '.join(columns)} FROM journeys ORDER BY lead_key, product_line"
    types = dict(zip(columns, [pl.Int64, pl.Utf8, pl.Int64, pl.Int64, pl.Utf8], strict=True))
    stored = read_frame(engine, query, None, types)
    was, before, after = to_micros(AS_OF), to_micros(earlier), to_micros(later)
    assert stored.rows() == [
        (1, "crm", before, before, "opened"),
        (2, "crm", before, was + 5, "threshold"),
        (3, "crm", was, was, "opened"),
        (3, "erp", after, after, "opened"),
    ]


def test_a_journeys_several_opening_times_move_it_back_to_the_earliest_in_any_order(engine: Engine) -> None:
    """SQLite applies the rows in key order, not as given: each journey ends at its earliest time whatever
    the order of its rows; a row's own ``stage_entered_at`` is kept for a new journey. (PostgreSQL's one
    ``UPDATE … FROM`` applies either of a journey's rows: callers pass one a journey, ``new_journeys``.)"""
    if engine.dialect.name != "sqlite":
        pytest.skip("several rows of one journey: SQLite's row-by-row UPDATE only")
    _open_journeys(engine, 3)  # keys 1, 2, 3 opened at AS_OF
    early, earlier, entered = (datetime(2026, 10, day, tzinfo=UTC) for day in (20, 10, 15))
    rows = [
        {"lead_key": 2, "product_line": "crm", "stage": "discovery", "opened_at": early},
        {"lead_key": 1, "product_line": "crm", "stage": "discovery", "opened_at": earlier},
        {"lead_key": 2, "product_line": "crm", "stage": "discovery", "opened_at": earlier},
        {"lead_key": 1, "product_line": "crm", "stage": "discovery", "opened_at": early},
        {"lead_key": 3, "product_line": "erp", "stage": "discovery", "opened_at": earlier, "stage_entered_at": entered},
    ]

    assert open_journeys(engine, rows) == 1

    columns = ["lead_key", "product_line", "opened_at", "stage_entered_at"]
    query = f"SELECT {', '.join(columns)} FROM journeys ORDER BY lead_key, product_line"
    stored = read_frame(engine, query, None, dict(zip(columns, [pl.Int64, pl.Utf8, pl.Int64, pl.Int64], strict=True)))
    first, was = to_micros(earlier), to_micros(AS_OF)
    assert stored.rows() == [
        (1, "crm", first, first),
        (2, "crm", first, first),
        (3, "crm", was, was),
        (3, "erp", first, to_micros(entered)),
    ]


def _score_indexes(engine: Engine) -> dict[str, list[str]]:
    indexes = inspect(engine).get_indexes("journeys")
    return {index["name"]: index["column_names"] for index in indexes if "score" in index["column_names"]}


def _stats(engine: Engine, run_id: str) -> dict:
    with engine.connect() as conn:
        return conn.execute(select(Run.stats).where(Run.run_id == run_id)).scalar_one()  # type: ignore[arg-type]


def _score_all(engine: Engine, scored: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE journeys SET score = 50, updated_run_id = 'r0' "
                "WHERE id IN (SELECT id FROM journeys ORDER BY id LIMIT :n)"
            ),
            {"n": scored},
        )


def test_a_run_scoring_most_journeys_for_the_first_time_builds_the_score_indexes_after_its_writes(
    engine: Engine,
) -> None:
    _open_journeys(engine, 4)
    assert _score_indexes(engine) == SCORE_INDEXES
    run_id = start_run(engine, "score", AS_OF)

    with deferred_score_indexes(engine, run_id, min_journeys=4) as deferred:
        assert deferred and _score_indexes(engine) == {}
        assert set(_stats(engine, run_id)["deferred_indexes"]) == set(SCORE_INDEXES)
        _score_all(engine, 4)

    assert _score_indexes(engine) == SCORE_INDEXES and _stats(engine, run_id) == {}
    with engine.connect() as conn:  # the rebuilt indexes hold the rows written meanwhile
        assert conn.execute(text("SELECT COUNT(*) FROM journeys WHERE score = 50")).scalar_one() == 4


def test_indexes_built_behind_the_run_are_there_when_it_leaves_the_context(engine: Engine) -> None:
    _open_journeys(engine, 4)
    run_id = start_run(engine, "score", AS_OF)

    with deferred_score_indexes(engine, run_id, min_journeys=4) as deferred:
        _score_all(engine, 4)
        deferred.build_behind()
        start_run(engine, "score", AS_OF)  # the run's next steps write meanwhile (they wait their turn)
        _score_all(engine, 2)

    assert _score_indexes(engine) == SCORE_INDEXES and _stats(engine, run_id) == {}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM journeys WHERE score = 50")).scalar_one() == 4


def test_the_indexes_stay_when_most_journeys_were_written_by_a_run_or_the_store_is_small(engine: Engine) -> None:
    _open_journeys(engine, 4)
    _score_all(engine, 3)
    for min_journeys in (1, 5):
        with deferred_score_indexes(engine, start_run(engine, "score", AS_OF), min_journeys=min_journeys) as deferred:
            assert not deferred and _score_indexes(engine) == SCORE_INDEXES
    with engine.begin() as conn:  # written by a run, yet without a score (a journey moved to a terminal stage)
        conn.execute(text("UPDATE journeys SET score = NULL"))
    with deferred_score_indexes(engine, start_run(engine, "score", AS_OF), min_journeys=1) as deferred:
        assert not deferred


def test_indexes_a_killed_run_deferred_are_built_by_the_next_run(engine: Engine) -> None:
    _open_journeys(engine, 4)
    killed = start_run(engine, "score", AS_OF)
    with engine.connect() as conn:
        schema = (
            conn.execute(text("SELECT current_schema()")).scalar_one() if engine.dialect.name == "postgresql" else None
        )
    url = search_path_url(postgres_url(), schema) if schema else engine.url.render_as_string(hide_password=False)
    code = (
        "import os\nfrom store.db import make_engine\nfrom store.score_indexes import deferred_score_indexes\n"
        f"with deferred_score_indexes(make_engine({url!r}), {killed!r}, min_journeys=1):\n    os._exit(9)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 9
    assert _score_indexes(engine) == {}

    with deferred_score_indexes(engine, start_run(engine, "score", AS_OF), min_journeys=10**9) as deferred:
        assert not deferred and _score_indexes(engine) == SCORE_INDEXES
    assert _stats(engine, killed) == {}
