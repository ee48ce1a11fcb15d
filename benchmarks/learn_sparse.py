"""The sparse kind of history the project lead checks learned models on, made synthetic: ~5,800 leads,
85 coded socio-demographic columns (integer codes 0-9, a third weakly related to the outcome, one pair
acting together) and ~8 % converters (the real one: ~6 %). Prints 5-fold CV AUC and top-20 % capture
(mean and per fold) for the points scorecard, the probability model and the logistic baseline, with CPU
seconds and load.

    .venv/bin/python benchmarks/learn_sparse.py [--rows 5800] [--seed 0]
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_800)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy as np
    import polars as pl

    from models.learning.learn import LearnParams, cross_validate, prepare
    from models.spec import Scale

    rng = np.random.default_rng(args.seed)
    codes = rng.integers(0, 10, size=(args.rows, 85))
    weights = rng.normal(0, 0.08, 85) * (rng.random(85) < 0.3)  # a third of the columns carry a weak signal
    logit = (codes - 4.5) @ weights + 0.8 * ((codes[:, 0] > 6) & (codes[:, 1] > 6)) - 3.0
    converted = rng.random(args.rows) < 1 / (1 + np.exp(-logit))
    frame = pl.DataFrame({f"C{j:02d}": codes[:, j].astype(str) for j in range(85)}).with_columns(
        pl.Series("converted", converted.astype(np.int64))
    )
    params = LearnParams(seed=args.seed)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sparse.csv"
        frame.write_csv(path)
        started, cpu = time.perf_counter(), time.process_time()
        ds = prepare(path, target="converted", params=params)
        metrics = cross_validate(ds, Scale(), params, kinds=("points", "probability"))
    print(json.dumps({
        "leads": args.rows, "converted": int(converted.sum()),
        **{label: {"auc": m["auc"], "capture_top20": m["capture_top20"], "fold_aucs": m["fold_aucs"]}
           for label, m in metrics.items()},
        "wall_s": round(time.perf_counter() - started, 1), "cpu_s": round(time.process_time() - cpu, 1),
        "loadavg": os.getloadavg(),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
