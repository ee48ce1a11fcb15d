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
