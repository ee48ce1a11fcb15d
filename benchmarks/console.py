"""Page times of the console on a large store: the leads list (50 rows, several filters and sorts, "became MQL
since" an old and a recent date) and lead pages of random leads, each fetched over HTTP from the real service
(uvicorn on 127.0.0.1, one worker), signed in; then the nurture, models and report pages (no target).
Per page and filter: median and p95 wall time, and the service process's CPU time per request (the machine
is shared: CPU says what the page costs, wall time what a person waits); the load average at the end.

The store is a copy of an existing SQLite store (``--store``, e.g. the 200k-lead daily benchmark's), so the
original is never migrated or written; the copy is deleted at the end.

    .venv/bin/python benchmarks/console.py --store /path/to/bench.db [--requests 40]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.api import start_service  # noqa: E402
from store.db import make_engine  # noqa: E402
from store.users import add_user  # noqa: E402

PORTFOLIO = ROOT / "examples" / "demo" / "portfolio.yaml"
PASSWORD = "benchmark-password-0123"
LIST_TARGET_MS, LEAD_TARGET_MS = 200.0, 150.0
LISTS: list[dict[str, str]] = [
    {},
    {"product_line": "crm-suite"},
    {"product_line": "crm-suite", "band": "hot"},
    {"stage": "evaluation", "sort": "score_asc"},
    {"qualification": "MQL"},
    {"mql_since": "2000-01-01"},
    {"q": "example"},
    {"page": "40"},
]


def start(url: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The service with the console on (it needs a session secret), one worker."""
    return start_service(url, 1, workdir, {"LEADSCORE_SESSION_SECRET": "benchmark-session-secret-0123456789abcdef"})


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(client: httpx.Client, path: str, params: dict[str, str], pid: int) -> tuple[float, float]:
    """Wall and service CPU milliseconds of one request."""
    cpu, began = cpu_seconds(pid), time.perf_counter()
    answer = client.get(path, params=params)
    elapsed = (time.perf_counter() - began) * 1000
    if answer.status_code != 200:
        raise RuntimeError(f"{path} {params}: {answer.status_code} {answer.text[:200]}")
    return elapsed, (cpu_seconds(pid) - cpu) * 1000


def summary(samples: list[tuple[float, float]], target: float | None) -> dict[str, Any]:
    ordered = sorted(wall for wall, _ in samples)
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
        "max_ms": round(ordered[-1], 1),
        "cpu_ms_per_request": round(statistics.mean(cpu for _, cpu in samples), 1),
        "target_ms": target,
    }


def measure(
    client: httpx.Client, path: str, params: dict[str, str], pid: int, rounds: int
) -> list[tuple[float, float]]:
    timed(client, path, params, pid)  # warm: the first read of an index from disk
    samples = [timed(client, path, params, pid) for _ in range(rounds)]
    shown = summary(samples, None)
    print(f"{path} {json.dumps(params)}: median {shown['median_ms']} ms, p95 {shown['p95_ms']} ms, "
          f"CPU {shown['cpu_ms_per_request']} ms/request", flush=True)  # fmt: skip
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True, help="a SQLite store to copy (left untouched)")
    parser.add_argument("--requests", type=int, default=40, help="lead pages fetched (and list pages per filter / 5)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="leadscore-console-bench-"))
    try:
        began = time.monotonic()
        shutil.copy(args.store, workdir / "store.db")
        url = f"sqlite:///{workdir}/store.db"
        engine = make_engine(url)  # migrates the copy (the console's tables and indexes)
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
            leads = conn.execute(text("SELECT count(*) FROM leads")).scalar_one()
            ids = [row[0] for row in conn.execute(text("SELECT lead_id FROM leads ORDER BY key"))]
            last = conn.execute(text("SELECT max(reached_at) FROM qualification_milestones")).scalar_one()
        add_user(engine, "bench@acme.example", "Bench", "admin", PASSWORD)
        engine.dispose()
        print(f"store: {leads:,} leads, copied and migrated in {time.monotonic() - began:.1f} s", flush=True)
        process, base = start(url, workdir)
        try:
            client = httpx.Client(base_url=base, timeout=60)
            login = client.get("/console/login").text
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', login).group(1)  # type: ignore[union-attr]
            form = {"csrf": csrf, "email": "bench@acme.example", "password": PASSWORD, "next": "/console/leads"}
            assert client.post("/console/login", data=form).status_code == 303
            rounds = max(1, args.requests // 5)
            results: dict[str, Any] = {"leads": leads}
            lists = list(LISTS)
            if last is not None:  # the last week's MQLs: a selective "since" (stored as microseconds)
                week_before = datetime.fromtimestamp(last / 1e6, UTC) - timedelta(days=7)
                lists.append({"mql_since": week_before.date().isoformat()})
            all_lists: list[tuple[float, float]] = []
            results["list_page_per_filter"] = {}
            for params in lists:
                samples = measure(client, "/console/leads", params, process.pid, rounds)
                results["list_page_per_filter"][json.dumps(params)] = summary(samples, LIST_TARGET_MS)
                all_lists += samples
            results["list_page"] = summary(all_lists, LIST_TARGET_MS)
            sample = random.Random(args.seed).sample(ids, args.requests)
            timed(client, f"/console/leads/{sample[0]}", {}, process.pid)
            lead_samples = [timed(client, f"/console/leads/{i}", {}, process.pid) for i in sample]
            results["lead_page"] = summary(lead_samples, LEAD_TARGET_MS)
            for path in ("/console/queue", "/console/nurture", "/console/models", "/console/report"):
                results[path] = summary(measure(client, path, {}, process.pid, 3), None)
            client.close()
        finally:
            process.terminate()
            process.wait(timeout=30)
        load = os.getloadavg()[0]
        results["load_average"] = round(load, 2)
        print(json.dumps(results))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
