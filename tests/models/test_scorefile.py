"""``score_csv``: a model tried on a plain CSV of leads (and optionally of events), no store, no Prefect."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from models.scorefile import score_csv
from models.spec import Bands, PointsModel
from stages.portfolio import load_model

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
BANDS = {"cold": [0, 20], "warm": [20, 40], "hot": [40, 100]}
RULES = {
    "fit": [
        {"name": "persona title", "when": {"job_title": {"matches": "(?i)head of|director"}}, "points": 15},
        {"name": "mid-size", "when": {"company_size": {"between": [50, 1000]}}, "points": 10},
        {"name": "student", "when": {"occupation": {"eq": "student"}}, "points": -100},
    ],
    "behaviour": [
        {
            "name": "pricing page",
            "event": "page_view",
            "where": {"url": {"contains": "/pricing"}},
            "points": 5,
            "per": "occurrence",
            "max": 12,
        },
        {"name": "webinar", "event": "webinar_attend", "points": 10},
    ],
}
MODEL = PointsModel.model_validate({"kind": "points", "bands": BANDS, **RULES})
UNBANDED = PointsModel.model_validate({"kind": "points", **RULES})

LEADS = """lead_id,job_title,company_size,occupation,note
L1,Head of Sales,200,,first
L2,Director,abc,,second
L3,Director,20,Student,third
L4,,,,fourth
"""
EVENTS = """lead_id,type,occurred_at,properties
L1,page_view,2026-10-01T10:00:00Z,"{""url"": ""/pricing""}"
L1,page_view,2026-10-02T10:00:00+02:00,"{""url"": ""/pricing/enterprise""}"
L1,page_view,2026-10-03T10:00:00Z,"{""url"": ""/pricing""}"
L1,page_view,2026-10-04T10:00:00Z,"{""url"": ""/blog""}"
L9,page_view,2026-10-03T10:00:00Z,"{""url"": ""/pricing""}"
L4,webinar_attend,2026-10-05T10:00:00,
L4,page_view,2026-10-05T10:00:00Z,"{""url"": ""/pricing""}"
L2,webinar_attend,2026-10-05T10:00:00Z,
L4,webinar_attend,2026-11-02T10:00:00Z,
"""
COLUMNS = ["lead_id", "job_title", "company_size", "occupation", "note"]


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def leads(tmp_path: Path) -> Path:
    return _write(tmp_path, "leads.csv", LEADS)


@pytest.fixture
def events(tmp_path: Path) -> Path:
    return _write(tmp_path, "events.csv", EVENTS)


def test_fit_only_keeps_every_column_and_adds_score_band_top_rules(leads: Path) -> None:
    result = score_csv(MODEL, leads, as_of=AS_OF)

    assert result.scored.columns == [*COLUMNS, "score", "band", "top_rules"]
    assert result.scored.rows() == [
        ("L1", "Head of Sales", "200", None, "first", 25.0, "warm", "persona title:+15; mid-size:+10"),
        # -85 is clamped to the scale minimum; the clamp is not a reason
        ("L3", "Director", "20", "Student", "third", 0.0, "cold", "student:-100; persona title:+15"),
        ("L4", None, None, None, "fourth", 0.0, "cold", ""),
    ]
    assert result.rejects.rows() == [(str(leads), 3, "company_size", "not a number: 'abc'")]


def test_no_band_column_without_bands_unless_given(leads: Path) -> None:
    plain = score_csv(UNBANDED, leads, as_of=AS_OF)
    assert plain.scored.columns == [*COLUMNS, "score", "top_rules"]
    assert plain.scored.get_column("score").to_list() == [25.0, 0.0, 0.0]

    given = score_csv(UNBANDED, leads, as_of=AS_OF, bands=Bands.model_validate({"low": [0, 25], "high": [25, 100]}))
    assert given.scored.columns == [*COLUMNS, "score", "band", "top_rules"]
    assert given.scored.get_column("band").to_list() == ["high", "low", "low"]


def test_events_change_scores_and_bad_events_are_rejected_with_their_line(leads: Path, events: Path) -> None:
    result = score_csv(MODEL, leads, as_of=AS_OF, events_path=events)

    assert result.scored.select("lead_id", "score", "band", "top_rules").rows() == [
        # three pricing views at +5 each, capped at 12; the /blog view does not match
        ("L1", 37.0, "warm", "persona title:+15; pricing page:+12; mid-size:+10"),
        ("L3", 0.0, "cold", "student:-100; persona title:+15"),
        # the naive-time webinar is rejected, the 2 November one is after as_of
        ("L4", 5.0, "cold", "pricing page:+5"),
    ]
    assert result.rejects.rows() == [
        (str(leads), 3, "company_size", "not a number: 'abc'"),
        (str(events), 6, "lead_id", "unknown lead_id 'L9': not in the leads file, or rejected there"),
        (
            str(events),
            7,
            "occurred_at",
            "time zone missing in '2026-10-05T10:00:00': add an offset such as +00:00 or Z",
        ),
        (str(events), 9, "lead_id", "unknown lead_id 'L2': not in the leads file, or rejected there"),
    ]


def test_as_of_excludes_later_events_and_reads_offsets(leads: Path, events: Path) -> None:
    # 2026-10-02T10:00+02:00 is 08:00 UTC: counted at 09:00 UTC, with the 1 October view
    early = score_csv(MODEL, leads, as_of=datetime(2026, 10, 2, 9, tzinfo=UTC), events_path=events)
    assert early.scored.select("lead_id", "score", "top_rules").rows() == [
        ("L1", 35.0, "persona title:+15; mid-size:+10; pricing page:+10"),
        ("L3", 0.0, "student:-100; persona title:+15"),
        ("L4", 0.0, ""),
    ]
    before = score_csv(MODEL, leads, as_of=datetime(2026, 10, 2, 7, 59, tzinfo=UTC), events_path=events)
    assert before.scored.get_column("score").to_list() == [30.0, 0.0, 0.0]

    late = score_csv(MODEL, leads, as_of=datetime(2026, 11, 3, tzinfo=UTC), events_path=events)
    assert late.scored.select("lead_id", "score", "band", "top_rules").row(2) == (
        "L4",
        15.0,
        "cold",
        "webinar:+10; pricing page:+5",
    )


def test_a_time_without_zone_is_rejected_even_as_the_first_row(tmp_path: Path, leads: Path) -> None:
    events = _write(
        tmp_path,
        "first-naive.csv",
        "lead_id,type,occurred_at\n"
        "L1,webinar_attend,2026-10-01T10:00:00\n"
        "L4,webinar_attend,2026-10-01T10:00:00Z\n"
        "L4,webinar_attend,2026-10-02 10:00:00.250+01:00\n"
        "L1,webinar_attend,yesterday\n"
        "L1,webinar_attend,\n",
    )
    result = score_csv(MODEL, leads, as_of=AS_OF, events_path=events)

    assert result.scored.select("lead_id", "score").rows() == [("L1", 25.0), ("L3", 0.0), ("L4", 10.0)]
    assert result.rejects.select("line", "field", "reason").rows() == [
        (3, "company_size", "not a number: 'abc'"),
        (2, "occurred_at", "time zone missing in '2026-10-01T10:00:00': add an offset such as +00:00 or Z"),
        (5, "occurred_at", "not an ISO-8601 time: 'yesterday'"),
        (6, "occurred_at", "required"),
    ]


def test_lines_are_physical_lines_blank_lines_skipped_and_ragged_rows_rejected(tmp_path: Path) -> None:
    leads = _write(
        tmp_path,
        "messy.csv",
        'lead_id,job_title,company_size\nL1,"Head of\nSales",200\n\nL2,Director,many\nL3,Director,60,extra\nL4,VP,70\n',
    )
    result = score_csv(UNBANDED, leads, as_of=AS_OF)

    assert result.scored.rows() == [
        ("L1", "Head of\nSales", "200", 25.0, "persona title:+15; mid-size:+10"),
        ("L4", "VP", "70", 10.0, "mid-size:+10"),
    ]
    assert result.rejects.rows() == [
        (str(leads), 5, "company_size", "not a number: 'many'"),
        (str(leads), 6, None, "row has 4 values but the header has 3 columns"),
    ]


def test_extra_event_columns_are_properties_and_machine_events_do_not_count(tmp_path: Path, leads: Path) -> None:
    model = PointsModel.model_validate(
        {
            "behaviour": [
                {
                    "name": "pricing",
                    "event": "page_view",
                    "where": {"url": {"contains": "/pricing"}},
                    "points": 5,
                    "per": "occurrence",
                }
            ]
        }
    )
    events = _write(
        tmp_path,
        "ingest-format.csv",
        "event_id,lead_id,type,occurred_at,product_line,url,properties,machine\n"
        "e1,L4,page_view,2026-10-01T10:00:00Z,crm,/pricing,,\n"
        'e2,L4,page_view,2026-10-02T10:00:00Z,crm,,"{""url"": ""/pricing/a""}",\n'
        'e3,L4,page_view,2026-10-03T10:00:00Z,crm,/home,"{""url"": ""/pricing/a""}",\n'
        'e4,L4,page_view,2026-10-04T10:00:00Z,crm,/pricing/b,"{""url"": ""/home""}",\n'
        "e5,L4,page_view,2026-10-05T10:00:00Z,crm,/pricing,,true\n"
        "e6,L4,page_view,2026-10-06T10:00:00Z,crm,/pricing,,no\n",
    )
    result = score_csv(model, leads, as_of=AS_OF, events_path=events)

    # e1, e2 (from the JSON), e4 and e6 match: a column wins over the JSON key (e3, e4), as at ingestion;
    # e5 is machine activity
    assert result.scored.select("lead_id", "score", "top_rules").rows() == [
        ("L1", 0.0, ""),
        ("L2", 0.0, ""),
        ("L3", 0.0, ""),
        ("L4", 20.0, "pricing:+20"),
    ]
    assert result.rejects.is_empty()  # this model reads no number from the leads


def test_scoring_a_scored_file_again_replaces_its_score_columns(tmp_path: Path, leads: Path, events: Path) -> None:
    first = score_csv(MODEL, leads, as_of=AS_OF, events_path=events)
    again_path = tmp_path / "scored.csv"
    first.scored.write_csv(again_path)

    again = score_csv(MODEL, again_path, as_of=AS_OF)

    assert again.scored.columns == [*COLUMNS, "score", "band", "top_rules"]
    assert again.scored.select("lead_id", "score", "band", "top_rules").rows() == [
        ("L1", 25.0, "warm", "persona title:+15; mid-size:+10"),
        ("L3", 0.0, "cold", "student:-100; persona title:+15"),
        ("L4", 0.0, "cold", ""),
    ]
    assert again.rejects.is_empty()


def test_model_file_with_bands(tmp_path: Path) -> None:
    model = load_model(
        _write(
            tmp_path,
            "model.yaml",
            "kind: points\n"
            "bands: {low: [0, 50], high: [50, 100]}\n"
            "fit:\n"
            "  - {name: big budget, when: {budget: {ge: 50000}}, points: 60}\n"
            "  - {name: reachable, when: {email: {present: true}, phone: {present: true}}, points: 5}\n",
        )
    )
    leads = _write(
        tmp_path,
        "leads.csv",
        "lead_id,email,phone,budget\nA,a@x.io,+33 1,75000\nB,b@x.io,,50000\nC,,,\nD,d@x.io,+1 2,50k\n",
    )
    result = score_csv(model, leads, as_of=AS_OF)

    assert result.scored.select("lead_id", "score", "band", "top_rules").rows() == [
        ("A", 65.0, "high", "big budget:+60; reachable:+5"),
        ("B", 60.0, "high", "big budget:+60"),
        ("C", 0.0, "low", ""),
    ]
    assert result.rejects.rows() == [(str(leads), 5, "budget", "not a number: '50k'")]


def test_file_level_problems_raise(tmp_path: Path, leads: Path) -> None:
    no_time = _write(tmp_path, "no-time.csv", "lead_id,type\nL1,page_view\n")
    with pytest.raises(ValueError, match="missing column 'occurred_at'"):
        score_csv(MODEL, leads, as_of=AS_OF, events_path=no_time)
    no_id = _write(tmp_path, "no-id.csv", "job_title\nDirector\n")
    events = _write(tmp_path, "events.csv", EVENTS)
    with pytest.raises(ValueError, match="needs a lead_id column"):
        score_csv(MODEL, no_id, as_of=AS_OF, events_path=events)
    repeated = _write(tmp_path, "repeated.csv", "lead_id,job_title,job_title\nL1,a,b\n")
    with pytest.raises(ValueError, match=r"repeats column\(s\) \['job_title'\]"):
        score_csv(MODEL, repeated, as_of=AS_OF)


def test_a_repeated_lead_id_gets_its_events_on_every_row_and_a_header_only_file_scores_nothing(
    tmp_path: Path,
) -> None:
    leads = _write(tmp_path, "twice.csv", "lead_id,job_title\nL1,Director\nL1,Engineer\n")
    events = _write(tmp_path, "events.csv", "lead_id,type,occurred_at\nL1,webinar_attend,2026-10-01T10:00:00Z\n")
    result = score_csv(MODEL, leads, as_of=AS_OF, events_path=events)
    assert result.scored.rows() == [
        ("L1", "Director", 25.0, "warm", "persona title:+15; webinar:+10"),
        ("L1", "Engineer", 10.0, "cold", "webinar:+10"),
    ]

    empty = score_csv(MODEL, _write(tmp_path, "empty.csv", "lead_id,job_title\n"), as_of=AS_OF, events_path=events)
    assert empty.scored.columns == ["lead_id", "job_title", "score", "band", "top_rules"]
    assert empty.scored.is_empty()
    assert empty.rejects.select("line", "field").rows() == [(2, "lead_id")]
