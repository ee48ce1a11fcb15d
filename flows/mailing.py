"""Sending from flows: the outbox table, the configured transport and DKIM signer, wired from settings.

Delivery itself (``nurture.delivery``) reads no settings and opens no transaction; this is the edge
that builds its ports (DESIGN §9: settings are read at the edge and passed in).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from datetime import datetime

from sqlalchemy import Engine

from nurture.delivery import DeliveryResult, Options, deliver
from nurture.messages import Outgoing
from nurture.signing import signer_for
from nurture.tokens import check_secret
from nurture.transports import transport_for
from store.outbox import SqlOutbox
from store.settings import Settings


def unsubscribe_secret(settings: Settings) -> str:
    """The key that signs a run's unsubscribe and tracking links (``nurture.tokens``).

    Mail that leaves over SMTP needs ``LEADSCORE_UNSUBSCRIBE_SECRET`` of adequate length (``SecretError``
    otherwise): the service verifies its links with the same key. A file outbox without one (previews,
    the demo) signs with a throw-away key, so its links are well-formed but answered by no service.
    """
    configured = settings.unsubscribe_secret.get_secret_value() if settings.unsubscribe_secret else None
    if settings.smtp_host or configured:
        return check_secret(configured)
    return secrets.token_urlsafe(32)


def send_messages(
    engine: Engine,
    messages: Iterable[Outgoing],
    settings: Settings,
    *,
    now: datetime,
    per_minute: float | None = None,
    settled: Callable[[int], None] | None = None,
) -> list[DeliveryResult]:
    """Deliver ``messages`` through the configured transport into the store's outbox, at most once,
    at most ``per_minute`` a minute over SMTP."""
    options = Options.from_settings(settings, signer=signer_for(settings), per_minute=per_minute)
    return deliver(SqlOutbox(engine), transport_for(settings), messages, options, now=now, settled=settled)
