"""Learning benchmark: ``learn`` on 100,000 historical leads with 2,000,000 events (target: <= 60 s for points,
<= 120 s for probability).

Generates the demo data (examples/generate.py), makes a history (a lead converted when it converted in
any product line; cutoff = the generator's as_of, so every event counts and none comes after), then runs
the same ``learn`` the CLI runs — 5-fold cross-validation plus the final fit — and prints each step's
time, the peak memory, the CPU seconds (what a busy shared machine inflates least) and the load average.

    .venv/bin/python benchmarks/learn.py --leads 100000 --events 2000000 [--kind points|probability]
"""

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
PERSONAL = ("email", "phone", "first_name", "last_name", "owner_email", "company", "zip")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--kind", choices=("points", "probability"), default="points")
    args = parser.parse_args()

    import polars as pl

    from examples.generate import generate
    from models.learning.learn import LearnParams, learn

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        started = time.perf_counter()
        data = generate(work, leads=args.leads, events=args.events, seed=1, as_of=AS_OF)
        outcome = pl.read_csv(data.outcomes).group_by("lead_id").agg(pl.col("converted").max())
        history = (
            pl.read_csv(data.leads, infer_schema=False)
            .join(outcome.select("lead_id", pl.col("converted").cast(pl.Utf8)), on="lead_id", how="left")
            .with_columns(pl.col("converted").fill_null("0"), cutoff=pl.lit(AS_OF.isoformat()))
        )
        history.write_csv(work / "history.csv")
        prepared, cpu = time.perf_counter(), time.process_time()
        steps: list[tuple[str, float]] = []
        learned = learn(
            work / "history.csv",
            target="converted",
            out=work / "model.yaml",
            params=LearnParams(kind=args.kind),
            events_path=data.events,
            cutoff_column="cutoff",
            id_column="lead_id",
            drop=PERSONAL,
            progress=lambda step: steps.append((step, time.perf_counter())),
        )
        done, cpu = time.perf_counter(), time.process_time() - cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    marks = [*steps, ("written", done)]
    phases = {name: round(marks[i + 1][1] - at, 2) for i, (name, at) in enumerate(marks[:-1])}
    metrics = learned.metrics
    print(
        json.dumps(
            {
                "leads": history.height,
                "converted": int(history.get_column("converted").cast(pl.Int64).sum()),
                "events": data.event_rows,
                "kind": args.kind,
                "generate_s": round(prepared - started, 2),
                "learn_s": round(done - prepared, 2),
                "learn_cpu_s": round(cpu, 2),  # this process's CPU time: what a shared, busy machine does not inflate
                "phases_s": phases,
                "peak_rss_mb": round(peak_mb),
                "rules": len(learned.model.fit) + len(learned.model.behaviour),
                "cv_auc": {label: m["auc"] for label, m in metrics.items()},
                "cv_capture_top20": {label: m["capture_top20"] for label, m in metrics.items()},
                "chosen": learned.model.metadata["learned"]["chosen"].get("estimator"),
                "loadavg": os.getloadavg(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
