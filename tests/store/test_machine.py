"""The machine-activity rule and its detector, without a database."""

from datetime import UTC, datetime, timedelta

import polars as pl

from store.ingest.machine import MachineDetector, MachineRule
from store.tables import to_micros

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def test_rule_window_is_inclusive_and_only_after_the_delivery() -> None:
    rule = MachineRule(window_seconds=2.0)
    delivered = to_micros(T0)
    assert rule.after_delivery([delivered], delivered)
    assert rule.after_delivery([delivered], delivered + 2_000_000)
    assert not rule.after_delivery([delivered], delivered + 2_000_001)
    assert not rule.after_delivery([delivered], delivered - 1)
    assert rule.after_delivery([delivered - 10_000_000, delivered], delivered + 1)


def test_rule_proxy_agents_match_case_insensitively_and_can_be_switched_off() -> None:
    gmail = {"user_agent": "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"}
    assert MachineRule().proxy(gmail)
    assert MachineRule().proxy({"user_agent": "yahoomailproxy; https://help.yahoo.com"})
    assert not MachineRule().proxy({"user_agent": "Mozilla/5.0 (Macintosh)"})
    assert not MachineRule().proxy({"user_agent": 42})
    assert not MachineRule(agents=()).proxy(gmail)


def _event(event_id: str, kind: str, at: datetime, message_id: str | None = "m1", **properties: str) -> dict:
    return {
        "event_id": event_id,
        "type": kind,
        "occurred_at": at,
        "message_id": message_id,
        "machine": False,
        "properties": properties,
    }


def test_detector_matches_store_earlier_chunk_and_later_chunk_deliveries() -> None:
    detector = MachineDetector(MachineRule(window_seconds=2.0))
    asked: list[list[str]] = []

    def stored(ids: list[str]) -> dict[str, list[int]]:
        asked.append(list(ids))
        return {"m0": [to_micros(T0)]}

    first = [
        _event("o0", "email_open", T0 + timedelta(seconds=1), "m0"),  # delivery in the store
        _event("d1", "email_delivered", T0, "m1"),
        _event("o1", "email_open", T0 + timedelta(seconds=1), "m1"),  # delivery in this chunk
        _event("o2", "email_open", T0 + timedelta(seconds=1), "m2"),  # delivery in the next chunk
        _event("o3", "email_open", T0 + timedelta(seconds=1), "m3"),  # explicit: the row said human
        _event("c4", "email_click", T0 + timedelta(hours=1), None, user_agent="BingPreview/1.0"),
        _event("o5", "email_open", T0 + timedelta(minutes=5), "m1"),  # a person, minutes later
    ]
    late = detector.run(
        first, [to_micros(e["occurred_at"]) for e in first], [False, False, False, False, True, False, False], stored
    )
    assert [e["event_id"] for e in first if e["machine"]] == ["o0", "o1", "c4"]
    assert late == []
    assert asked == [["m0", "m1", "m2"]]  # one look-up per chunk, only for undecided messages

    second = [_event("d2", "email_sent", T0, "m2"), _event("d3", "email_sent", T0, "m3")]
    assert detector.run(second, [to_micros(T0)] * 2, [False, False], stored) == ["o2"]


def test_detector_considers_rows_with_a_message_id_and_sends_the_others_to_the_proxy_check_alone() -> None:
    kinds = pl.Series(["email_delivered", "email_delivered", "email_open", "email_click", "email_open", "page_view"])
    message_ids = pl.Series(["m1", None, "m1", None, None, "m1"])
    explicit = pl.Series([False, False, False, False, True, False])
    with_message, proxy_only = MachineDetector.considers(kinds, message_ids, explicit)
    assert with_message.to_list() == [True, False, True, False, False, False]
    assert proxy_only.to_list() == [False, False, False, True, False, False]
