"""A scored-able demo store for the operations tests: the demo portfolio on small generated data."""

import shutil
from datetime import UTC, datetime
from pathlib import Path

from examples.generate import generate
from flows.ingestion import ingest_file
from stages.portfolio import load_portfolio

DEMO_DIR = Path(__file__).resolve().parents[2] / "examples" / "demo"
AS_OF = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)


def demo_portfolio(directory: Path, partition_size: int) -> Path:
    """A copy of the demo portfolio whose scoring partitions hold ``partition_size`` leads (so several tasks)."""
    shutil.copytree(DEMO_DIR, directory, dirs_exist_ok=True)
    path = directory / "portfolio.yaml"
    text = path.read_text()
    assert text.count("partition_size: 25000") == 1
    path.write_text(text.replace("partition_size: 25000", f"partition_size: {partition_size}"))
    return path


def load_demo(portfolio: Path, data_dir: Path, database_url: str, *, leads: int, events: int) -> None:
    """Generate the demo data (seed 0, as of ``AS_OF``) once into ``data_dir`` and ingest it."""
    if not (data_dir / "events.csv").exists():
        generate(data_dir, leads=leads, events=events, seed=0, as_of=AS_OF)
    loaded = load_portfolio(portfolio)
    for kind in ("leads", "events"):
        outcome = ingest_file(loaded, kind, data_dir / f"{kind}.csv", database_url)
        assert outcome.report.rejected == 0, outcome.rejects[:3]
