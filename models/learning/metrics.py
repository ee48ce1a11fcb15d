"""How well scores rank and separate converters: the numbers a backtest and ``learn`` report."""

from typing import Any

import numpy as np
from sklearn.metrics import brier_score_loss, roc_auc_score

from models.spec import Bands, Scale


def capture(scores: np.ndarray, y: np.ndarray, share: float) -> float:
    """Share of all converters found in the top ``share`` of leads by score.

    Tied scores straddling the cut count in proportion, so an integer scale with many ties is neither
    flattered nor penalised by the order of the file.
    """
    k = share * len(scores)
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], y[order].astype(np.float64)
    _values, starts, counts = np.unique(-s, return_index=True, return_counts=True)
    taken, found = 0.0, 0.0
    for start, count in zip(starts, counts, strict=True):
        if taken >= k:
            break
        use = min(count, k - taken)
        found += t[start : start + count].sum() * use / count
        taken += use
    return float(found / max(t.sum(), 1.0))


def bands_table(scores: np.ndarray, y: np.ndarray, bands: Bands) -> list[dict[str, Any]]:
    """Leads, converters and conversion rate per band, lowest band first."""
    ordered = bands.ordered
    rows = []
    for i, (name, lo, hi) in enumerate(ordered):
        top = i == len(ordered) - 1
        inside = (scores >= lo) & ((scores <= hi) if top else (scores < hi))
        if i == 0:
            inside |= scores < lo
        if top:
            inside |= scores > hi
        n, pos = int(inside.sum()), int(y[inside].sum())
        rows.append({"band": name, "from": lo, "to": hi, "leads": n, "converted": pos, "rate": pos / n if n else None})
    return rows


def default_bands(scale: Scale, n: int = 5) -> Bands:
    """Equal-width bands over the scale, for models that name none."""
    step = (scale.max - scale.min) / n
    edges = [round(scale.min + i * step, 6) for i in range(n)] + [scale.max]
    return Bands.model_validate({f"{edges[i]:g}-{edges[i + 1]:g}": (edges[i], edges[i + 1]) for i in range(n)})


def calibration(probability: np.ndarray, y: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Predicted against observed conversion per decile of predicted probability, and the Brier score."""
    order = np.argsort(probability, kind="stable")
    rows = []
    for part in np.array_split(order, bins):
        if part.size:
            rows.append(
                {
                    "predicted": round(float(probability[part].mean()), 4),
                    "observed": round(float(y[part].mean()), 4),
                    "leads": int(part.size),
                }
            )
    return {"brier": round(float(brier_score_loss(y, probability)), 4), "deciles": rows}


def summary(
    fold_scores: list[tuple[np.ndarray, np.ndarray]], bands: Bands, probability: np.ndarray | None = None
) -> dict[str, Any]:
    """Metrics over out-of-fold scores: mean/std of the per-fold AUC, then capture, lift and bands on all folds."""
    aucs = [float(roc_auc_score(y, s)) for s, y in fold_scores]
    scores = np.concatenate([s for s, _ in fold_scores])
    y = np.concatenate([t for _, t in fold_scores])
    top10, top20 = capture(scores, y, 0.10), capture(scores, y, 0.20)
    result: dict[str, Any] = {
        "auc": round(float(np.mean(aucs)), 4),
        "auc_std": round(float(np.std(aucs)), 4),
        "fold_aucs": [round(a, 4) for a in aucs],
        "capture_top10": round(top10, 4),
        "capture_top20": round(top20, 4),
        "lift_top10": round(top10 / 0.10, 3),
        "gains": [round(capture(scores, y, q / 20), 4) for q in range(21)],
        "bands": bands_table(scores, y, bands),
        "leads": len(y),
        "converted": int(y.sum()),
    }
    if probability is not None:
        result["calibration"] = calibration(probability, y)
    return result
