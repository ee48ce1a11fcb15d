"""The lead page's score-history chart, drawn with the report's chart kit: the score per run, one line per
stage, and a dashed mark at each stage move."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markupsafe import Markup

from models.charts import Axes, lines_svg

DAY = 86_400.0


def history_svg(history: Sequence[dict[str, Any]], transitions: Sequence[dict[str, Any]], peak: float) -> Markup:
    """``history``: snapshots (as_of, stage, score); ``transitions``: moves (at, to_stage); x in days."""
    times = [point["as_of"] for point in history] + [move["at"] for move in transitions]
    if not times:
        return Markup('<p class="muted">No score yet: the next run scores this journey.</p>')
    start, end = min(times), max(times)
    series: dict[str, list[tuple[float, float]]] = {}
    for point in history:
        series.setdefault(point["stage"], []).append(((point["as_of"] - start).total_seconds() / DAY, point["score"]))
    marks = [((move["at"] - start).total_seconds() / DAY, f"→ {move['to_stage']}") for move in transitions]
    axes = Axes(peak=peak, x_ends=(f"{start:%Y-%m-%d}", f"{end:%Y-%m-%d}"), y_ends=("0", f"{peak:g}"))
    return lines_svg(series, axes, title="score history", size=(640, 200), marks=marks)
