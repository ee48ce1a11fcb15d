"""The one chart kit: inline SVG (no scripts, no CDN), one palette, every text escaped.

The daily report's sections, the backtest page and the console's lead page all draw with it, so a chart looks
the same wherever it appears. It lives in ``models/`` (pure functions, no I/O) because both ``flows/`` and the
service import it, and the service may not import ``flows/``.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

PALETTE = ("#2f6fb0", "#e07b39", "#3a9d5d", "#b54a78", "#7a62b8", "#8c6d31")


@dataclass(frozen=True)
class Chart:
    title: str
    svg: Markup


@dataclass(frozen=True)
class Axes:
    """What a line chart's axes say: the value at the top, the labels at both ends, optional titles."""

    peak: float
    x_ends: tuple[str, str] | None  # under the first and last x; None when there is nothing to label
    y_ends: tuple[str, str]  # at 0 and at the peak
    titles: tuple[str, str] | None = None  # of the x and the y axis
    diagonal: bool = False  # the line of a random order, corner to corner (gains charts)


def colour(i: int) -> str:
    """The palette's colour for the i-th series."""
    return PALETTE[i % len(PALETTE)]


def _svg(width: int, height: int, title: str, body: list[str]) -> Markup:
    return Markup(
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{escape(title)}</title>{"".join(body)}</svg>'
    )


def _text(x: float, y: float, text: str, anchor: str = "start", size: int = 11, rotate: bool = False) -> str:
    turn = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{turn}>{escape(text)}</text>'


def columns_svg(
    values: Sequence[float],
    under: Sequence[str],
    over: Sequence[str],
    tips: Sequence[str],
    *,
    title: str,
    peak: float | None = None,
    fill: str = PALETTE[0],
    size: tuple[int, int] = (360, 170),
) -> Markup:
    """Vertical bars on a baseline, ``peak`` (default: the largest value) at full height: a label under each
    bar, a figure over it (none where empty) and a tooltip."""
    w, h = size
    top, bottom = 16, 28
    peak = peak or max(max(values, default=0), 1)
    step = w / max(len(values), 1)
    body = [f'<line x1="0" y1="{h - bottom}" x2="{w}" y2="{h - bottom}" stroke="#999"/>']
    for i, value in enumerate(values):
        bar = (h - top - bottom) * value / peak
        x = i * step + 2
        body.append(
            f'<rect class="bar" x="{x:.1f}" y="{h - bottom - bar:.1f}" width="{step - 4:.1f}" height="{bar:.1f}" '
            f'fill="{fill}"><title>{escape(tips[i])}</title></rect>'
        )
        if over[i]:
            body.append(_text(x + (step - 4) / 2, h - bottom - bar - 3, over[i], anchor="middle", size=9))
        body.append(_text(x + (step - 4) / 2, h - bottom + 12, under[i], anchor="middle", size=9))
    return _svg(w, h, title, body)


def bars_svg(labels: Sequence[str], values: Sequence[float]) -> Markup:
    """Horizontal bars with their label: funnels and rates."""
    w, row = 520, 26
    peak = max(max(values, default=0), 1e-9)
    body = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        length = max(w * 0.55 * value / peak, 1)
        body.append(
            f'<rect class="bar" x="0" y="{i * row + 3}" width="{length:.1f}" height="{row - 8}" fill="{colour(i)}"/>'
        )
        body.append(_text(length + 6, i * row + row / 2 + 3, label))
    return _svg(w, max(len(labels), 1) * row, "bar chart", body)


def change_bars_svg(labels: Sequence[str], changes: Sequence[float]) -> Markup:
    """Bars left (down) or right (up) of a centre line."""
    w, row = 620, 20
    centre, half = w / 2, w * 0.2
    peak = max((abs(c) for c in changes), default=0) or 1
    body = [f'<line x1="{centre}" y1="0" x2="{centre}" y2="{len(changes) * row}" stroke="#999"/>']
    for i, (label, change) in enumerate(zip(labels, changes, strict=True)):
        length = max(half * abs(change) / peak, 1)
        x = centre if change >= 0 else centre - length
        fill = PALETTE[2] if change >= 0 else PALETTE[1]
        body.append(
            f'<rect class="bar" x="{x:.1f}" y="{i * row + 3}" width="{length:.1f}" height="{row - 6}" fill="{fill}"/>'
        )
        if change >= 0:
            body.append(_text(centre + length + 4, i * row + row / 2 + 4, label, size=10))
        else:
            body.append(_text(centre - length - 4, i * row + row / 2 + 4, label, anchor="end", size=10))
    return _svg(w, max(len(changes), 1) * row, "score changes", body)


def lines_svg(
    series: Mapping[str, Sequence[tuple[float, float]]],
    axes: Axes,
    *,
    title: str,
    size: tuple[int, int] = (560, 200),
    legend: int = 110,
    marks: Sequence[tuple[float, str]] = (),
) -> Markup:
    """One line per series (x, y points) with dots and a legend; a single x shows as dots in the middle.
    ``marks`` draw a dashed vertical line at each x with its label (events on the x axis, e.g. stage moves)."""
    w, h = size
    left, bottom, top = (52 if axes.titles else 36), 30, 12
    right = w - legend
    xs = [x for points in series.values() for x, _ in points] + [at for at, _ in marks]
    lo, hi = min(xs, default=0), max(xs, default=0)

    def xy(x: float, y: float) -> tuple[float, float]:
        share = (x - lo) / (hi - lo) if hi > lo else 0.5
        return left + (right - left) * share, h - bottom - (h - bottom - top) * y / axes.peak

    body = [
        f'<line x1="{left}" y1="{h - bottom}" x2="{right}" y2="{h - bottom}" stroke="#999"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="#999"/>',
        _text(left - 4, top + 8, axes.y_ends[1], anchor="end", size=9),
        _text(left - 4, h - bottom, axes.y_ends[0], anchor="end", size=9),
    ]
    if axes.x_ends:
        body.append(_text(left, h - bottom + 14, axes.x_ends[0], size=9))
        body.append(_text(right, h - bottom + 14, axes.x_ends[1], anchor="end", size=9))
    if axes.titles:
        body.append(_text((left + right) / 2, h - 2, axes.titles[0], anchor="middle"))
        body.append(_text(12, (top + h - bottom) / 2, axes.titles[1], anchor="middle", rotate=True))
    if axes.diagonal:
        body.append(
            f'<line x1="{left}" y1="{h - bottom}" x2="{right}" y2="{top}" stroke="#999" stroke-dasharray="4 4"/>'
        )
    for at, label in marks:
        x, _ = xy(at, 0)
        body.append(
            f'<line class="mark" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{h - bottom}" stroke="#555" '
            'stroke-dasharray="3 3"/>'
        )
        body.append(_text(x + 3, top + 8, label, size=9))
    for i, (name, points) in enumerate(series.items()):
        coords = [xy(x, y) for x, y in sorted(points)]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        body.append(f'<polyline class="series" points="{path}" fill="none" stroke="{colour(i)}" stroke-width="2"/>')
        body += [f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour(i)}"/>' for x, y in coords]
        body.append(f'<rect x="{right + 10}" y="{top + i * 18}" width="12" height="12" fill="{colour(i)}"/>')
        body.append(_text(right + 26, top + i * 18 + 10, name, size=11))
    return _svg(w, h, title, body)
