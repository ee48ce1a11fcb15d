"""The journeys a file may open: each (lead, product line) pair's earliest time, however it was added."""

from store.ingest.report import Interests
from store.tables import from_micros


def test_pairs_added_at_once_keep_the_earliest_time_like_one_by_one() -> None:
    one_by_one, at_once = Interests(), Interests()
    batches = [
        ([1, 1, 2], ["crm", "ads", "crm"], [50, 60, 70]),
        ([1, 2, 3, 3], ["crm", "crm", "crm", "crm"], [40, 90, 30, 30]),  # earlier, later, repeated in the batch
    ]
    for keys, lines, ats in batches:
        at_once.add_pairs(keys, lines, ats)
        for key, line, at in zip(keys, lines, ats, strict=True):
            one_by_one.add_micros(key, line, at)
    expected = [(1, "crm", 40), (1, "ads", 60), (2, "crm", 70), (3, "crm", 30)]
    assert sorted(at_once.as_list()) == sorted((key, line, from_micros(at)) for key, line, at in expected)
    assert sorted(at_once.as_list()) == sorted(one_by_one.as_list())


def test_frames_of_pairs_keep_the_earliest_time_like_one_by_one_even_when_compacted() -> None:
    import polars as pl

    one_by_one, framed = Interests(), Interests()
    framed.compact_at = 3  # reduce the held frames after a few rows, as a long file does after millions
    framed.add_micros(1, "crm", 45)  # a pair added alone, then in a frame
    one_by_one.add_micros(1, "crm", 45)
    batches = [
        ([1, 1, 2, 1], ["crm", "ads", "crm", "crm"], [50, 60, 70, 55]),  # repeated within the batch
        ([1, 2, 3, 3], ["crm", "crm", "crm", "crm"], [40, 90, 30, 35]),  # earlier, later, repeated
        ([2], ["ads"], [10]),
    ]
    for keys, lines, ats in batches:
        framed.add_frame(pl.DataFrame({"key": keys, "line": lines, "at": ats}))
        for key, line, at in zip(keys, lines, ats, strict=True):
            one_by_one.add_micros(key, line, at)
    expected = [(1, "crm", 40), (1, "ads", 60), (2, "crm", 70), (3, "crm", 30), (2, "ads", 10)]
    assert sorted(framed.as_list()) == sorted((key, line, from_micros(at)) for key, line, at in expected)
    assert sorted(framed.as_list()) == sorted(one_by_one.as_list())
    assert [frame.height for frame in framed.frames] == [3, 4, 1]  # the first batch reduced to its pairs
