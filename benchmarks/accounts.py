"""Account scoring benchmark: 20,000 accounts over the 200k-lead / 5M-event demo store, against a plain
scoring run of the same store (target: account scoring within 2x the scoring run).

The store is generated and ingested as ``benchmarks/score.py`` does; then an accounts file of
``--accounts`` companies is ingested and every lead is given one of them as its ``account_id`` (a
leads update file), and the demo portfolio is copied with an account model on ``crm-suite``. The
measure phase runs in its own process: a warm-up flow, a first scoring run, the plain scoring re-run
(the baseline), then account scoring twice (the first writes every snapshot, the second only changes).
CPU seconds include the SQLite reader processes; the load average is printed beside them.

    .venv/bin/python benchmarks/accounts.py [--leads 200000 --events 5000000 --accounts 20000] [--workdir DIR]
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.score import AS_OF, _cpu_s, prepare  # noqa: E402

ACCOUNT_MODEL = """
    account_model:
      fit:
        - {name: target industry, when: {industry: {in: [software, fintech, retail]}}, points: 15}
        - {name: mid-market, when: {employees: {between: [200, 5000]}}, points: 10}
        - {name: EMEA, when: {region: {eq: EMEA}}, points: 5}
      engaged: {within_days: 30}
      seniority:
        attribute: job_title
        levels: {executive: "(?i)chief|\\\\bvp\\\\b|vice president|founder", director: "(?i)director|head of",
                 manager: "(?i)manager|lead"}
      rollups:
        - {name: best member, metric: max_score, points: 0.4}
        - {name: team heat, metric: sum_score, points: 0.05, max: 15}
        - {name: engaged members, metric: engaged_members, points: 5, max: 20}
        - {name: seniorities reached, metric: seniorities, points: 4}
        - {name: big team, metric: members, at_least: 10, points: 5}
      qualifications:
        buying group engaged: {engaged_members: 3, seniorities_any: [executive, director]}
      triggers:
        - name: hot account
          when: {score: {crosses_up: 60}}
          actions: [{notify_owner: {}}]
        - name: buying group
          when: {qualification_reached: buying group engaged}
          actions: [{notify_owner: {}}]
"""


def portfolio_copy(workdir: Path) -> Path:
    """The demo portfolio with an account model on crm-suite, in ``workdir/portfolio``."""
    folder = workdir / "portfolio"
    if not folder.exists():
        shutil.copytree(ROOT / "examples" / "demo", folder)
        text = (folder / "portfolio.yaml").read_text()
        anchor = "    opportunity_stage: purchase\n"
        assert anchor in text
        (folder / "portfolio.yaml").write_text(text.replace(anchor, anchor + ACCOUNT_MODEL.lstrip("\n"), 1))
    return folder / "portfolio.yaml"


def prepare_accounts(workdir: Path, leads: int, events: int, accounts: int) -> dict[str, float]:
    """The scoring store, then the accounts file and every lead's account_id."""
    import polars as pl

    from flows.ingestion import ingest_file
    from stages.portfolio import load_portfolio

    figures = prepare(workdir, leads, events)
    url = f"sqlite:///{workdir / 'bench.db'}"
    portfolio = load_portfolio(portfolio_copy(workdir))
    rng = random.Random(1)
    industries = ["software", "fintech", "retail", "health", "manufacturing", "media"]
    rows = [
        {
            "account_id": f"A{n:05d}",
            "name": f"Company {n}",
            "domain": f"company{n}.example",
            "industry": rng.choice(industries),
            "employees": rng.choice([5, 40, 250, 1200, 9000]),
            "region": rng.choice(["EMEA", "NA", "APAC"]),
            "owner": f"owner{n % 40}@seller.example",
            "tier": rng.choice(["gold", "silver", "bronze"]),
        }
        for n in range(accounts)
    ]
    accounts_csv = workdir / "accounts.csv"
    pl.DataFrame(rows).write_csv(accounts_csv)
    lead_ids = pl.read_csv(workdir / "data" / "leads.csv", columns=["lead_id"], infer_schema=False)["lead_id"]
    owners = pl.DataFrame({"lead_id": lead_ids, "account_id": [f"A{rng.randrange(accounts):05d}" for _ in lead_ids]})
    owners_csv = workdir / "lead_accounts.csv"
    owners.write_csv(owners_csv)
    started = time.perf_counter()
    ingest_file(portfolio, "accounts", accounts_csv, url)
    ingest_file(portfolio, "leads", owners_csv, url)
    figures["ingest_accounts_s"] = time.perf_counter() - started
    return figures


def measure(workdir: Path) -> dict[str, float]:
    from prefect import flow

    from flows.accounts import score_all_accounts
    from flows.database import engine_for
    from flows.scoring import score_portfolio
    from stages.portfolio import load_portfolio

    url = f"sqlite:///{workdir / 'bench.db'}"
    path = portfolio_copy(workdir)

    @flow
    def warm_up() -> None:
        """Starts Prefect's temporary server, which a deployed pipeline would already have running."""

    warm_up()
    score_portfolio(str(path), as_of=AS_OF, database_url=url)  # the lead scores the accounts roll up
    figures: dict[str, float] = {}
    started, cpu = time.perf_counter(), _cpu_s()
    score_portfolio(str(path), as_of=AS_OF, database_url=url)
    figures["scoring_s"], figures["scoring_cpu_s"] = time.perf_counter() - started, _cpu_s() - cpu
    figures["load_scoring"] = os.getloadavg()[0]
    engine, portfolio = engine_for(url), load_portfolio(path)
    for label in ("accounts_first", "accounts_rerun"):
        started, cpu = time.perf_counter(), _cpu_s()
        summary = score_all_accounts(engine, portfolio, AS_OF, write=True)
        figures[f"{label}_s"], figures[f"{label}_cpu_s"] = time.perf_counter() - started, _cpu_s() - cpu
        entry = summary["lines"]["crm-suite"]
        figures[f"{label}_snapshots"] = entry["snapshots"]
        figures[f"{label}_firings"] = entry["firings"]
        figures["accounts"], figures["members"] = entry["accounts"], summary["members"]
    figures["load_accounts"] = os.getloadavg()[0]
    return figures


def _child(phase: str, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    command = [sys.executable, __file__, "--phase", phase, "--workdir", str(workdir)]
    command += ["--leads", str(args.leads), "--events", str(args.events), "--accounts", str(args.accounts)]
    out = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ))
    if out.returncode != 0:
        sys.exit(f"benchmark phase {phase!r} failed:\n{out.stderr[-5000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, help="keep the data and store here (reused when present)")
    parser.add_argument("--phase", choices=["prepare", "measure"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "prepare":
        print(json.dumps(prepare_accounts(args.workdir, args.leads, args.events, args.accounts)))
        return
    if args.phase == "measure":
        print(json.dumps(measure(args.workdir)))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="leadscore-accounts-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    prepared = workdir / "prepared-accounts.json"
    if prepared.exists():
        figures = json.loads(prepared.read_text())
    else:
        figures = _child("prepare", args, workdir)
        prepared.write_text(json.dumps(figures))
    figures |= _child("measure", args, workdir)
    print(f"\n== {args.leads:,} leads / {figures['events']:,.0f} events; {figures['accounts']:,.0f} accounts")
    print(f"({figures['members']:,.0f} leads in an account)")
    print(f"ingest accounts + lead account ids {figures['ingest_accounts_s']:8.1f} s")
    print(
        f"plain scoring run (re-run)   {figures['scoring_s']:8.2f} s wall {figures['scoring_cpu_s']:8.2f} CPU s"
        f"   load {figures['load_scoring']:.2f}"
    )
    for label, name in (("accounts_first", "account scoring, first"), ("accounts_rerun", "account scoring, re-run")):
        print(
            f"{name:<28} {figures[f'{label}_s']:8.2f} s wall {figures[f'{label}_cpu_s']:8.2f} CPU s"
            f"   ({figures[f'{label}_snapshots']:,.0f} snapshots, {figures[f'{label}_firings']:,.0f} firings)"
        )
    print(f"load average after           {figures['load_accounts']:.2f} (2 cores shared)")
    worst = max(figures["accounts_first_s"], figures["accounts_rerun_s"])
    print(f"account scoring / scoring run {worst / figures['scoring_s']:.2f} x wall (target <= 2)")


if __name__ == "__main__":
    main()
