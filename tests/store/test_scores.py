"""The scoring reads and writes of store/scores.py, on SQLite and PostgreSQL."""

from sqlalchemy import Engine

from store.bulk import insert_ignore
from store.scores import read_leads
from store.tables import Lead


def _leads(engine: Engine, attributes: list[dict]) -> None:
    rows = [
        {"lead_id": f"L{i}", "attributes": a, "email_opt_in": False, "ads_opt_in": False}
        for i, a in enumerate(attributes, 1)
    ]
    with engine.begin() as conn:
        insert_ignore(conn, Lead.__table__, rows)


def test_read_leads_decodes_named_attributes_into_text_columns(engine: Engine) -> None:
    _leads(engine, [{"company_size": 250, "vip": True, "industry": "Software"}, {"company_size": "12"}, {}])

    frame = read_leads(engine, (0, 1000), ["company_size", "industry", "vip", "email"]).sort("lead_key")

    assert frame.select("lead_id", "company_size", "industry", "vip").rows() == [
        ("L1", "250", "Software", "true"),
        ("L2", "12", None, None),
        ("L3", None, None, None),
    ]
    assert frame["email"].to_list() == [None, None, None]  # a standard column is not overwritten


def test_read_leads_leaves_nested_values_to_the_rules(engine: Engine) -> None:
    _leads(engine, [{"address": {"city": "Lyon"}}, {"address": "x"}])

    frame = read_leads(engine, (0, 1000), ["address"])

    assert "address" not in frame.columns  # the engine reads such values from the JSON text itself
    assert frame.height == 2
