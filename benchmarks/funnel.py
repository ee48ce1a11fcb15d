"""What stage transitions and triggers add to a scoring run (target: ≤ 25 %).

Runs ``score_portfolio`` on the store that ``benchmarks/score.py --workdir DIR`` prepared (200k leads,
5M events by default) with two portfolios that differ only by the funnel: the demo portfolio as shipped
(promotions, terminal stages, triggers with owner alerts, tags and track moves) and the same portfolio
with those removed. Each variant starts from the same reset store (no scores, every journey back in
its first stage) and runs twice: a first run (every journey changes, promotions, milestones, firings,
alert emails to a scratch outbox) and a steady-state re-run. Prints the wall time of each and the
overhead of the funnel.

    .venv/bin/python benchmarks/score.py --workdir /tmp/bench          # once: generates and ingests
    .venv/bin/python benchmarks/funnel.py --workdir /tmp/bench
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo" / "portfolio.yaml"
RESET = (
    "DELETE FROM score_snapshots",
    "DELETE FROM stage_transitions",
    "DELETE FROM qualification_milestones",
    "DELETE FROM trigger_arms",
    "DELETE FROM trigger_firings",
    "DELETE FROM lead_tags",
    "DELETE FROM outbox",
    "DELETE FROM nurture_requests",
    "UPDATE journeys SET stage = 'discovery', status = 'active', stage_entered_at = opened_at, score_from = NULL, "
    "score = NULL, band = NULL, qualification = NULL, updated_run_id = NULL",
)


def variants(folder: Path) -> dict[str, Path]:
    """The demo portfolio as shipped and without its funnel, with model paths made absolute."""
    spec = yaml.safe_load(DEMO.read_text())
    for line in spec["product_lines"].values():
        for stage in line["stages"].values():
            if "model" in stage:
                stage["model"] = str((DEMO.parent / stage["model"]).resolve())
    full = folder / "funnel.yaml"
    full.write_text(yaml.safe_dump(spec, sort_keys=False))
    for line in spec["product_lines"].values():
        line.pop("triggers", None)
        line["stages"] = {name: stage for name, stage in line["stages"].items() if not stage.get("terminal")}
        for stage in line["stages"].values():
            stage.pop("promote_at", None)
    plain = folder / "plain.yaml"
    plain.write_text(yaml.safe_dump(spec, sort_keys=False))
    for name in ("templates",):  # the demo's own email templates, found relative to the portfolio
        shutil.copytree(DEMO.parent / name, folder / name, dirs_exist_ok=True)
    return {"scoring only": plain, "with funnel": full}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="the --workdir of benchmarks/score.py")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    database = args.workdir / "bench.db"
    if not database.exists():
        sys.exit(f"{database} not found: run benchmarks/score.py --workdir {args.workdir} first")
    scratch = Path(tempfile.mkdtemp(prefix="leadscore-funnel-"))
    os.environ["LEADSCORE_OUTBOX_DIR"] = str(scratch / "outbox")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    url = f"sqlite:///{database.resolve()}"

    from prefect.settings import temporary_settings
    from sqlalchemy import text

    from flows.database import engine_for
    from flows.scoring import score_portfolio

    portfolios = variants(scratch)
    engine = engine_for(url)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in portfolios}
    with temporary_settings({"flows.heartbeat_frequency": None}):
        score_portfolio(str(portfolios["scoring only"]), database_url=url)  # warm-up: server start, caches
        for _ in range(args.rounds):
            for name, path in portfolios.items():
                with engine.begin() as conn:
                    for statement in RESET:
                        conn.execute(text(statement))
                start = time.perf_counter()
                first = score_portfolio(str(path), database_url=url)
                middle = time.perf_counter()
                score_portfolio(str(path), database_url=url)
                end = time.perf_counter()
                times[name].append((middle - start, end - middle))
                firings = sum(sum(c.values()) for c in first.get("firings", {}).values())
                moves = sum(sum(c.values()) for c in first.get("transitions", {}).values())
                print(
                    f"{name:>13}: first run {middle - start:6.2f} s ({first['scored']:,} journeys, {moves:,} "
                    f"transitions, {firings:,} firings), re-run {end - middle:6.2f} s"
                )
    best = {name: (min(t[0] for t in runs), min(t[1] for t in runs)) for name, runs in times.items()}
    plain, full = best["scoring only"], best["with funnel"]
    first, rerun = (100 * (full[i] / plain[i] - 1) for i in (0, 1))
    print(f"funnel overhead: first run {first:+.1f} %, re-run {rerun:+.1f} %")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
