"""Delivering messages: ``.eml`` files in the outbox folder by default, SMTP when configured.

At-most-once (DESIGN §8): each chunk's intents (with their stable Message-IDs) are committed before
the server is contacted, and a Message-ID the outbox already holds is never sent again. A crash after
the intent leaves it with an unknown outcome: it counts as sent and is reported (``unknown``), so a
re-run can never email anyone twice. Every message is also written as ``<outbox>/<date>/<id>.eml``,
the record of what was sent.

SMTP: one connection per batch (re-opened if the server drops it), STARTTLS or implicit TLS and
login as configured. A 4xx answer is retried with exponential backoff; a 5xx answer to the recipient
or the content is permanent: a ``nurture`` message becomes a bounce and suppresses the lead
(``leads.bounced_at``), an ``owner_alert`` only fails (a salesperson's address says nothing about the lead).
"""

from __future__ import annotations

import smtplib
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Protocol

from sqlalchemy import Engine

from nurture.mail import Outgoing
from store import outbox
from store.settings import Settings

CHUNK = 500  # messages per intent/outcome transaction: bounds what a crash leaves unknown


@dataclass(frozen=True)
class DeliveryResult:
    """``status``: sent | failed | bounced | unknown (intent without outcome: counted as sent, review
    it) | duplicate (an earlier call already sent or bounced this Message-ID). A ``failed`` message is
    tried again by a later call: its failure was a known refusal, so nothing can be sent twice."""

    message_id: str
    kind: str
    ref: str
    lead_key: int
    status: str
    attempts: int = 0
    error: str | None = None
    path: str | None = None


class _Refused(Exception):
    """The server answered ``code``; ``permanent_for_recipient`` when it is about the recipient or content."""

    def __init__(self, code: int, reply: bytes | str, stage: str):
        self.code = code
        self.stage = stage
        text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
        super().__init__(f"{code} {text} (at {stage})")

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500


class _Unknown(Exception):
    """The connection broke after the content was handed over: the server may have accepted it."""


class Transport(Protocol):
    def send(self, sender: str, to: str, data: bytes) -> None: ...
    def close(self) -> None: ...


class _FilesOnly:
    """The embedded default: the ``.eml`` file is the delivery."""

    def send(self, sender: str, to: str, data: bytes) -> None:
        return None

    def close(self) -> None:
        return None


class _Smtp:
    """One SMTP session for the whole batch, opened lazily and re-opened after a disconnect."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.client: smtplib.SMTP | None = None

    def _open(self) -> smtplib.SMTP:
        s = self.settings
        host = s.smtp_host or "localhost"
        try:
            if s.smtp_ssl:
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    host, s.smtp_port, timeout=s.smtp_timeout, context=ssl.create_default_context()
                )
            else:
                client = smtplib.SMTP(host, s.smtp_port, timeout=s.smtp_timeout)
                if s.smtp_starttls:
                    client.starttls(context=ssl.create_default_context())
            if s.smtp_username:
                password = s.smtp_password.get_secret_value() if s.smtp_password else ""
                client.login(s.smtp_username, password)
        except smtplib.SMTPResponseException as exc:
            raise _Refused(exc.smtp_code, exc.smtp_error, "connect") from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise _Refused(421, str(exc), "connect") from exc  # not reached the server: safe to retry
        return client

    def send(self, sender: str, to: str, data: bytes) -> None:
        if self.client is None:
            self.client = self._open()
        client = self.client
        try:
            client.ehlo_or_helo_if_needed()
            code, reply = client.mail(sender)
            if code != 250:
                self._reset()
                raise _Refused(code, reply, "sender")
            code, reply = client.rcpt(to)
            if code not in (250, 251):
                self._reset()
                raise _Refused(code, reply, "recipient")
        except smtplib.SMTPServerDisconnected as exc:  # before the content: nothing was handed over
            self.client = None
            raise _Refused(421, str(exc), "connect") from exc
        except smtplib.SMTPHeloError as exc:
            raise _Refused(exc.smtp_code, exc.smtp_error, "connect") from exc
        try:
            code, reply = client.data(data)
        except smtplib.SMTPDataError as exc:  # DATA itself refused: nothing was handed over
            self._reset()
            raise _Refused(exc.smtp_code, exc.smtp_error, "data") from exc
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self.client = None
            raise _Unknown(str(exc)) from exc
        if code != 250:
            raise _Refused(code, reply, "data")

    def _reset(self) -> None:
        try:
            if self.client is not None:
                self.client.rset()
        except smtplib.SMTPException:
            self.client = None

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.quit()
            except smtplib.SMTPException:
                self.client.close()
            self.client = None


def deliver(
    engine: Engine,
    messages: Iterable[Outgoing],
    settings: Settings,
    *,
    now: datetime | None = None,
    settled: Callable[[int], None] | None = None,
) -> list[DeliveryResult]:
    """Deliver ``messages`` at most once each; returns one result per message, in order.

    ``messages`` is consumed a chunk at a time, so a generator of messages is never all in memory.

    ``settled`` is told how many messages are settled so far after each chunk (a progress bar's count)."""
    now = now or datetime.now(UTC)
    transport: Transport = _Smtp(settings) if settings.smtp_host else _FilesOnly()
    folder = Path(settings.outbox_dir) / now.astimezone(UTC).date().isoformat()
    results: list[DeliveryResult] = []
    seen: set[str] = set()
    try:
        for chunk in _chunks(messages, CHUNK):
            results += _deliver_chunk(engine, chunk, transport, folder, settings, now, seen)
            if settled is not None:
                settled(len(results))
    finally:
        transport.close()
    return results


def _chunks(messages: Iterable[Outgoing], size: int) -> Iterator[list[Outgoing]]:
    iterator = iter(messages)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _deliver_chunk(
    engine: Engine,
    chunk: Sequence[Outgoing],
    transport: Transport,
    folder: Path,
    settings: Settings,
    now: datetime,
    seen: set[str],
) -> list[DeliveryResult]:
    with engine.connect() as conn:
        known = outbox.statuses(conn, [m.message_id for m in chunk])
    fresh: list[Outgoing] = []
    settled: dict[str, DeliveryResult] = {}
    retried: list[str] = []
    for message in chunk:
        status = known.get(message.message_id)
        if message.message_id in seen or (status is not None and status != "failed"):
            settled[message.message_id] = _result(message, "unknown" if status == "intent" else "duplicate")
            continue
        seen.add(message.message_id)
        fresh.append(message)
        if status == "failed":  # the server refused it (or was never reached): sending again is safe
            retried.append(message.message_id)
    paths = {m.message_id: folder / f"{m.message_id}.eml" for m in fresh}
    with engine.begin() as conn:  # committed before any byte goes to the server
        outbox.reopen_failed(conn, retried, run_ids={m.message_id: m.run_id for m in fresh})
        outbox.record_intents(
            conn,
            [
                {
                    "message_id": m.message_id,
                    "kind": m.kind,
                    "ref": m.ref,
                    "lead_key": m.lead_key,
                    "run_id": m.run_id,
                    "to_address": m.to,
                    "subject": m.subject,
                    "path": str(paths[m.message_id]),
                    "created_at": now,
                }
                for m in fresh
            ],
        )
    if fresh:
        folder.mkdir(parents=True, exist_ok=True)
    payloads = {m.message_id: m.as_bytes() for m in fresh}
    for m in fresh:
        with open(paths[m.message_id], "wb") as handle:
            handle.write(payloads[m.message_id])
    outcomes = _send_all(fresh, payloads, transport, settings)
    finished = datetime.now(UTC) if settings.smtp_host else now
    with engine.begin() as conn:
        outbox.record_outcomes(
            conn,
            [
                {**outcome, "sent_at": finished if outcome["status"] == "sent" else None}
                for outcome in outcomes.values()
                if outcome["status"] != "unknown"
            ],
        )
        bounced = [m.lead_key for m in fresh if outcomes[m.message_id]["status"] == "bounced"]
        outbox.mark_bounced(conn, bounced, finished)
    for m in fresh:
        outcome = outcomes[m.message_id]
        settled[m.message_id] = _result(
            m, outcome["status"], outcome["attempts"], outcome.get("last_error"), str(paths[m.message_id])
        )
    return [settled[m.message_id] for m in chunk]


def _send_all(
    fresh: Sequence[Outgoing], payloads: dict[str, bytes], transport: Transport, settings: Settings
) -> dict[str, dict]:
    """Send in rounds: every message once, then the temporarily refused ones again after a backoff."""
    outcomes: dict[str, dict] = {}
    pending = list(fresh)
    for attempt in range(1, max(1, settings.smtp_attempts) + 1):
        if attempt > 1:
            time.sleep(settings.smtp_backoff_seconds * 2 ** (attempt - 2))
        retry: list[Outgoing] = []
        for m in pending:
            outcome = {"message_id": m.message_id, "attempts": attempt, "last_error": None}
            try:
                transport.send(m.envelope_from or settings.mail_from, m.to, payloads[m.message_id])
                outcome["status"] = "sent"
            except _Unknown as exc:
                outcome.update(status="unknown", last_error=str(exc))
            except _Refused as exc:
                outcome["last_error"] = str(exc)
                if exc.temporary:
                    outcome["status"] = "failed"  # unless a later round gets it through
                    retry.append(m)
                elif m.kind == "nurture" and exc.stage in ("recipient", "data"):
                    outcome["status"] = "bounced"
                else:
                    outcome["status"] = "failed"
            outcomes[m.message_id] = outcome
        pending = retry
        if not pending:
            break
    return outcomes


def _result(
    m: Outgoing, status: str, attempts: int = 0, error: str | None = None, path: str | None = None
) -> DeliveryResult:
    return DeliveryResult(m.message_id, m.kind, m.ref, m.lead_key, status, attempts, error, path)
