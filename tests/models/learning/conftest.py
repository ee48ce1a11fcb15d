"""Histories for the learning tests: the public X Education leads (when present) and the demo generator's data."""

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from examples.generate import generate

# ../shared/data next to the checkout (a git worktree may sit one folder deeper)
SHARED = next(
    (p / "shared" / "data" for p in Path(__file__).resolve().parents[3:] if (p / "shared" / "data").is_dir()),
    Path(__file__).resolve().parents[4] / "shared" / "data",
)
LEADS = SHARED / "Leads.csv"
BANK = SHARED / "bank-additional.csv"
# Written by the sales team during or after the call (../shared/data/README.md): never features.
LEAKING = (
    "Tags", "Lead Quality", "Lead Profile", "Last Notable Activity", "Asymmetrique Activity Index",
    "Asymmetrique Profile Index", "Asymmetrique Activity Score", "Asymmetrique Profile Score",
    "I agree to pay the amount through cheque",
)  # fmt: skip
LEADS_DROP = ("Lead Number", *LEAKING)
AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
# Personal and contact columns of the generator: unique per lead, so the identifier guard refuses them.
GENERATED_DROP = ("email", "phone", "first_name", "last_name", "owner_email", "company", "zip")


@pytest.fixture
def leads_csv() -> Path:
    if not LEADS.is_file():
        pytest.skip(f"public lead data absent: {LEADS} (see ../shared/data/README.md)")
    return LEADS


@pytest.fixture
def bank_csv() -> Path:
    if not BANK.is_file():
        pytest.skip(f"public bank data absent: {BANK} (see ../shared/data/README.md)")
    return BANK


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pl.DataFrame]:
    """The demo generator's leads interested in crm-suite with their outcome, a cutoff column, and the events;
    plus the true propensity of each history row (in file order)."""
    folder = tmp_path_factory.mktemp("generated")
    data = generate(folder, leads=4000, events=80_000, as_of=AS_OF, seed=1)
    outcomes = pl.read_csv(data.outcomes).filter(pl.col("product_line") == "crm-suite")
    history = (
        pl.read_csv(data.leads, infer_schema=False)
        .join(outcomes.select("lead_id", pl.col("converted").cast(pl.Utf8), "propensity"), on="lead_id")
        .with_columns(cutoff=pl.lit("2026-06-01T00:00:00Z"))
    )
    history.drop("propensity").write_csv(folder / "history.csv")
    return folder / "history.csv", data.events, history.select("lead_id", "propensity")


def write_history(path: Path, n: int = 600, seed: int = 0, **columns: list[str]) -> Path:
    """A small synthetic history: ``segment`` (a: 60 %, b: 30 %, c: 10 % converting), ``size`` (higher converts
    more), a ``lead_id`` and the outcome ``won`` as yes/no; ``columns`` adds or replaces columns."""
    rng = np.random.default_rng(seed)
    segment = rng.choice(["a", "b", "c"], size=n)
    size = rng.integers(1, 1000, size=n)
    p = np.select([segment == "a", segment == "b"], [0.6, 0.3], 0.1) * (0.5 + size / 1000)
    won = np.where(rng.random(n) < p, "yes", "No")
    frame = pl.DataFrame(
        {"lead_id": [f"L{i:04d}" for i in range(n)], "segment": segment, "size": size.astype(str), "won": won}
    )
    frame = frame.with_columns(pl.Series(name, values) for name, values in columns.items())
    frame.write_csv(path)
    return path
