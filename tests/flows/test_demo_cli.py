"""``leadscore demo``: the main job end to end on a small generated portfolio, in the demo's own folder."""

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from store.settings import get_settings


def test_demo_runs_the_daily_pipeline_on_the_embedded_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LEADSCORE_DATABASE_URL", "LEADSCORE_OUTBOX_DIR", "LEADSCORE_SMTP_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["demo", "--leads", "400", "--events", "8000"], env={"COLUMNS": "200"})
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, (result.output, result.exception)
    assert "rejected 4 (kept with reasons)" in result.output  # the generator's deliberately bad rows
    assert "funnel: transitions, qualifications, trigger firings" in result.output
    assert "audience crm-warm-up → meta" in result.output
    assert 'emails {"sent": ' in result.output  # dated inside the send window, whatever the time now
    # Everything the demo writes is in its own folder (git-ignored; ``make clean`` removes it).
    demo = tmp_path / "demo"
    assert [path.name for path in tmp_path.iterdir()] == ["demo"]
    assert (demo / "leadscore.db").is_file()
    assert (demo / "demo-data" / "events.csv").is_file()
    html = (demo / "report.html").read_text()
    assert "Nurture performance" in html and "<svg" in html
    assert any((demo / "audiences").rglob("*.csv"))
    assert any((demo / "outbox").rglob("*.eml"))  # owner alerts and nurture emails
    assert "LEADSCORE_OUTBOX_DIR" not in os.environ  # the demo tells the flows; it does not edit the environment
    # How to start the service on the demo store, and one look-up of a top lead.
    assert f"export LEADSCORE_DATABASE_URL=sqlite:///{(demo / 'leadscore.db').resolve()}" in result.output
    assert "leadscore api --port 8000 &" in result.output
    assert 'curl -s -H "Authorization: Bearer $KEY" http://127.0.0.1:8000/v1/leads/' in result.output
