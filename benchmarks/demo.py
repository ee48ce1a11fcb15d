"""``leadscore demo`` at a given size: wall and CPU seconds, per step, with the machine's load.

Target (issue #23): ≤ 90 s wall at the default size on a 2-core machine, ≤ 60 CPU s. The machine is
shared, so the CPU seconds are the figure to compare: this process's, plus its helper processes' (the
SQLite reader processes, sampled every 0.5 s since they outlive the run), beside the wall time and
``/proc/loadavg``.

    .venv/bin/python benchmarks/demo.py --workdir /tmp/demo-bench            # 60 days, 3,000 leads, 60,000 events
    .venv/bin/python benchmarks/demo.py --workdir /tmp/demo-bench --days 21 --leads 600 --events 12000
"""

import argparse
import contextlib
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

from flows.demo import run_demo
from store.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="emptied first")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--leads", type=int, default=3_000)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)

    me, helpers, done = psutil.Process(), {}, threading.Event()

    def sample() -> None:  # helper processes' CPU, read while they run
        while not done.wait(0.5):
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):  # it ended between listing and reading
                    helpers[child.pid] = sum(child.cpu_times()[:2])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    wall, cpu = time.perf_counter(), time.process_time()
    summary = run_demo(
        args.workdir,
        leads=args.leads,
        events=args.events,
        days=args.days,
        seed=args.seed,
        as_of=datetime(2026, 12, 4, 12, tzinfo=UTC),
        settings=Settings(),
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    done.set()
    sampler.join()
    steps: dict[str, float] = {}
    for day in summary["days"]:
        for step, seconds in day["timings"].items():
            steps[step] = steps.get(step, 0.0) + seconds
    print(f"demo: {args.days} days, {args.leads:,} leads, {args.events:,} events (seed {args.seed})")
    print(f"wall {wall:.1f} s; CPU {cpu:.1f} s in process + {sum(helpers.values()):.1f} s in helper processes")
    print("wall per step, summed over the days: " + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()))
    print(f"load average at the end: {Path('/proc/loadavg').read_text().strip()}")


if __name__ == "__main__":
    main()
