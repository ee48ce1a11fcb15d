"""The progress a flow reports reaches the listeners installed around it, and the CLI's rich bars."""

import io

from rich.console import Console

from flows import progress


def test_reports_reach_only_the_listeners_installed_then() -> None:
    outer: list[tuple[str, int, int, str]] = []
    inner: list[tuple[str, int, int, str]] = []
    progress.report("before", 0, 1)  # nobody listens: nothing happens
    with progress.watching(lambda *update: outer.append(update)):
        progress.report("scoring partitions", 1, 4)
        with progress.watching(lambda *update: inner.append(update)):
            progress.report("daily pipeline", 2, 5, "nurture")
        progress.report("scoring partitions", 4, 4)
    progress.report("after", 1, 1)

    assert outer == [
        ("scoring partitions", 1, 4, ""),
        ("daily pipeline", 2, 5, "nurture"),
        ("scoring partitions", 4, 4, ""),
    ]
    assert inner == [("daily pipeline", 2, 5, "nurture")]


def test_progress_bars_draw_one_bar_per_kind_of_work_with_its_detail() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100, color_system=None)
    with progress.progress_bars(console):
        progress.report("daily pipeline", 1, 5, "score [crm]")
        progress.report("scoring partitions", 3, 8)
    drawn = screen.getvalue()

    assert "daily pipeline: score [crm]" in drawn  # the detail is shown as text, not read as rich markup
    assert "1/5" in drawn and "scoring partitions" in drawn and "3/8" in drawn
