"""Merge benchmark: on the demo store (``benchmarks/score.py``'s data), merge N pairs of leads, then score,
against a plain scoring run of the same store. Target: merge + scoring within 2x the plain run.

Prints wall and CPU seconds (this machine is shared: CPU time is steadier) and the load average.

    .venv/bin/python benchmarks/identity.py --leads 200000 --events 5000000 --pairs 10000 [--workdir DIR]
"""

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.score import AS_OF, PORTFOLIO, _cpu_s, prepare  # noqa: E402


def _timed(step: object) -> tuple[object, float, float]:
    started, cpu = time.perf_counter(), _cpu_s()
    result = step()  # type: ignore[operator]
    return result, time.perf_counter() - started, _cpu_s() - cpu


def measure(workdir: Path, pairs: int) -> dict[str, float]:
    from prefect import flow
    from sqlalchemy import text

    from flows.database import engine_for
    from flows.scoring import score_portfolio
    from store.merges import Pair, merge, unmerge

    url = f"sqlite:///{workdir / 'bench.db'}"
    engine = engine_for(url)
    with engine.begin() as conn:  # a kept --workdir was merged before: start from no alias
        merged = [row[0] for row in conn.execute(text(
            "SELECT l.lead_id FROM lead_aliases a JOIN leads l ON l.key = a.merged_key WHERE a.unmerged_at IS NULL"
        ))]  # fmt: skip
    if merged:
        unmerge(engine, [Pair("", lead, "bench") for lead in merged], at=datetime.now(UTC))

    @flow
    def warm_up() -> None:
        """Starts Prefect's temporary server, which a deployed pipeline would already have running."""

    warm_up()

    def score() -> dict[str, object]:
        return score_portfolio(str(PORTFOLIO), as_of=AS_OF, database_url=url)

    _, first_s, _ = _timed(score)  # builds the event cache and writes the snapshots
    _, plain_s, plain_cpu = _timed(score)
    with engine.connect() as conn:
        ids = [
            row[0] for row in conn.execute(text("SELECT lead_id FROM leads ORDER BY key LIMIT :n"), {"n": 2 * pairs})
        ]
    wanted = [Pair(ids[i], ids[i + 1], f"pair {i // 2}") for i in range(0, len(ids) - 1, 2)]
    counts, merge_s, merge_cpu = _timed(lambda: merge(engine, wanted, at=datetime.now(UTC), source="benchmark"))
    summary, after_s, after_cpu = _timed(score)
    _, again_s, again_cpu = _timed(score)
    return {
        "pairs": counts["merged"],  # type: ignore[index]
        "journeys": summary["scored"],  # type: ignore[index]
        "changed_after_merge": summary["changed"],  # type: ignore[index]
        "first_run_s": first_s,
        "plain_s": plain_s,
        "plain_cpu_s": plain_cpu,
        "merge_s": merge_s,
        "merge_cpu_s": merge_cpu,
        "after_s": after_s,
        "after_cpu_s": after_cpu,
        "again_s": again_s,
        "again_cpu_s": again_cpu,
        "load_average": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--pairs", type=int, default=1_000)
    parser.add_argument("--workdir", type=Path, help="keep the data and store here (reused when present)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="leadscore-identity-"))
    workdir.mkdir(parents=True, exist_ok=True)
    prepared = workdir / "prepared.json"
    if not prepared.exists():
        prepared.write_text(json.dumps(prepare(workdir, args.leads, args.events)))
    f = measure(workdir, args.pairs)
    print(
        f"\n== {args.leads:,} leads / {args.events:,} events ({f['journeys']:,.0f} journeys), {f['pairs']:,.0f} pairs"
    )
    print(f"load average          {f['load_average']:8.2f}    (2 cores shared; above 2 wall times are inflated)")
    first = f"first run {f['first_run_s']:.1f} s"
    print(f"plain scoring run     {f['plain_s']:8.2f} s  ({f['plain_cpu_s']:.1f} CPU s; {first})")
    print(f"merge                 {f['merge_s']:8.2f} s  ({f['merge_cpu_s']:.1f} CPU s)")
    changed = f"{f['changed_after_merge']:,.0f} changed"
    print(f"scoring after merge   {f['after_s']:8.2f} s  ({f['after_cpu_s']:.1f} CPU s; {changed})")
    print(f"next scoring run      {f['again_s']:8.2f} s  ({f['again_cpu_s']:.1f} CPU s)")
    total, total_cpu = f["merge_s"] + f["after_s"], f["merge_cpu_s"] + f["after_cpu_s"]
    cpu = f"CPU {total_cpu / f['plain_cpu_s']:.2f} x"
    print(f"merge + scoring       {total / f['plain_s']:8.2f} x the plain run ({cpu}; target <= 2)")


if __name__ == "__main__":
    main()
