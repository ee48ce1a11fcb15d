"""The columnar event path against the row-by-row reference, on randomised files with every kind of
trouble: bad rows, duplicates within and across files, CRLF, a BOM, quoted newlines, a broken JSON line.
The reference always runs on SQLite; the columnar path on SQLite and PostgreSQL (``engine``)."""

import contextlib
import csv
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from stages.portfolio import BUILTIN_EVENT_TYPES
from store.db import make_engine
from store.identity_tables import ANONYMOUS_EVENTS, VisitorLink
from store.ingest import ingest_events, ingest_leads
from tests.store.samples import ingest_summary, stored_events

LINES = {"crm", "analytics"}
TYPES = set(BUILTIN_EVENT_TYPES)
LEADS = [f"L{n}" for n in range(1, 31)]
GOOD_TIMES = ["2026-03-01T09:00:00Z", "2026-03-01T09:00:01.5+00:00", "2026-03-01T11:00:01.250+02:00"]
ODD_TIMES = [
    "2026-03-01 09:00:00+00:00",  # Python reads it: the row model accepts what the columns leave
    "2026-03-01T09:00:00.1234567+00:00",
    "2026-03-01T09:00Z",
    "2026-02-30T09:00:00Z",
    "2026-03-01T09:00:60Z",
    "2026-03-01T09:00:00",
    "yesterday",
    "",
]
AGENTS = ["Mozilla/5.0", "Mozilla/5.0 (via ggpht.com GoogleImageProxy)", "BingPreview/1.0"]


def _event(rng: random.Random, n: int, ids: list[str]) -> dict[str, Any]:
    """One event row as a dict of cells; mostly good, sometimes wrong in one or more ways."""
    kind = rng.choice(["email_delivered", "email_open", "email_click", "page_view", "form_submit", "webinar_attended"])
    message = f"<m{rng.randrange(12)}@x>"
    row: dict[str, Any] = {
        "event_id": rng.choice(ids) if ids and rng.random() < 0.12 else f"E{n}",
        "lead_id": rng.choice(LEADS),
        "type": kind,
        "occurred_at": f"2026-03-01T09:00:0{rng.randrange(6)}Z",
        "product_line": rng.choice(["", "crm", "analytics"]),
        "message_id": message if kind.startswith("email") and rng.random() < 0.5 else "",
        "machine": "",
        "properties": json.dumps({"url": f"/p/{n}", "message_id": message} if rng.random() < 0.7 else {}),
        "user_agent": rng.choice(AGENTS) if kind.startswith("email") else "",
        "duration_s": rng.choice(["", "12", "3.5", "0123", "x"]),
    }
    for _ in range(rng.choice([0, 0, 0, 1, 2])):
        trouble = rng.randrange(16)
        if trouble == 0:
            row["event_id"] = rng.choice(["", "  "])
        elif trouble == 1:
            row["lead_id"] = rng.choice(["L999", " L1 ", "L2\x1c"])
        elif trouble == 2:
            row["type"] = rng.choice(["nonsense", " page_view ", "PAGE_VIEW"])
        elif trouble == 3:
            row["occurred_at"] = rng.choice(ODD_TIMES + GOOD_TIMES)
        elif trouble == 4:
            row["product_line"] = rng.choice(["ghost", " crm "])
        elif trouble == 5:
            row["properties"] = rng.choice(["{not json", "[1, 2]", '"text"', '{"a": {"b": [1, null]}}'])
        elif trouble == 6:
            row["type"] = "manual_adjustment"
            row["properties"] = json.dumps(
                rng.choice([{"points": "5", "reason": "call"}, {"points": 3}, {"reason": "x"}])
            )
        elif trouble == 7:
            row["machine"] = rng.choice(["yes", "no", "maybe", "1"])
        elif trouble == 8:
            row["properties"] = json.dumps({"note": 'two\nlines, "quoted"', "message_id": message})
        elif trouble == 9:
            row["campaign"] = rng.choice(["", "spring", "42"])
        elif trouble == 10:  # a visitor: anonymous, identified (both ids), or nobody at all (refused)
            row["anonymous_id"] = rng.choice(["V1", "V2", " V3 ", ""])
            row["lead_id"] = rng.choice(["", row["lead_id"]])
        else:
            row["occurred_at"] = rng.choice(GOOD_TIMES)
    return row


# A file without extra columns whose properties texts repeat: the columnar path parses each text once and
# shares the result between its rows (promoted columns, proxy agents, message ids and bad JSON alike).
REPEATED_PROPERTIES = [
    "{}",
    '{"url": "/pricing", "duration_s": 12}',
    '{"url": "/p/1", "message_id": "<m1@x>", "user_agent": "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"}',
    '{"message_id": "<m2@x>", "points": "3", "campaign": 42}',
    ' {"asset": "guide.pdf", "form": ""} ',
    "",
    "{not json",
    "[1, 2]",
    '{"duration_s": 1e999}',
    # Flat objects (``properties.FLAT_OBJECT``: parsed without the checks) and texts just outside that shape.
    '{"url":"/pricing","duration_s":12,"x":-0.25,"ok":true,"no":null}',
    '{"message_id":"<m3@x>","message_id":7,"user_agent":"YahooMailProxy"}',
    '{"duration_s":"inf"}',
    '{"points" : "1e999", "url": "/p/2"}',
    '{"duration_s": "12"}',
    '{"n":123456789012345678901234}',
    '{"x":1.5e3,"url":"/p/3"}',
    '{"t":"caf\\u00e9 \\u0000"}',
    '{"a":{"b":1}}',
    '{"a":1,}',
]
NARROW = ("event_id", "lead_id", "type", "occurred_at", "product_line", "message_id", "properties")


def _narrow(rng: random.Random, rows: list[dict[str, Any]], names: tuple[str, ...] = NARROW) -> list[dict[str, Any]]:
    return [{**{k: row.get(k, "") for k in names}, "properties": rng.choice(REPEATED_PROPERTIES)} for row in rows]


def _csv(path: Path, rows: list[dict[str, Any]], *, crlf: bool, bom: bool) -> Path:
    names = sorted({name for row in rows for name in row}, key=lambda n: (n not in rows[0], n))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(names)
    for row in rows:
        writer.writerow([row.get(name, "") for name in names])
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode())
    return path


def _jsonl(path: Path, rows: list[dict[str, Any]], rng: random.Random, *, uniform: bool = False) -> Path:
    """JSON Lines of ``rows``; ``uniform``: every field kept and only non-blank extras (most rows of a chunk
    share a shape, as a client's posts do), a number instead of a numeric text now and then."""
    lines = []
    for row in rows:
        if uniform:
            data = {k: v for k, v in row.items() if k in NARROW or v != ""}
            if data.get("duration_s") == "12" and rng.random() < 0.5:
                data["duration_s"] = 12
        else:
            data = {k: v for k, v in row.items() if v != "" or rng.random() < 0.3}
        if isinstance(data.get("properties"), str) and rng.random() < 0.5:
            with contextlib.suppress(ValueError):
                data["properties"] = json.loads(data["properties"])
        lines.append(json.dumps(data))
    lines.insert(len(lines) // 2, '{"event_id": "broken", "lead_id": ')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _files(tmp_path: Path, seed: int) -> list[Path]:
    rng = random.Random(seed)
    ids: list[str] = []
    files = []
    for index, shape in enumerate(["crlf-bom", "plain", "jsonl", "plain", "narrow", "uniform", "no-message-id"]):
        rows = []
        for n in range(index * 1000, index * 1000 + 150):
            rows.append(_event(rng, n, ids))
            ids.append(rows[-1]["event_id"])
        path = tmp_path / f"events_{index}.{'jsonl' if shape in ('jsonl', 'uniform') else 'csv'}"
        if shape in ("jsonl", "uniform"):
            files.append(_jsonl(path, rows, rng, uniform=shape == "uniform"))
        elif shape == "narrow":
            files.append(_csv(path, _narrow(rng, rows), crlf=False, bom=False))
        elif shape == "no-message-id":  # message ids come from the properties alone
            names = tuple(name for name in NARROW if name != "message_id")
            files.append(_csv(path, _narrow(rng, rows, names), crlf=False, bom=False))
        else:
            files.append(_csv(path, rows, crlf=shape == "crlf-bom", bom=shape == "crlf-bom"))
    return files


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("transaction_rows", [0, 80])
def test_columnar_path_equals_the_row_by_row_reference(
    engine: Engine, tmp_path: Path, seed: int, transaction_rows: int
) -> None:
    """On SQLite the columnar path writes a transaction per chunk (0) or per 80 rows and more (three
    chunks, a file's transactions ending mid-file), the reference a transaction per file."""
    leads = tmp_path / "leads.csv"
    leads.write_text("lead_id,email\n" + "".join(f"{lead},{lead.lower()}@example.com\n" for lead in LEADS))
    reference = make_engine(f"sqlite:///{tmp_path}/reference.db")
    for store in (reference, engine):
        ingest_leads(store, leads)
    options: dict[str, Any] = {"event_types": TYPES, "product_lines": LINES, "chunk_size": 37}
    files = _files(tmp_path, seed)
    for path in files + files[:2]:  # the re-ingest of the first two files must change nothing, alike
        expected = ingest_events(reference, path, row_by_row=True, **options)
        actual = ingest_events(engine, path, transaction_rows=transaction_rows, **options)
        assert ingest_summary(actual) == ingest_summary(expected), path.name
    expected_store, actual_store = stored_events(reference), stored_events(engine)
    assert actual_store == expected_store
    assert len(expected_store[0]) > 300 and len(expected_store[1]) > 50  # the files exercise both sides
    assert any(len(row) > 5 and row[5] is True for row in expected_store[0])  # machine activity was flagged
    with reference.connect() as conn:  # and visitors were stored, some of them identified
        assert conn.execute(select(ANONYMOUS_EVENTS.c.event_id)).first() is not None
        assert conn.execute(select(VisitorLink.__table__.c.lead_key)).first() is not None
    reference.dispose()
