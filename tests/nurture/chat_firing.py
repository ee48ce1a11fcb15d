"""A trigger firing as ``store.stages.read_open_firings`` returns it: what chat and digest tests feed."""

import json
from datetime import UTC, datetime

FIRING = {
    "id": 7, "run_id": "r1", "journey_id": 3, "lead_key": 5, "product_line": "crm", "trigger": "hot lead",
    "direction": "up", "action": "chat", "stage": "discovery", "score": 72.5, "score_before": 48.0,
    "fired_at": datetime(2026, 11, 23, 10, tzinfo=UTC), "attempts": 0, "lead_id": "LD-5", "email": "a@x.example",
    "first_name": "Ada", "last_name": "Lo", "company": "A&B <Ltd>", "owner_email": "o@acme.example",
    "band": "hot", "qualification": "MQL", "promoted_to": None,
    "breakdown": json.dumps([{"rule": "pricing page", "points": 20.0}, {"rule": "student", "points": -5.0},
                             {"rule": "demo request", "points": 30.0}]),
}  # fmt: skip
