"""Soak test: daily runs against one store with faults injected at random, then the invariants checked.

Each simulated day drops that day's events (plus a slice of the day before, re-sent) into the drop
folder and runs ``daily_pipeline`` of a copy of the demo portfolio (with a webhook added to two of its
triggers) in its own process, against one store. Before a run, one fault may be injected:

- ``kill``: the run's process group gets SIGKILL at a random moment;
- ``outbox``: the outbox folder is replaced by a file, so no ``.eml`` can be written;
- ``webhook``: the webhook endpoint answers one byte a second, for ever;
- ``hostile``: a file with a 10 MB cell, a time out of range, non-UTF-8 bytes and infinite points (and
  good rows) is dropped beside the day's file.

After the last day one clean run settles what was left to retry. Then: every good event is stored once
(and no hostile one), no email is in the outbox twice (nor written twice), no crossing fired twice, and
no run is left ``running``. Prints the figures; exits 1 when an invariant is broken. It stops by itself:
each run has ``--run-timeout`` seconds (a run still going then counts as hung and is killed), and the
whole soak ``--max-minutes``.

    .venv/bin/python benchmarks/soak.py --runs 50 [--seed 1] [--database-url postgresql+psycopg://…]
"""

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEMO = ROOT / "examples" / "demo"
FAULTS = ("none", "kill", "outbox", "webhook", "hostile")
DAY0 = datetime(2026, 11, 2, 10, tzinfo=ZoneInfo("Europe/Paris"))  # a Monday, inside the send window
RUN = """
import sys
from datetime import datetime
from flows.daily import daily_pipeline
portfolio, url, as_of, inbox, work = sys.argv[1:6]
daily_pipeline(portfolio, database_url=url, as_of=datetime.fromisoformat(as_of), inbox=inbox,
               audiences_dir=work + "/audiences", report_path=work + "/report.html")
"""


class Webhook:
    """A loopback receiver: answers 200 at once, or (``slow``) one byte a second for ever."""

    def __init__(self) -> None:
        self.slow = False
        self.received: list[str] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                if hook.slow:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                    while hook.slow:
                        time.sleep(1)
                        try:
                            self.wfile.write(b"x")
                            self.wfile.flush()
                        except OSError:
                            return
                    return
                hook.received.append(self.headers["X-Leadscore-Delivery"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def portfolio_copy(work: Path, hook_url: str) -> Path:
    folder = work / "portfolio"
    shutil.copytree(DEMO, folder)
    path = folder / "portfolio.yaml"
    text = path.read_text()
    webhook = f'{{webhook: {{url: "{hook_url}"}}}}'
    for old, new in (
        ("          - tag: sales-ready\n", f"          - tag: sales-ready\n          - {webhook}\n"),
        ("[{tag: trial-hot}, {notify_owner: {}}]", f"[{{tag: trial-hot}}, {{notify_owner: {{}}}}, {webhook}]"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text)
    return path


def start_prefect(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A Prefect server for all the runs (each run would otherwise start its own temporary one)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PREFECT_HOME": str(work / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env["PREFECT_UI_ENABLED"] = "false"
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                return server, api
        except httpx.HTTPError:
            pass
        time.sleep(1)
    os.killpg(server.pid, signal.SIGKILL)
    raise RuntimeError("the Prefect server did not start within 180 s")


def day_events(work: Path, day: int, as_of: datetime, leads: int, per_day: int) -> pl.DataFrame:
    from examples.generate import generate

    scratch = work / "gen" / f"day{day}"
    generate(scratch, leads=leads, events=per_day, seed=1000 + day, as_of=as_of, days=1)
    frame = pl.read_csv(scratch / "events.csv", infer_schema=False)
    return frame.with_columns((f"d{day}-" + pl.col("event_id")).alias("event_id"))


def _csv_line(values: Any) -> str:
    return ",".join("" if v is None else '"' + str(v).replace('"', '""') + '"' for v in values) + "\n"


def hostile_file(path: Path, day: int, good: pl.DataFrame) -> list[str]:
    """Good rows around hostile ones (a 10 MB cell, a time out of range, infinite points, Latin-1 bytes);
    returns the good rows' ids."""
    rows = good.head(4).with_columns((f"h{day}-" + pl.col("event_id")).alias("event_id"))
    first = rows.row(0, named=True)
    bad = [
        {**first, "event_id": f"x{day}-huge", "properties": "x" * 10_000_000},
        {**first, "event_id": f"x{day}-time", "occurred_at": "0001-01-01T00:00:00+14:00"},
        {**first, "event_id": f"x{day}-inf", "type": "manual_adjustment", "properties": '{"points": 1e400}'},
    ]
    latin = _csv_line({**first, "event_id": f"x{day}-latin", "lead_id": first["lead_id"] + "\xe9"}.values())
    with path.open("wb") as handle:
        handle.write(_csv_line(rows.columns).encode())
        handle.write(_csv_line(rows.row(0)).encode())
        handle.writelines(_csv_line(row.values()).encode() for row in bad)
        handle.write(latin.encode("latin-1"))  # not UTF-8
        handle.writelines(_csv_line(row).encode() for row in rows.iter_rows())
    return rows["event_id"].to_list()


def run_day(args: argparse.Namespace, env: dict[str, str], portfolio: Path, as_of: datetime, inbox: Path,
            work: Path, kill_after: float | None) -> tuple[str, float]:  # fmt: skip
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-c", RUN, str(portfolio), args.database_url, as_of.isoformat(), str(inbox), str(work)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        process.wait(timeout=kill_after if kill_after is not None else args.run_timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return ("killed" if kill_after is not None else "hung"), time.monotonic() - started
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if process.returncode != 0:
        (work / "errors.log").open("a").write(f"--- {as_of} exit {process.returncode}\n{stderr[-3000:]}\n")
    return ("ok" if process.returncode == 0 else f"exit {process.returncode}"), time.monotonic() - started


def check(url: str, outbox: Path, good: set[str], hostile: set[str]) -> dict[str, Any]:
    from sqlalchemy import text

    from store.db import make_engine

    engine = make_engine(url)
    with engine.connect() as conn:
        stored = list(conn.execute(text("SELECT event_id FROM events")).scalars())
        doubled_mail = conn.execute(
            text("SELECT COUNT(*) FROM (SELECT kind, ref FROM outbox GROUP BY kind, ref HAVING COUNT(*) > 1) d")
        ).scalar_one()
        sent = conn.execute(text("SELECT COUNT(*) FROM outbox WHERE status = 'sent'")).scalar_one()
        mail = dict(conn.execute(text("SELECT status, COUNT(*) FROM outbox GROUP BY status")).all())
        doubled_firings = conn.execute(
            text(
                "SELECT COUNT(*) FROM (SELECT journey_id, trigger, action_index FROM trigger_firings "
                "WHERE direction = 'reached' GROUP BY journey_id, trigger, action_index HAVING COUNT(*) > 1) d"
            )
        ).scalar_one()
        firings = dict(conn.execute(text("SELECT status, COUNT(*) FROM trigger_firings GROUP BY status")).all())
        runs = dict(conn.execute(text("SELECT status, COUNT(*) FROM runs GROUP BY status")).all())
    engine.dispose()
    counted = Counter(stored)
    files = Counter(path.name for path in outbox.rglob("*.eml"))
    return {
        "good events": len(good),
        "good events missing": len(good - counted.keys()),
        "events stored twice": sum(1 for n in counted.values() if n > 1),
        "hostile events stored": len(hostile & counted.keys()),
        "emails by status": mail,
        "emails in the outbox twice": doubled_mail,
        "eml files": sum(files.values()),
        "eml files written twice": sum(1 for n in files.values() if n > 1),
        "sent without a file": max(0, sent - len(files)),
        "firings by status": firings,
        "sticky crossings fired twice": doubled_firings,
        "runs by status": runs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--leads", type=int, default=400)
    parser.add_argument("--events-per-day", type=int, default=400)
    parser.add_argument("--run-timeout", type=float, default=300)
    parser.add_argument("--max-minutes", type=float, default=90)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="leadscore-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    args.database_url = args.database_url or f"sqlite:///{work}/store.db"
    hook = Webhook()
    portfolio = portfolio_copy(work, hook.url)
    inbox, outbox = work / "inbox", work / "outbox"
    for kind in ("leads", "events"):
        (inbox / kind).mkdir(parents=True, exist_ok=True)
    from examples.generate import generate

    base = generate(
        work / "gen" / "base", leads=args.leads, events=args.leads * 20, seed=args.seed, as_of=DAY0, days=60
    )
    shutil.copy(base.leads, inbox / "leads" / "leads.csv")
    shutil.copy(base.events, inbox / "events" / "events-base.csv")
    good = set(pl.read_csv(base.events, infer_schema=False)["event_id"].to_list())
    hostile: set[str] = set()
    server, api = start_prefect(work)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "LEADSCORE_OUTBOX_DIR": str(outbox),
        "LEADSCORE_WEBHOOK_DEADLINE": "2",
        "LEADSCORE_WEBHOOK_BUDGET": "6",
        "LEADSCORE_RUN_LOCK_WAIT": "60",
    }
    log: list[dict[str, Any]] = []
    soak_started = time.monotonic()
    previous: pl.DataFrame | None = None
    try:
        for day in range(args.runs + 1):  # the last one is the clean settling run
            if time.monotonic() - soak_started > args.max_minutes * 60:
                print(f"stopping after {day} runs: --max-minutes {args.max_minutes} reached", flush=True)
                break
            last = day == args.runs
            as_of = DAY0 + timedelta(days=day)
            fault = "none" if last or day == 0 else rng.choice(FAULTS)
            if not last:
                events = day_events(work, day, as_of, args.leads, args.events_per_day)
                if previous is not None:  # a slice of yesterday re-sent: stored once all the same
                    events = pl.concat([events, previous.head(args.events_per_day // 5)])
                events.write_csv(inbox / "events" / f"events-{day:03d}.csv")
                good |= set(events["event_id"].to_list())
                previous = events
            if fault == "hostile":
                path = inbox / "events" / f"hostile-{day:03d}.csv"
                good |= set(hostile_file(path, day, events))
                hostile |= {f"x{day}-huge", f"x{day}-time", f"x{day}-inf", f"x{day}-latin"}
            if fault == "outbox":
                if outbox.exists():
                    outbox.rename(work / "outbox-aside")
                outbox.write_text("not a folder: every .eml write fails\n")
            hook.slow = fault == "webhook"
            kill_after = rng.uniform(3, 25) if fault == "kill" else None
            outcome, seconds = run_day(args, env, portfolio.resolve(), as_of, inbox, work, kill_after)
            hook.slow = False
            if fault == "outbox":
                outbox.unlink()
                if (work / "outbox-aside").exists():
                    (work / "outbox-aside").rename(outbox)
            log.append({"day": day, "fault": fault, "outcome": outcome, "seconds": round(seconds, 1)})
            print(json.dumps(log[-1]), flush=True)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        hook.server.shutdown()
    figures = check(args.database_url, outbox, good, hostile)
    seconds = [entry["seconds"] for entry in log if entry["outcome"] != "killed"]
    summary = {
        "runs": len(log),
        "faults": dict(Counter(entry["fault"] for entry in log)),
        "outcomes": dict(Counter(entry["outcome"] for entry in log)),
        "seconds per run (not killed): median, max": [sorted(seconds)[len(seconds) // 2], max(seconds)]
        if seconds
        else [],
        "webhook deliveries received, distinct": [len(hook.received), len(set(hook.received))],
        "soak minutes": round((time.monotonic() - soak_started) / 60, 1),
        **figures,
        "workdir": str(work),
    }
    print(json.dumps(summary, indent=2, default=str))
    broken = (
        figures["good events missing"]
        or figures["events stored twice"]
        or figures["hostile events stored"]
        or figures["emails in the outbox twice"]
        or figures["eml files written twice"]
        or figures["sticky crossings fired twice"]
        or figures["runs by status"].get("running", 0)
        or summary["outcomes"].get("hung", 0)
    )
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
