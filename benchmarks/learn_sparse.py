"""The sparse kind of history the project lead checks learned models on, made synthetic. Two generators:

- ``linear`` (the default): ~5,800 leads, 85 coded columns (integer codes 0-9, a third weakly related to the
  outcome, linearly in the code, one pair acting together) and ~8 % converters.
- ``coded``: 5,822 leads and ~6 % converters, closer to the real one's description: two nominal codes (a
  customer subtype of 40 levels nested in a main type of 10) whose effect is not monotone in the code, 41
  ordinal 0-9 neighbourhood shares (skewed, a third with weak monotone effects, some bent), 21 product
  contribution codes (mostly 0) and 21 policy counts, where owning a car policy (contribution level 5-6,
  count 1 vs 0) carries most of the signal, non-linearly.

Prints 5-fold CV AUC and top-20 % capture (mean and per fold) for the points scorecard, the probability
model and the logistic baseline, with CPU seconds and load; several ``--seed`` values run one after another.

    .venv/bin/python benchmarks/learn_sparse.py [--kind linear|coded] [--rows N] [--seed 0 [1 ...]]
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def linear(rows: int, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """85 uniform codes 0-9; the log-odds linear in a third of them plus one pair."""
    codes = rng.integers(0, 10, size=(rows, 85))
    weights = rng.normal(0, 0.08, 85) * (rng.random(85) < 0.3)  # a third of the columns carry a weak signal
    logit = (codes - 4.5) @ weights + 0.8 * ((codes[:, 0] > 6) & (codes[:, 1] > 6)) - 3.0
    return {f"C{j:02d}": codes[:, j] for j in range(85)}, logit


def coded(rows: int, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Nominal, ordinal, contribution and count codes as described in the module docstring."""
    columns: dict[str, np.ndarray] = {}
    main_of = np.sort(np.concatenate([np.arange(1, 11), rng.integers(1, 11, 30)]))  # subtype 1-40 → main type 1-10
    subtype = rng.choice(40, size=rows, p=rng.dirichlet(np.full(40, 2.0))) + 1
    columns["subtype"], columns["main_type"] = subtype, main_of[subtype - 1]
    logit = rng.normal(0, 0.5, 11)[columns["main_type"]] + rng.normal(0, 0.3, 41)[subtype]
    for j in range(41):  # neighbourhood shares: skewed 0-9 codes, a third with a weak monotone effect
        share = rng.binomial(9, rng.beta(2, 3), size=rows)
        columns[f"share{j:02d}"] = share
        if rng.random() < 1 / 3:
            bend = share if rng.random() < 0.5 else np.sqrt(share) * 3  # linear, or flattening off
            logit += rng.normal(0, 0.06) * (bend - bend.mean())
    owned = {}
    for j in range(21):  # products: a contribution code (mostly 0) and a count of policies
        has = rng.random(rows) < (0.5 if j == 0 else rng.uniform(0.01, 0.2))
        count = np.where(has, 1 + (rng.random(rows) < 0.15), 0)
        level = rng.choice(np.arange(1, 10), p=rng.dirichlet(np.full(9, 0.5)), size=rows)
        columns[f"contribution{j:02d}"], columns[f"policies{j:02d}"] = np.where(has, level, 0), count
        owned[j] = has
    car = owned[0]
    columns["contribution00"] = np.where(car, rng.choice([4, 5, 6, 7], p=[0.05, 0.35, 0.55, 0.05], size=rows), 0)
    logit += np.where(car, 0.3, 0.0) + 1.3 * (columns["contribution00"] == 6) + 0.3 * columns["policies00"] // 2
    for j in (1, 2):  # two weaker products: owning one matters, not the amount
        logit += rng.normal(0.5, 0.2) * owned[j]
    shift = brentq(lambda b: float(np.mean(expit(logit + b))) - 0.06, -20, 20)  # 6 % converters on average
    return columns, logit + shift


GENERATORS = {"linear": linear, "coded": coded}
DEFAULT_ROWS = {"linear": 5_800, "coded": 5_822}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=sorted(GENERATORS), default="linear")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--seed", type=int, nargs="+", default=[0])
    args = parser.parse_args()

    import polars as pl

    from models.learning.learn import LearnParams, cross_validate, prepare
    from models.spec import Scale

    for seed in args.seed:
        rng = np.random.default_rng(seed)
        columns, logit = GENERATORS[args.kind](args.rows or DEFAULT_ROWS[args.kind], rng)
        converted = rng.random(logit.size) < expit(logit)
        frame = pl.DataFrame({name: values.astype(str) for name, values in columns.items()}).with_columns(
            pl.Series("converted", converted.astype(np.int64))
        )
        params = LearnParams(seed=seed)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "sparse.csv"
            frame.write_csv(path)
            started, cpu = time.perf_counter(), time.process_time()
            ds = prepare(path, target="converted", params=params)
            metrics = cross_validate(ds, Scale(), params, kinds=("points", "probability"))
        print(json.dumps({
            "kind": args.kind, "seed": seed, "leads": logit.size, "converted": int(converted.sum()),
            **{label: {"auc": m["auc"], "capture_top20": m["capture_top20"], "fold_aucs": m["fold_aucs"]}
               for label, m in metrics.items()},
            "wall_s": round(time.perf_counter() - started, 1), "cpu_s": round(time.process_time() - cpu, 1),
            "loadavg": os.getloadavg(),
        }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
