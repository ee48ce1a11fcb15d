"""Fixtures for email tests: a real in-process SMTP server (aiosmtpd) and leads in the store."""

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, insert

from store.tables import Lead


@dataclass
class Recorder:
    """An SMTP handler that keeps what it accepted and answers RCPT from a script per address.

    ``script[address]`` is a list of replies used one per attempt (``None`` accepts); addresses
    without a script are accepted.
    """

    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    script: dict[str, list[str | None]] = field(default_factory=dict)
    rcpt_calls: list[str] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        self.rcpt_calls.append(address)
        replies = self.script.get(address)
        reply = replies.pop(0) if replies else None
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp_server() -> Iterator[tuple[Recorder, int]]:
    handler = Recorder()
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def add_leads(engine: Engine, *leads: dict[str, Any]) -> list[int]:
    """Insert leads (``lead_id`` and any lead column); returns their keys in order."""
    rows = [{"attributes": {}, "created_at": NOW, "updated_at": NOW, **lead} for lead in leads]
    with engine.begin() as conn:
        conn.execute(insert(Lead.__table__), rows)  # type: ignore[attr-defined]
        by_id = dict(conn.execute(Lead.__table__.select().with_only_columns(Lead.lead_id, Lead.key)).all())  # type: ignore[attr-defined]
    return [by_id[lead["lead_id"]] for lead in leads]
