"""Cross-validated quality of the learners on the public data sets in ``../shared/data`` (read-only).

5-fold stratified cross-validation (the folds ``learn`` and ``backtest`` use) on X Education's ``Leads.csv``
and the UCI bank sample, each without the columns its README lists as leaking; prints ROC AUC (mean ± std
over folds) and the share of converters in the top 20 % of scores for the points scorecard, the probability
model (the estimator inner CV chose in each fold), calibrated gradient boosting alone and the plain
logistic-regression baseline on the same columns, with each fold's AUC and the run's CPU seconds (wall times
mean little on a shared machine).

    .venv/bin/python benchmarks/learn_cv.py [--data ../shared/data] [--folds 5] [--seed 0] [--json]
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BOOSTING = "gradient boosting alone (calibrated)"
# (file, target, id column, columns never to learn from: identifiers and the leaks named in the data's README)
DATA_SETS = {
    "Leads.csv": ("Converted", "Prospect ID", (
        "Lead Number", "Tags", "Lead Quality", "Lead Profile", "Last Notable Activity",
        "Asymmetrique Activity Index", "Asymmetrique Profile Index", "Asymmetrique Activity Score",
        "Asymmetrique Profile Score", "I agree to pay the amount through cheque",
    )),
    "bank-additional.csv": ("y", None, ("duration",)),
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # ../shared/data next to the checkout (a worktree may sit one folder deeper)
    shared = next((p / "shared" / "data" for p in ROOT.parents if (p / "shared" / "data").is_dir()), Path())
    parser.add_argument("--data", type=Path, default=shared)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    args = parser.parse_args()

    from models.learning.learn import LearnParams, cross_validate, prepare
    from models.learning.probability import ProbabilityParams
    from models.spec import Scale

    params = LearnParams(folds=args.folds, seed=args.seed)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, (target, id_column, drop) in DATA_SETS.items():
        path = args.data / name
        if not path.is_file():
            print(f"skipped {name}: {path} is absent", file=sys.stderr)
            continue
        started, cpu = time.perf_counter(), time.process_time()
        ds = prepare(path, target=target, params=params, id_column=id_column, drop=drop)
        metrics = cross_validate(ds, Scale(), params, kinds=("points", "probability"))
        boosting = LearnParams(folds=args.folds, seed=args.seed,
                               probability=ProbabilityParams(candidates=("gradient boosting",)))  # fmt: skip
        metrics[BOOSTING] = cross_validate(ds, Scale(), boosting, kinds=("probability",))["learned probability"]
        results[name] = {
            label: {
                "auc": m["auc"],
                "auc_std": m["auc_std"],
                "capture_top20": m["capture_top20"],
                "fold_aucs": m["fold_aucs"],
            }
            for label, m in metrics.items()
        }
        results[name]["_run"] = {"seconds": round(time.perf_counter() - started, 1),
                                 "cpu_seconds": round(time.process_time() - cpu, 1), "leads": len(ds.y),
                                 "converted": int(ds.y.sum()), "loadavg": os.getloadavg()}  # fmt: skip
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for name, rows in results.items():
        run = rows.pop("_run")
        print(
            f"{name}: {run['leads']} leads, {run['converted']} converted, {args.folds}-fold CV "
            f"({run['seconds']} s wall, {run['cpu_seconds']} CPU s, load {' '.join(map(str, run['loadavg']))})"
        )
        for label, m in rows.items():
            folds = " ".join(f"{a:.4f}" for a in m["fold_aucs"])
            print(
                f"  {label:<38} AUC {m['auc']:.4f} ± {m['auc_std']:.4f}   top 20 % capture {m['capture_top20']:.1%}"
                f"   folds {folds}"
            )


if __name__ == "__main__":
    main()
