"""Request body size limit (an ASGI middleware, before any body is buffered) and per-key rate limits."""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyTooLarge(Exception):
    """The body grew past the limit while it was read (no or a false Content-Length)."""


class BodyLimit:
    """413 for a body over ``max_bytes``: at once from Content-Length, else as soon as the stream passes it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await send_answer(send, *too_large(self.max_bytes))
                return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started |= message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            if not started:
                await send_answer(send, *too_large(self.max_bytes))


RawHeaders = list[tuple[bytes, bytes]]


def too_large(limit: int) -> tuple[int, bytes, RawHeaders]:
    """The 413 answer: status, body and headers."""
    return 413, b'{"detail":"request body larger than %d bytes"}' % limit, [(b"content-type", b"application/json")]


async def send_answer(send: Send, status: int, body: bytes, headers: RawHeaders) -> None:
    """A whole answer in two ASGI messages, with its ``content-length``."""
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RateLimiter:
    """A token bucket per key, shared by every process of the service on this host.

    ``rate`` requests a second on average, bursts up to ``burst``, for a key in total: the buckets live
    in a small memory-mapped file (``/dev/shm`` by default, named after the store) that every worker and
    every ``leadscore api`` on the same store maps, each update under an exclusive ``flock``. A request
    costs a lock and a few bytes, no store round trip. Services on several hosts each count their own
    (rate-limit at the shared proxy then).
    """

    def __init__(self, path: Path, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.lock = threading.Lock()  # flock excludes other processes, not this one's threads
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self.fd).st_size < _SIZE:
            os.ftruncate(self.fd, _SIZE)  # zero-filled: every slot free
        self.table = mmap.mmap(self.fd, _SIZE)

    def take(self, key: str) -> float:
        """0 when the request may go ahead, else the seconds to wait before the next one will."""
        name = key.encode()[: _SLOT.size - 16].ljust(_SLOT.size - 16, b"\0")
        with self.lock:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            try:
                offset = self._slot(name)
                now = self.clock()
                found, tokens, then = _SLOT.unpack_from(self.table, offset)
                if found != name:
                    tokens, then = float(self.burst), now
                tokens = min(float(self.burst), tokens + max(0.0, now - then) * self.rate)
                wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
                _SLOT.pack_into(self.table, offset, name, tokens - 1 if tokens >= 1 else tokens, now)
                return wait
            finally:
                fcntl.flock(self.fd, fcntl.LOCK_UN)

    def _slot(self, name: bytes) -> int:
        """The key's slot (open addressing from its hash); a full table starts over (keys are few)."""
        start = zlib.crc32(name) % _SLOTS
        for probe in range(_SLOTS):
            offset = ((start + probe) % _SLOTS) * _SLOT.size
            found = self.table[offset : offset + _SLOT.size - 16]
            if found in (name, _EMPTY):
                return offset
        self.table[:] = bytes(_SIZE)
        return start * _SLOT.size

    def close(self) -> None:
        self.table.close()
        os.close(self.fd)


def rate_file(database_url: str) -> Path:
    """The default bucket file of a store: processes serving the same store share it."""
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:16]
    folder = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    return folder / f"leadscore-rate-{digest}"


_SLOT = struct.Struct("<32sdd")  # key id (NUL-padded), tokens left, when they were counted (monotonic clock)
_SLOTS = 4096
_SIZE = _SLOT.size * _SLOTS
_EMPTY = bytes(_SLOT.size - 16)
