"""A small nurture world on disk and in a store: a portfolio with tracks, templates, leads and journeys."""

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, update

from store.tables import Event, Journey, QualificationMilestone
from tests.nurture.conftest import NOW, add_leads

MODELS = Path(__file__).resolve().parents[2] / "examples" / "demo" / "models" / "crm-suite"
TRACKS = """
    warm-up:
      entry: {product_line: crm, stages: [discovery], score_below: 30}
      steps:
        - email: first
        - wait: 2d
        - branch: {if: opened, then: reader, else: end}
        - {name: reader, email: second}
        - audience: readers
        - wait: 1d
      exit: {score_at_least: 40, stage_changed: true}
"""


def write_portfolio(
    folder: Path, *, tracks: str = TRACKS, cap: str = "{emails: 2, per_days: 7}", nurture: str = ""
) -> Path:
    """Times: Europe/Paris, weekdays 09:00–17:00 local (08:00–16:00 UTC in November)."""
    (folder / "templates" / "email").mkdir(parents=True, exist_ok=True)
    for name in ("first", "second", "third"):
        (folder / "templates" / "email" / f"{name}.txt.j2").write_text(
            '{% extends "email/base.txt.j2" %}{% block subject %}' + name + " for {{ lead.first_name }}"
            "{% endblock %}{% block body %}Hello {{ lead.first_name }} ({{ journey.score }}) "
            "{% for r in reasons %}{{ r.rule }};{% endfor %}{% endblock %}"
        )
        (folder / "templates" / "email" / f"{name}.html.j2").write_text(
            '{% extends "email/base.html.j2" %}{% block body %}<p>Hello {{ lead.first_name }}</p>{% endblock %}'
        )
    path = folder / "portfolio.yaml"
    path.write_text(
        f"""
name: t
timezone: Europe/Paris
event_types: [chat_started]
product_lines:
  crm:
    title: CRM Suite
    stages:
      discovery: {{model: {MODELS / "discovery.yaml"}, promote_at: 40}}
      evaluation: {{model: {MODELS / "evaluation.yaml"}}}
    bands: {{cold: [0, 30], warm: [30, 60], hot: [60, 100]}}
    qualifications: {{MQL: 40}}
nurture:
  sender:
    name: Acme
    address: hello@acme.example
    postal_address: Acme SAS, 1 rue de la Paix, 75002 Paris
    unsubscribe_url: "https://acme.example/u?t={{token}}"
  frequency_cap: {cap}
  send_window: {{days: [mon, tue, wed, thu, fri], start: "09:00", end: "17:00"}}
  audiences: {{readers: {{}}}}{nurture}
  tracks:{tracks}"""
    )
    return path


def add_lead(
    engine: Engine, lead_id: str, *, score: float | None, stage: str = "discovery", **lead: Any
) -> tuple[int, int]:
    """A lead (emailable unless told otherwise) with one crm journey; returns (lead_key, journey_id)."""
    fields = {"email": f"{lead_id.lower()}@client.example", "first_name": lead_id, "email_opt_in": True, **lead}
    [key] = add_leads(engine, {"lead_id": lead_id, **fields})
    band = None if score is None else "cold" if score < 30 else "warm" if score < 60 else "hot"
    with engine.begin() as conn:
        result = conn.execute(
            insert(Journey.__table__).values(  # type: ignore[attr-defined]
                lead_key=key, product_line="crm", stage=stage, status="active", opened_at=NOW,
                stage_entered_at=NOW, score=score, band=band,
            )
        )  # fmt: skip
    return key, int(result.inserted_primary_key[0])


def set_journey(engine: Engine, journey_id: int, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(update(Journey.__table__).where(Journey.__table__.c.id == journey_id).values(**values))  # type: ignore[attr-defined]


def add_event(engine: Engine, lead_key: int, event_id: str, type_: str, at: datetime, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(Event.__table__).values(  # type: ignore[attr-defined]
                lead_key=lead_key, event_id=event_id, type=type_, occurred_at=at, **{"properties": {}, **values}
            )
        )


def add_milestone(engine: Engine, journey_id: int, lead_key: int, qualification: str, at: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(QualificationMilestone.__table__).values(  # type: ignore[attr-defined]
                journey_id=journey_id, lead_key=lead_key, product_line="crm", qualification=qualification,
                threshold=40, reached_at=at, stage="discovery", score=40, run_id="r", breakdown=[],
            )
        )  # fmt: skip
