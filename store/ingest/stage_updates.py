"""CRM stage updates: stored insert-or-ignore on lead, line, stage and time, applied by the next scoring run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from store.bulk import insert_ignore
from store.ingest.lookup import lookup
from store.ingest.reading import Progress, Raw
from store.ingest.report import IngestReport
from store.ingest.rows import STAGE_UPDATES, StageUpdateRow
from store.ingest.skeleton import Ingestion, run_chunks
from store.ingest.validation import validate
from store.tables import Lead, StageUpdate

_LEAD_TABLE = Lead.__table__
_CHECKED = list[tuple[Raw, StageUpdateRow]]


@dataclass
class _StageUpdateSteps:
    stages: Mapping[str, Sequence[str]]
    default_source: str

    def prepare(self, rows: list[Raw], run: Ingestion) -> _CHECKED:
        good, bad = validate(STAGE_UPDATES, [row.raw for row in rows])
        for index, (field_name, reason) in sorted(bad.items()):
            run.rejects.add(rows[index], field_name, reason)
        checked: _CHECKED = []
        for index, model in good:
            line_stages = self.stages.get(model.product_line)
            if line_stages is None:
                reason = f"unknown product line {model.product_line!r}; known: {', '.join(sorted(self.stages))}"
                run.rejects.add(rows[index], "product_line", reason)
            elif model.stage not in line_stages:
                known = ", ".join(line_stages)
                reason = f"unknown stage {model.stage!r} of product line {model.product_line!r}; known: {known}"
                run.rejects.add(rows[index], "stage", reason)
            else:
                checked.append((rows[index], model))
        return checked

    def write(self, conn: Connection, checked: _CHECKED, now: datetime, run: Ingestion) -> None:
        wanted = sorted({model.lead_id for _, model in checked})
        keys = dict(lookup(conn, _LEAD_TABLE.c.lead_id, wanted, [_LEAD_TABLE.c.lead_id, _LEAD_TABLE.c.key]))
        rows: list[dict[str, Any]] = []
        for row, model in checked:
            key = keys.get(model.lead_id)
            if key is None:
                run.rejects.add(row, "lead_id", f"unknown lead_id {model.lead_id!r} (ingest leads first)")
                continue
            rows.append(
                {
                    "lead_key": key,
                    "product_line": model.product_line,
                    "stage": model.stage,
                    "changed_at": model.changed_at,
                    "source": model.source or self.default_source,
                    "ingested_at": now,
                }
            )
            run.interests.add(key, model.product_line, model.changed_at)
        run.report.accepted += len(rows)
        run.report.inserted += insert_ignore(conn, StageUpdate.__table__, rows)  # type: ignore[arg-type]


def ingest_stage_updates(
    engine: Engine,
    path: Path,
    *,
    stages: Mapping[str, Sequence[str]],
    default_source: str = "crm",
    chunk_size: int = 50_000,
    progress: Progress | None = None,
) -> IngestReport:
    """Store external stage updates (insert-or-ignore on lead, line, stage and time), to be applied by
    the next scoring run. ``stages`` maps each product line to its stage names: anything else is
    rejected with the known names, like an unknown lead. ``interests`` lists the (lead, line) pairs so
    the caller can open the journeys a CRM update is the first sign of.
    """
    steps = _StageUpdateSteps(stages, default_source)
    table = StageUpdate.__table__
    return run_chunks(engine, path, "stage_updates", table, steps, chunk_size=chunk_size, progress=progress)  # type: ignore[arg-type]
