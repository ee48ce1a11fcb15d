"""Merging duplicate leads and undoing it: the writes beside the alias row.

A merge never moves an event. It records ``merged → survivor`` in ``lead_aliases`` and adjusts the few
rows that say where a lead stands: the merged lead's journeys become ``aliased`` (not scored, not
emailed), the survivor gets a journey in each line the merged lead had one (at that journey's stage,
or an earlier opening time for a journey that never moved), the earlier of two milestones is kept,
and the merged lead's active nurture enrolments end (``merged``). Each alias row keeps what it
changed (``undo``), so an unmerge puts both leads back as they were.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, select, update

from store.identity import MergeCycle, resolve_chains
from store.identity_tables import LeadAlias
from store.nurture_tables import NurtureEnrolment
from store.tables import (
    Journey,
    Lead,
    QualificationMilestone,
    ScoreSnapshot,
    StageTransition,
    TriggerArm,
    TriggerArmLog,
    from_micros,
    to_micros,
)

ALIASES, JOURNEYS, LEADS = LeadAlias.__table__, Journey.__table__, Lead.__table__
MILESTONES, ENROLMENTS = QualificationMilestone.__table__, NurtureEnrolment.__table__
_CHUNK = 5_000
_POSITION = ("stage", "opened_at", "stage_entered_at", "score_from", "entered_by")
_MILESTONE = ("qualification", "threshold", "reached_at", "stage", "score", "run_id", "breakdown")


class MergeError(ValueError):
    """A merge or unmerge file the store refuses; the message names each bad line and field."""


@dataclass(frozen=True)
class Pair:
    """One line of a merge file: ``merged`` becomes an alias of ``survivor``; ``where`` is ``file:line``."""

    survivor: str
    merged: str
    where: str


def read_pairs(path: Path, *, need_survivor: bool = True) -> list[Pair]:
    """The ``survivor,merged`` rows of a CSV file (an unmerge file may omit ``survivor``); the ids are
    checked against the store by ``merge``/``unmerge``, which report every bad line at once."""
    wanted = ("survivor", "merged") if need_survivor else ("merged",)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in wanted if name not in (reader.fieldnames or [])]
        if missing:
            raise MergeError(f"{path}:1: missing column(s) {', '.join(missing)} (expected survivor,merged)")
        return [
            Pair((row.get("survivor") or "").strip(), (row.get("merged") or "").strip(), f"{path}:{reader.line_num}")
            for row in reader
        ]


def auto_pairs(engine: Engine) -> list[Pair]:
    """Leads sharing a normalised email (trimmed, lower-cased), each merged into the oldest of its group
    (earliest ``created_at``, then the first stored); leads already merged are left out."""
    normal = func.lower(func.trim(LEADS.c.email))
    merged = select(ALIASES.c.merged_key).where(ALIASES.c.unmerged_at.is_(None))
    query = (
        select(normal, LEADS.c.lead_id)
        .where(LEADS.c.email.is_not(None), normal != "", LEADS.c.key.not_in(merged))
        .order_by(normal, LEADS.c.created_at.is_(None), LEADS.c.created_at, LEADS.c.key)
    )
    pairs: list[Pair] = []
    survivor: tuple[str, str] | None = None
    with engine.connect() as conn:
        for email, lead_id in conn.execute(query):
            if survivor is not None and survivor[0] == email:
                pairs.append(Pair(survivor[1], lead_id, f"email {email}"))
            else:
                survivor = (email, lead_id)
    return pairs


def merge(engine: Engine, pairs: Sequence[Pair], *, at: datetime, source: str) -> dict[str, int]:
    """Merge each pair (all or nothing); a pair merged already is skipped. Returns ``merged``, ``already``."""
    with engine.begin() as conn:
        keys = _keys(conn, [p.survivor for p in pairs] + [p.merged for p in pairs])
        current = dict(conn.execute(select(ALIASES.c.merged_key, ALIASES.c.survivor_key).where(_active())).all())
        fresh, problems = _check(pairs, keys, current)
        if problems:
            raise MergeError("\n".join(problems))
        if not fresh:
            return {"merged": 0, "already": len(pairs)}
        final = resolve_chains(list(current.items()) + fresh)
        undo = _apply(conn, fresh, final, at)
        conn.execute(
            insert(ALIASES),
            [
                {"merged_key": m, "survivor_key": s, "merged_at": at, "source": source, "undo": undo[m]}
                for m, s in fresh
            ],
        )
    return {"merged": len(fresh), "already": len(pairs) - len(fresh)}


def unmerge(engine: Engine, pairs: Sequence[Pair], *, at: datetime) -> dict[str, int]:
    """Undo the merges of ``pairs`` (each ``merged`` lead, of ``survivor`` when given); a lead that is no
    alias is skipped. The alias rows stay with ``unmerged_at``: replays of the merged period still merge."""
    with engine.begin() as conn:
        keys = _keys(conn, [p.merged for p in pairs] + [p.survivor for p in pairs if p.survivor])
        problems = [
            f"{p.where}: field merged: " + (f"unknown lead id {p.merged!r}" if p.merged else "empty lead id")
            for p in pairs
            if p.merged not in keys
        ]
        problems += [
            f"{p.where}: field survivor: unknown lead id {p.survivor!r}"
            for p in pairs
            if p.survivor and p.survivor not in keys
        ]
        if problems:
            raise MergeError("\n".join(problems))
        rows = {
            row.merged_key: row
            for row in conn.execute(
                select(ALIASES).where(_active(), ALIASES.c.merged_key.in_([keys[p.merged] for p in pairs]))
            )
        }
        wrong = [
            f"{p.where}: field survivor: {p.merged!r} is merged into another lead, not {p.survivor!r}"
            for p in pairs
            if p.survivor and keys[p.merged] in rows and rows[keys[p.merged]].survivor_key != keys[p.survivor]
        ]
        if wrong:
            raise MergeError("\n".join(wrong))
        for row in sorted(rows.values(), key=lambda r: -r.id):  # the latest merge is undone first
            _restore(conn, row.undo)
            conn.execute(update(ALIASES).where(ALIASES.c.id == row.id).values(unmerged_at=at))
    return {"unmerged": len(rows), "not_merged": len(pairs) - len(rows)}


def _active() -> Any:
    return ALIASES.c.unmerged_at.is_(None)


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _keys(conn: Connection, lead_ids: Sequence[str]) -> dict[str, int]:
    unique = sorted(set(lead_ids))
    found: dict[str, int] = {}
    for part in _chunks(unique):
        found.update(conn.execute(select(LEADS.c.lead_id, LEADS.c.key).where(LEADS.c.lead_id.in_(part))).all())
    return found


def _check(
    pairs: Sequence[Pair], keys: dict[str, int], current: dict[int, int]
) -> tuple[list[tuple[int, int]], list[str]]:
    """The pairs still to merge, and the refusals (unknown ids, a lead merged into itself or into two
    leads, a cycle)."""
    problems: list[str] = []
    fresh: dict[int, tuple[int, Pair]] = {}
    for pair in pairs:
        empty = [name for name in ("survivor", "merged") if not getattr(pair, name)]
        if empty:
            problems += [f"{pair.where}: field {name}: empty lead id" for name in empty]
            continue
        unknown = [
            (name, value) for name, value in (("survivor", pair.survivor), ("merged", pair.merged)) if value not in keys
        ]
        if unknown:
            problems += [f"{pair.where}: field {name}: unknown lead id {value!r}" for name, value in unknown]
            continue
        survivor, merged = keys[pair.survivor], keys[pair.merged]
        if survivor == merged:
            problems.append(f"{pair.where}: field merged: a lead cannot be merged into itself ({pair.merged!r})")
        elif current.get(merged, survivor) != survivor:
            problems.append(f"{pair.where}: field merged: {pair.merged!r} is already merged into another lead")
        elif merged in fresh and fresh[merged][0] != survivor:
            problems.append(f"{pair.where}: field merged: {pair.merged!r} is merged into two leads in this file")
        elif merged not in current:
            fresh[merged] = (survivor, pair)
    names = {key: lead_id for lead_id, key in keys.items()}
    try:
        resolve_chains(list(current.items()) + [(m, s) for m, (s, _) in fresh.items()])
    except MergeCycle as cycle:
        loop = cycle.keys[:-1]
        for merged, (_, pair) in fresh.items():
            if merged in loop:
                start = loop.index(merged)
                shown = " → ".join(names.get(key, f"#{key}") for key in [*loop[start:], *loop[:start], merged])
                what = f"merging {pair.merged!r} into {pair.survivor!r}"
                problems.append(f"{pair.where}: field merged: {what} closes a cycle ({shown})")
    return [(m, s) for m, (s, _) in fresh.items()], problems


def _rows(conn: Connection, table: Any, column: Any, values: Sequence[Any], *where: Any) -> list[Any]:
    """The rows of ``table`` whose ``column`` is in ``values`` (read in chunks)."""
    found: list[Any] = []
    for part in _chunks(sorted(set(values))):
        found += conn.execute(select(table).where(column.in_(part), *where)).all()
    return found


def _apply(
    conn: Connection, fresh: Sequence[tuple[int, int]], final: dict[int, int], at: datetime
) -> dict[int, dict[str, Any]]:
    """Carry out the merges of ``fresh`` (``merged, survivor``) and return, per merged key, what to undo."""
    undo: dict[int, dict[str, Any]] = {
        m: {
            "statuses": {},
            "opened": [],
            "lowered": {},
            "milestones_added": [],
            "milestones_before": [],
            "enrolments": [],
        }
        for m, _ in fresh
    }
    merged_journeys = sorted(_rows(conn, JOURNEYS, JOURNEYS.c.lead_key, list(undo)), key=lambda j: (j.opened_at, j.id))
    for journey in merged_journeys:
        undo[journey.lead_key]["statuses"][str(journey.id)] = journey.status
    _update_each(conn, JOURNEYS, [{"_id": j.id, "status": "aliased"} for j in merged_journeys])
    survivors = {final[m] for m in undo}
    theirs = {(j.lead_key, j.product_line): j for j in _rows(conn, JOURNEYS, JOURNEYS.c.lead_key, list(survivors))}
    opening: dict[tuple[int, str], Any] = {}  # (survivor, line) → the merged journey that opens it there
    lowered: dict[int, dict[str, Any]] = {}  # survivor journey id → its new opening time
    for journey in merged_journeys:  # earliest first: the first to lower a journey lowers it most
        place = (final[journey.lead_key], journey.product_line)
        existing = theirs.get(place)
        if existing is None and place not in opening:
            opening[place] = journey
        elif (
            existing is not None
            and existing.id not in lowered
            and _never_moved(existing)
            and journey.opened_at < existing.opened_at
        ):
            undo[journey.lead_key]["lowered"][str(existing.id)] = [to_micros(existing.opened_at)] * 2
            lowered[existing.id] = {"_id": existing.id, "opened_at": journey.opened_at}
    _update_each(conn, JOURNEYS, [{**row, "stage_entered_at": row["opened_at"]} for row in lowered.values()])
    if opening:
        conn.execute(
            insert(JOURNEYS),
            [
                {
                    "lead_key": s,
                    "product_line": line,
                    "status": j.status,
                    **{name: getattr(j, name) for name in _POSITION},
                }
                for (s, line), j in opening.items()
            ],
        )
        for j in _rows(conn, JOURNEYS, JOURNEYS.c.lead_key, sorted({s for s, _ in opening})):
            if (j.lead_key, j.product_line) in opening:
                undo[opening[(j.lead_key, j.product_line)].lead_key]["opened"].append(j.id)
                theirs[(j.lead_key, j.product_line)] = j
    _merge_milestones(conn, merged_journeys, final, theirs, undo)
    enrolments = _rows(conn, ENROLMENTS, ENROLMENTS.c.lead_key, list(undo), ENROLMENTS.c.status == "active")
    for enrolment in enrolments:
        undo[enrolment.lead_key]["enrolments"].append(enrolment.id)
    _update_each(
        conn,
        ENROLMENTS,
        [{"_id": e.id, "status": "exited", "exited_at": at, "exit_reason": "merged"} for e in enrolments],
    )
    return undo


def _never_moved(journey: Any) -> bool:
    return journey.entered_by in (None, "opened") and journey.stage_entered_at == journey.opened_at


def _merge_milestones(
    conn: Connection,
    merged_journeys: Sequence[Any],
    final: dict[int, int],
    theirs: dict[tuple[int, str], Any],
    undo: dict[int, dict[str, Any]],
) -> None:
    """Give each survivor journey the earlier of its own and the merged journey's milestone."""
    owner = {j.id: j for j in merged_journeys}
    target = {j.id: theirs[(final[j.lead_key], j.product_line)].id for j in merged_journeys}
    incoming = sorted(_rows(conn, MILESTONES, MILESTONES.c.journey_id, list(owner)), key=lambda m: m.reached_at)
    held = {  # (journey, qualification) → the survivor's milestone (id and values)
        (m.journey_id, m.qualification): {"id": m.id, **{name: getattr(m, name) for name in _MILESTONE}}
        for m in _rows(conn, MILESTONES, MILESTONES.c.journey_id, list(set(target.values())))
    }
    for milestone in incoming:
        journey = owner[milestone.journey_id]
        place, record = (target[journey.id], milestone.qualification), undo[journey.lead_key]
        values = {name: getattr(milestone, name) for name in _MILESTONE}
        existing = held.get(place)
        if existing is None:
            new_id = conn.execute(
                insert(MILESTONES)
                .values(
                    journey_id=place[0], lead_key=final[journey.lead_key], product_line=journey.product_line, **values
                )
                .returning(MILESTONES.c.id)
            ).scalar_one()
            record["milestones_added"].append(new_id)
            held[place] = {"id": new_id, **values}
        elif milestone.reached_at < existing["reached_at"]:  # incoming in time order: at most once per place
            record["milestones_before"].append({**existing, "reached_at": to_micros(existing["reached_at"])})
            conn.execute(update(MILESTONES).where(MILESTONES.c.id == existing["id"]).values(**values))
            held[place] = {"id": existing["id"], **values}


def _update_each(conn: Connection, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """``UPDATE table SET … WHERE id = _id`` for rows that all set the same columns."""
    if not rows:
        return
    columns = [name for name in rows[0] if name != "_id"]
    statement = update(table).where(table.c.id == bindparam("_id")).values({name: bindparam(name) for name in columns})
    conn.execute(statement, list(rows))


def _restore(conn: Connection, undo: dict[str, Any]) -> None:
    """Put back what one merge changed (see ``_apply``)."""
    if undo["enrolments"]:
        conn.execute(
            update(ENROLMENTS)
            .where(ENROLMENTS.c.id.in_(undo["enrolments"]), ENROLMENTS.c.exit_reason == "merged")
            .values(status="active", exited_at=None, exit_reason=None)
        )
    if undo["milestones_added"]:
        conn.execute(delete(MILESTONES).where(MILESTONES.c.id.in_(undo["milestones_added"])))
    before = [
        {**row, "_id": row.pop("id"), "reached_at": from_micros(row["reached_at"])}
        for row in map(dict, undo["milestones_before"])
    ]
    _update_each(conn, MILESTONES, before)
    opened = undo["opened"]
    if opened:
        for table in (ScoreSnapshot, StageTransition, QualificationMilestone, TriggerArm, TriggerArmLog):
            conn.execute(delete(table.__table__).where(table.__table__.c.journey_id.in_(opened)))
        conn.execute(delete(JOURNEYS).where(JOURNEYS.c.id.in_(opened)))
    _update_each(
        conn,
        JOURNEYS,
        [
            {"_id": int(j), "opened_at": from_micros(o), "stage_entered_at": from_micros(e)}
            for j, (o, e) in undo["lowered"].items()
        ],
    )
    by_status: dict[str, list[int]] = {}
    for journey_id, status in undo["statuses"].items():
        by_status.setdefault(status, []).append(int(journey_id))
    for status, ids in by_status.items():
        conn.execute(update(JOURNEYS).where(JOURNEYS.c.id.in_(ids)).values(status=status))
