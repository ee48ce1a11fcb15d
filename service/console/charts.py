"""The lead page's score-history chart: one SVG, the score per run coloured by stage, each stage move marked.

Inline SVG with no script: it prints, needs no front-end build, and its labels are escaped like any text.
(The daily report's chart kit lives in ``flows/``, which the service may not import.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from markupsafe import Markup, escape

COLOURS = ("#2563eb", "#d97706", "#059669", "#7c3aed", "#db2777", "#0891b2")
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 640, 220, 40, 12, 14, 28


def history_svg(
    history: Sequence[dict[str, Any]],
    transitions: Sequence[dict[str, Any]],
    stages: Sequence[str],
    scale: tuple[float, float],
) -> Markup:
    """Score over time (``history``: as_of, stage, score), a colour per stage of ``stages``; a dashed line
    and the new stage's name at each transition (at, to_stage)."""
    times = [point["as_of"] for point in history] + [move["at"] for move in transitions]
    if not times:
        return Markup('<p class="muted">No score yet: the next run scores this journey.</p>')
    start, end = min(times), max(times)
    span = max((end - start).total_seconds(), 1.0)
    low, high = scale

    def x(at: datetime) -> float:
        return LEFT + (WIDTH - LEFT - RIGHT) * (at - start).total_seconds() / span

    def y(score: float) -> float:
        return TOP + (HEIGHT - TOP - BOTTOM) * (1 - (score - low) / ((high - low) or 1))

    parts = [
        f'<line x1="{LEFT}" y1="{y(low):.1f}" x2="{WIDTH - RIGHT}" y2="{y(low):.1f}" stroke="#9aa5b1"/>',
        f'<text x="{LEFT - 4}" y="{y(high) + 4:.1f}" text-anchor="end" font-size="10">{high:g}</text>',
        f'<text x="{LEFT - 4}" y="{y(low) + 4:.1f}" text-anchor="end" font-size="10">{low:g}</text>',
        f'<text x="{LEFT}" y="{HEIGHT - 8}" font-size="10">{start:%Y-%m-%d}</text>',
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" text-anchor="end" font-size="10">{end:%Y-%m-%d}</text>',
    ]
    for move in transitions:
        at = x(move["at"])
        parts.append(
            f'<line class="transition" x1="{at:.1f}" y1="{TOP}" x2="{at:.1f}" y2="{y(low):.1f}" '
            'stroke="#52606d" stroke-dasharray="4 3"/>'
            f'<text x="{at + 3:.1f}" y="{TOP + 8}" font-size="10">→ {escape(move["to_stage"])}</text>'
        )
    segments: list[tuple[str, list[dict[str, Any]]]] = []
    for point in history:
        if not segments or segments[-1][0] != point["stage"]:
            segments.append((point["stage"], []))
        segments[-1][1].append(point)
    for stage, points in segments:
        colour = COLOURS[stages.index(stage) % len(COLOURS)] if stage in stages else "#52606d"
        coords = " ".join(f"{x(p['as_of']):.1f},{y(p['score']):.1f}" for p in points)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>')
        parts += [
            f'<circle class="snapshot" cx="{x(p["as_of"]):.1f}" cy="{y(p["score"]):.1f}" r="3" fill="{colour}">'
            f"<title>{p['as_of']:%Y-%m-%d %H:%M} {escape(stage)}: {p['score']:g}</title></circle>"
            for p in points
        ]
    legend = " ".join(
        f'<tspan fill="{COLOURS[i % len(COLOURS)]}">■ {escape(stage)}</tspan>' for i, stage in enumerate(stages)
    )
    parts.append(f'<text x="{LEFT + 60}" y="{HEIGHT - 8}" font-size="10">{legend}</text>')
    body = "".join(parts)
    return Markup(
        f'<svg class="history" role="img" aria-label="score history" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">{body}</svg>'
    )
