"""Scoring benchmark: generate, ingest and score the demo portfolio at 200k leads / 5M events.

Prints ingest time, the time of one plain grouped scan of the events table (the baseline), the full
scoring time (first run, which writes every snapshot and builds the event cache, and a steady-state
re-run, which reads the cache), their ratio to the baseline, the CPU seconds they used (this machine
is shared: CPU time is steadier than wall time under load), peak memory of the scoring processes, and
optionally the cost of 4x the data.

    .venv/bin/python benchmarks/score.py --leads 200000 --events 5000000 [--scale-check]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
PORTFOLIO = ROOT / "examples" / "demo" / "portfolio.yaml"


def prepare(workdir: Path, leads: int, events: int, url: str | None = None) -> dict[str, float]:
    """Generate the demo data into ``workdir/data`` and ingest it (into ``workdir/bench.db`` unless ``url``)."""
    from examples.generate import generate
    from flows.ingestion import ingest_file
    from stages.portfolio import load_portfolio

    url = url or f"sqlite:///{workdir / 'bench.db'}"
    started = time.perf_counter()
    data = generate(workdir / "data", leads=leads, events=events, seed=1, as_of=AS_OF)
    generated = time.perf_counter()
    portfolio = load_portfolio(PORTFOLIO)
    ingest_file(portfolio, "leads", data.leads, url)
    leads_done = time.perf_counter()
    report = ingest_file(portfolio, "events", data.events, url)
    done = time.perf_counter()
    return {
        "generate_s": generated - started,
        "ingest_leads_s": leads_done - generated,
        "ingest_events_s": done - leads_done,
        "events_per_s": report.report.inserted / (done - leads_done),
        "events": report.report.inserted,
    }


def measure(workdir: Path) -> dict[str, float]:
    """The baseline scan, then real ``score_portfolio`` flow runs (after a warm-up flow starts Prefect)."""
    import sqlite3

    from prefect import flow

    from flows.database import engine_for
    from flows.scoring import score_portfolio
    from store.event_cache import drop_cache

    db = workdir / "bench.db"
    con = sqlite3.connect(db)
    scans = []
    for _ in range(3):
        started = time.perf_counter()
        con.execute("SELECT lead_key, count(*) FROM events GROUP BY lead_key").fetchall()
        scans.append(time.perf_counter() - started)
    con.close()

    con = sqlite3.connect(db)  # a kept --workdir was scored before: make the first run a true first run
    con.execute("UPDATE journeys SET score = NULL, band = NULL, qualification = NULL, updated_run_id = NULL")
    con.execute("DELETE FROM score_snapshots")
    con.commit()
    con.close()
    drop_cache(engine_for(f"sqlite:///{db}"))

    @flow
    def warm_up() -> None:
        """Starts Prefect's temporary server, which a deployed pipeline would already have running."""

    warm_up()
    figures: dict[str, float] = {"grouped_scan_s": min(scans), "load_average": os.getloadavg()[0]}
    for label in ("first_run", "rerun"):
        started, cpu = time.perf_counter(), _cpu_s()
        summary = score_portfolio(str(PORTFOLIO), as_of=AS_OF, database_url=f"sqlite:///{db}")
        figures[f"{label}_s"] = time.perf_counter() - started
        figures[f"{label}_cpu_s"] = _cpu_s() - cpu
        figures[f"{label}_changed"] = summary["changed"]
        figures["journeys"] = summary["scored"]
    figures["ratio_to_scan"] = figures["rerun_s"] / figures["grouped_scan_s"]
    figures["peak_rss_mb"] = _peak_mb()
    return figures


def _cpu_s() -> float:
    """CPU seconds used so far by this process and its live SQLite reader processes."""
    from store import sqlite_read_workers

    total = time.process_time()
    for worker in sqlite_read_workers.reader_workers():
        fields = Path(f"/proc/{worker.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return total


def _peak_mb() -> float:
    """Peak resident memory of this process plus its SQLite reader processes (VmHWM of each)."""
    from store import sqlite_read_workers

    pids = ["self", *(str(worker.process.pid) for worker in sqlite_read_workers.reader_workers())]
    total_kb = 0
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        total_kb += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
    return total_kb / 1024


def run_size(leads: int, events: int, workers: int, keep: Path | None) -> dict[str, float]:
    workdir = keep or Path(tempfile.mkdtemp(prefix="leadscore-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    prepared = workdir / "prepared.json"
    if prepared.exists():  # a kept --workdir: reuse its data and store
        figures = json.loads(prepared.read_text())
    else:
        figures = _child("prepare", workdir, leads, events, workers)
        prepared.write_text(json.dumps(figures))
    figures |= _child("measure", workdir, leads, events, workers)
    return figures


def _child(phase: str, workdir: Path, leads: int, events: int, workers: int) -> dict[str, float]:
    """Each phase in its own process, so peak memory is the scoring process's own."""
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--phase",
            phase,
            "--workdir",
            str(workdir),
            "--leads",
            str(leads),
            "--events",
            str(events),
            "--workers",
            str(workers),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "LEADSCORE_WORKERS": str(workers)},
    )
    if out.returncode != 0:
        sys.exit(f"benchmark phase {phase!r} failed:\n{out.stderr[-5000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scale-check", action="store_true", help="also run at 1/4 of the size and compare")
    parser.add_argument("--workdir", type=Path, help="keep the data here (the quarter size in DIR/quarter)")
    parser.add_argument("--phase", choices=["prepare", "measure"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "prepare":
        print(json.dumps(prepare(args.workdir, args.leads, args.events)))
        return
    if args.phase == "measure":
        print(json.dumps(measure(args.workdir)))
        return
    sizes = (
        [(args.leads // 4, args.events // 4), (args.leads, args.events)]
        if args.scale_check
        else [(args.leads, args.events)]
    )
    results = {}
    for leads, events in sizes:
        keep = args.workdir if args.workdir is None or leads == args.leads else args.workdir / "quarter"
        figures = run_size(leads, events, args.workers, keep)
        results[(leads, events)] = figures
        print(f"\n== {leads:,} leads / {events:,} events ({figures['journeys']:,.0f} journeys)")
        print(f"generate            {figures['generate_s']:8.1f} s")
        print(f"ingest leads        {figures['ingest_leads_s']:8.1f} s")
        print(f"ingest events       {figures['ingest_events_s']:8.1f} s  ({figures['events_per_s']:,.0f} events/s)")
        print(f"load average        {figures['load_average']:8.2f}    (2 cores; above 2 the times below are inflated)")
        print(f"grouped scan        {figures['grouped_scan_s']:8.2f} s  (SELECT lead_key, count(*) ... GROUP BY)")
        print(
            f"scoring, first run  {figures['first_run_s']:8.2f} s  ({figures['first_run_changed']:,.0f} snapshots; "
            f"{figures['first_run_cpu_s']:.1f} CPU s)"
        )
        print(
            f"scoring, re-run     {figures['rerun_s']:8.2f} s  ({figures['rerun_changed']:,.0f} snapshots; "
            f"{figures['rerun_cpu_s']:.1f} CPU s)"
        )
        print(f"re-run / scan       {figures['ratio_to_scan']:8.2f} x  (target <= 5)")
        print(f"peak memory         {figures['peak_rss_mb']:8.0f} MB (scoring process; target <= 2048)")
    if args.scale_check:
        (small, big) = results.values()
        print(f"\n4x data costs {big['rerun_s'] / small['rerun_s']:.2f}x the scoring time (target <= 4.5)")


if __name__ == "__main__":
    main()
