"""A scoring run's summary: each partition's result, the run's totals, and the Prefect artifacts made of them."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prefect.artifacts import create_table_artifact

TOP_N = 10


@dataclass
class PartitionResult:
    product_line: str
    key_range: tuple[int, int]
    scored: int = 0
    changed: int = 0  # journeys whose state changed (a replay: would change)
    snapshots: int = 0  # snapshots written (0 in a replay)
    bands: dict[str, int] = field(default_factory=dict)
    top: list[dict[str, Any]] = field(default_factory=list)
    transitions: dict[str, int] = field(default_factory=dict)  # "from → to (reason)" → journeys
    milestones: dict[str, int] = field(default_factory=dict)  # qualification → journeys reaching it
    firings: dict[str, int] = field(default_factory=dict)  # "trigger: action" → firings


def summarize(results: list[PartitionResult], run_id: str | None, as_of: datetime) -> dict[str, Any]:
    """Totals; per product line the band distribution per stage, transitions, milestones and firings;
    the top leads per (line, stage)."""
    totals: dict[str, dict[str, dict[str, int]]] = {
        name: {} for name in ("bands", "transitions", "milestones", "firings")
    }
    top: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        for name, per_line in totals.items():
            line_counts = per_line.setdefault(result.product_line, {})
            for key, n in getattr(result, name).items():
                line_counts[key] = line_counts.get(key, 0) + n
        for row in result.top:
            top.setdefault(f"{result.product_line}/{row['stage']}", []).append(row)
    top = {key: sorted(rows, key=lambda r: -r["score"])[:TOP_N] for key, rows in sorted(top.items())}
    changed = sum(r.changed for r in results)
    return {
        "run_id": run_id,
        "as_of": as_of.isoformat(),
        "scored": sum(r.scored for r in results),
        # A replay writes nothing: it says how many journeys the run it replays changed.
        "changed": changed if run_id is not None else 0,
        **({"snapshots": sum(r.snapshots for r in results)} if run_id is not None else {"would_change": changed}),
        **{name: {ln: dict(sorted(c.items())) for ln, c in per_line.items() if c} for name, per_line in totals.items()},
        "top": top,
    }


def publish(summary: dict[str, Any]) -> None:
    distribution = [
        {"product line": line, "stage/band": key, "journeys": n}
        for line, counts in summary["bands"].items()
        for key, n in sorted(counts.items())
    ]
    create_table_artifact(key="score-distribution", table=distribution, description="Journeys per stage and band")
    leaders = [{"where": key, **row} for key, rows in summary["top"].items() for row in rows]
    create_table_artifact(key="top-leads", table=leaders, description=f"Top {TOP_N} leads per product line and stage")
    changes = [
        {"product line": line, "kind": kind, "what": key, "journeys": n}
        for kind in ("transitions", "milestones", "firings")
        for line, counts in summary[kind].items()
        for key, n in counts.items()
    ]
    if summary.get("firing_outcomes"):
        create_table_artifact(
            key="trigger-firings", table=summary["firing_outcomes"], description="This run's trigger actions, outcomes"
        )
    create_table_artifact(
        key="funnel-changes", table=changes, description="Stage transitions, qualifications reached, trigger firings"
    )
