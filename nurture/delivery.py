"""Delivering messages: ``.eml`` files in the outbox folder by default, SMTP when configured.

Delivery is given its two ports and reads no settings: an ``Outbox`` (the at-most-once ledger, one
transaction per call, ``store.outbox.SqlOutbox``) and a ``Transport`` (``nurture.transports``:
``SmtpTransport`` or ``FilesOnly``, built at the edge by ``transport_for(settings)``).

At-most-once (DESIGN §8): a message's intent (with its stable Message-ID) is committed before the
server is contacted, and a Message-ID the outbox already holds is never sent again. Over a remote
transport each message's outcome is committed as soon as the server answers, together with the next
message's intent: a crash loses at most the one message in flight, which stays ``unknown`` (never
sent again, its enrolment step left due) until someone resolves it (``leadscore nurture outcomes``).
The file outbox records intents and outcomes a chunk at a time (the ``.eml`` file is the delivery).
Every message is written as ``<outbox>/<date>/<id>.eml`` before it is sent, stamped with the sending
time (``Date``) and, when a signer is given, DKIM-signed: the record of what was sent. A message
whose file cannot be written is ``failed`` and never reaches the server.

A 4xx answer is retried with exponential backoff; a 5xx answer to the recipient
or the content is permanent: a ``nurture`` message becomes a bounce and suppresses the lead
(``leads.bounced_at``), an ``owner_alert`` only fails (a salesperson's address says nothing about the lead).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

from nurture.messages import Outgoing
from nurture.transports import Refused, Transport, Unknown
from store.settings import Settings

CHUNK = 500  # messages per intent/outcome transaction of the file outbox; per outcome read of either


@dataclass(frozen=True)
class DeliveryResult:
    """``status``: sent | failed | bounced | unknown (intent without outcome: counted as sent, review
    it) | duplicate (an earlier call already sent or bounced this Message-ID). A ``failed`` message is
    tried again by a later call: its failure was a known refusal, so nothing can be sent twice;
    ``retryable`` says that failure was temporary."""

    message_id: str
    kind: str
    ref: str
    lead_key: int
    status: str
    attempts: int = 0
    error: str | None = None
    path: str | None = None
    retryable: bool = False  # the failure was temporary (a 4xx answer, the ``.eml`` not written)


class Outbox(Protocol):
    """The at-most-once ledger; each ``record`` call is one transaction."""

    def statuses(self, message_ids: Sequence[str]) -> dict[str, str]: ...

    def record(
        self,
        *,
        intents: Sequence[dict[str, Any]] = (),
        outcomes: Sequence[dict[str, Any]] = (),
        bounced: Sequence[int] = (),
        at: datetime | None = None,
    ) -> None: ...


class Signer(Protocol):
    def sign(self, message: bytes) -> bytes: ...


@dataclass(frozen=True)
class Options:
    """How to deliver: the outbox folder, retries of temporary refusals, the default envelope sender,
    an optional DKIM signer, the clock that stamps each message's ``Date`` as it is sent, and the
    pace of a remote transport."""

    folder: Path
    attempts: int = 3
    backoff_seconds: float = 2.0
    mail_from: str = "leadscore@localhost"
    signer: Signer | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    per_minute: float | None = None  # a remote transport's pace (the portfolio's nurture.pacing)

    @classmethod
    def from_settings(cls, settings: Settings, *, signer: Signer | None = None, **overrides: Any) -> Options:
        return cls(
            folder=Path(settings.outbox_dir),
            attempts=max(1, settings.smtp_attempts),
            backoff_seconds=settings.smtp_backoff_seconds,
            mail_from=settings.mail_from,
            signer=signer,
            **overrides,
        )


def deliver(
    outbox: Outbox,
    transport: Transport,
    messages: Iterable[Outgoing],
    options: Options,
    *,
    now: datetime,
    settled: Callable[[int], None] | None = None,
) -> list[DeliveryResult]:
    """Deliver ``messages`` at most once each; returns one result per message, in order.

    ``now`` is the run's time: the outbox rows and folder are the run's (the frequency cap counts
    them); the ``Date`` header and a remote ``sent_at`` are the clock's, when the message really goes.

    ``messages`` is consumed a chunk at a time, so a generator of messages is never all in memory.
    ``settled`` is told how many messages are settled so far after each chunk (a progress bar's count).
    The transport is closed at the end."""
    results: list[DeliveryResult] = []
    seen: set[str] = set()
    pace = _Pace()
    try:
        for chunk in _chunks(messages, CHUNK):
            results += _Chunk(outbox, transport, options, now, seen, pace).deliver(chunk)
            if settled is not None:
                settled(len(results))
    finally:
        transport.close()
    return results


def _chunks(messages: Iterable[Outgoing], size: int) -> Iterator[list[Outgoing]]:
    iterator = iter(messages)
    while chunk := list(islice(iterator, size)):
        yield chunk


def stamp(data: bytes, at: datetime, signer: Signer | None) -> bytes:
    """The bytes as sent: a ``Date`` header of the sending time first (unless the message has one),
    then the DKIM signature over the result."""
    head = data.split(b"\r\n\r\n", 1)[0]
    if not any(line[:5].lower() == b"date:" for line in head.split(b"\r\n")):
        data = f"Date: {format_datetime(at.astimezone(UTC))}\r\n".encode() + data
    return signer.sign(data) if signer is not None else data


class _Chunk:
    """One chunk's delivery: which messages are fresh, their intents, sends and outcomes."""

    def __init__(
        self, outbox: Outbox, transport: Transport, options: Options, now: datetime, seen: set[str], pace: _Pace
    ) -> None:
        self.outbox, self.transport, self.options, self.now, self.seen = outbox, transport, options, now, seen
        self.pace = pace
        self.results: dict[str, DeliveryResult] = {}
        self.folders: set[Path] = set()

    def deliver(self, chunk: Sequence[Outgoing]) -> list[DeliveryResult]:
        known = self.outbox.statuses([m.message_id for m in chunk])
        fresh: list[Outgoing] = []
        for message in chunk:
            status = known.get(message.message_id)
            if message.message_id in self.seen or (status is not None and status != "failed"):
                self.results[message.message_id] = _result(message, "unknown" if status == "intent" else "duplicate")
                continue
            self.seen.add(message.message_id)
            fresh.append(message)  # a ``failed`` one was refused for sure (or never reached): safe to retry
        if self.transport.remote:
            self._one_by_one(fresh)
        else:
            self._all_at_once(fresh)
        return [self.results[m.message_id] for m in chunk]

    def _intent(self, m: Outgoing, path: Path) -> dict[str, Any]:
        return {
            "message_id": m.message_id, "kind": m.kind, "ref": m.ref, "lead_key": m.lead_key, "run_id": m.run_id,
            "to_address": m.to, "subject": m.subject, "path": str(path), "created_at": self.now,
        }  # fmt: skip

    def _path(self, m: Outgoing) -> Path:
        return self.options.folder / self.now.astimezone(UTC).date().isoformat() / f"{m.message_id}.eml"

    def _write(self, m: Outgoing, path: Path, at: datetime) -> bytes | str:
        """The bytes as sent, written to ``path``; or why they could not be (the message then fails)."""
        data = stamp(m.as_bytes(), at, self.options.signer)
        try:
            if path.parent not in self.folders:  # one mkdir per folder, not per message
                path.parent.mkdir(parents=True, exist_ok=True)
                self.folders.add(path.parent)
            with open(path, "wb") as handle:
                handle.write(data)
        except OSError as exc:
            return f"could not write {path}: {exc}"
        return data

    def _all_at_once(self, fresh: Sequence[Outgoing]) -> None:
        at = self.options.clock()
        paths = {m.message_id: self._path(m) for m in fresh}
        self.outbox.record(intents=[self._intent(m, paths[m.message_id]) for m in fresh])
        outcomes = []
        for m in fresh:
            written = self._write(m, paths[m.message_id], at)
            error = written if isinstance(written, str) else None
            status = "failed" if error else "sent"
            outcomes.append(_outcome(m, status, 1, error, None if error else self.now))
            self.results[m.message_id] = _result(m, status, 1, error, str(paths[m.message_id]), bool(error))
        self.outbox.record(outcomes=outcomes)

    def _one_by_one(self, fresh: Sequence[Outgoing]) -> None:
        """Each message: intent (with the previous outcome) committed, written, sent. Temporary
        refusals are tried again in later rounds after a growing pause."""
        answered: list[dict[str, Any]] = []
        bounced: list[int] = []
        pending = list(fresh)
        options = self.options
        gap = 60.0 / options.per_minute if options.per_minute else 0.0
        for attempt in range(1, options.attempts + 1):
            if attempt > 1:
                time.sleep(options.backoff_seconds * 2 ** (attempt - 2))
            retry: list[Outgoing] = []
            for m in pending:
                if gap:
                    self.pace.wait(gap)
                path = self._path(m)
                self.outbox.record(intents=[self._intent(m, path)], outcomes=answered, bounced=bounced, at=self.now)
                answered, bounced = [], []
                written = self._write(m, path, options.clock())
                if isinstance(written, str):
                    status, error = "retry", written  # a later run writes it: never counted as sent
                else:
                    status, error = self._send(m, written)
                temporary = status == "retry"
                if temporary and not isinstance(written, str):
                    retry.append(m)
                if temporary:
                    status = "failed"  # unless a later round gets it through
                if status == "bounced":
                    bounced.append(m.lead_key)
                finished = options.clock()
                if status != "unknown":
                    answered.append(_outcome(m, status, attempt, error, finished if status == "sent" else None))
                self.results[m.message_id] = _result(m, status, attempt, error, str(path), temporary)
            pending = retry
            if not pending:
                break
        self.outbox.record(outcomes=answered, bounced=bounced, at=self.now)

    def _send(self, m: Outgoing, data: bytes) -> tuple[str, str | None]:
        """``(status, error)``: sent, retry (temporary refusal), bounced, failed or unknown."""
        try:
            self.transport.send(m.envelope_from or self.options.mail_from, m.to, data)
        except Unknown as exc:
            return "unknown", str(exc)
        except Refused as exc:
            if exc.temporary:
                return "retry", str(exc)
            if m.kind == "nurture" and exc.stage in ("recipient", "data"):
                return "bounced", str(exc)
            return "failed", str(exc)
        return "sent", None


class _Pace:
    """Spaces sends ``gap`` seconds apart (monotonic clock): the first goes at once."""

    def __init__(self) -> None:
        self.next_at: float | None = None

    def wait(self, gap: float) -> None:
        now = time.monotonic()
        if self.next_at is not None and now < self.next_at:
            time.sleep(self.next_at - now)
            now = self.next_at
        self.next_at = now + gap


def _outcome(m: Outgoing, status: str, attempts: int, error: str | None, sent_at: datetime | None) -> dict[str, Any]:
    return {"message_id": m.message_id, "status": status, "attempts": attempts, "last_error": error, "sent_at": sent_at}


def _result(
    m: Outgoing,
    status: str,
    attempts: int = 0,
    error: str | None = None,
    path: str | None = None,
    retryable: bool = False,
) -> DeliveryResult:
    return DeliveryResult(m.message_id, m.kind, m.ref, m.lead_key, status, attempts, error, path, retryable)
