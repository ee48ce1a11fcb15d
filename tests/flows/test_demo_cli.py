"""``leadscore demo``: the main job end to end on a small generated portfolio."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from store.settings import get_settings


def test_demo_runs_the_daily_pipeline_on_the_embedded_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEADSCORE_DATABASE_URL", raising=False)
    monkeypatch.delenv("LEADSCORE_SMTP_HOST", raising=False)
    monkeypatch.setenv("LEADSCORE_OUTBOX_DIR", str(tmp_path / "outbox"))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            app, ["demo", "--workdir", str(tmp_path), "--leads", "400", "--events", "8000"], env={"COLUMNS": "200"}
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, (result.output, result.exception)
    assert "rejected 4 (kept with reasons)" in result.output  # the generator's deliberately bad rows
    assert "funnel: transitions, qualifications, trigger firings" in result.output
    assert "audience crm-warm-up → meta" in result.output
    assert (tmp_path / "leadscore.db").is_file()
    html = (tmp_path / "report.html").read_text()
    assert "Nurture performance" in html and "<svg" in html
    assert any((tmp_path / "audiences").rglob("*.csv"))
