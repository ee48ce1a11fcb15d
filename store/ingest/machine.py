"""Machine activity: opens and clicks that a mail client's proxy or a link scanner made, not a person.

The rule (``MachineRule``) is pure: an open or click is a machine's when its user agent names a known
proxy, or when it comes within the window after a delivery of the same message. The detector
(``MachineDetector``) applies it across a file read in chunks, where the delivery may be in the store,
earlier in the file, or later in the file than the open it explains.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

# Case-insensitive substrings of the User-Agent of mail clients' image proxies and link scanners, which
# fetch pixels and links without a human: Gmail's image proxy ("… (via ggpht.com GoogleImageProxy)"),
# Yahoo Mail's ("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html") and
# Microsoft's link preview ("BingPreview"). Apple Mail Privacy Protection fetches through Apple's
# proxies with a generic agent, so it is caught by the delivery-time window, not here.
DEFAULT_PROXY_AGENTS: tuple[str, ...] = ("GoogleImageProxy", "ggpht.com", "YahooMailProxy", "BingPreview")

MACHINE_CANDIDATES = frozenset({"email_open", "email_click"})
DELIVERY_TYPES = ("email_delivered", "email_sent")
AGENTS_KEPT = 10_000  # user agents whose proxy verdict is remembered

# Delivery times (epoch microseconds) stored for each of the given message ids.
StoredDeliveries = Callable[[Sequence[str]], dict[str, list[int]]]


@dataclass(frozen=True)
class MachineRule:
    """When an open or click is a machine's: ``window_seconds`` after a delivery, or a proxy agent."""

    window_seconds: float = 2.0
    agents: Sequence[str] = DEFAULT_PROXY_AGENTS
    _lowered: tuple[str, ...] = field(init=False, repr=False)
    _window: int = field(init=False, repr=False)  # microseconds, the unit event times are compared in
    # Each user agent's verdict: a file's opens and clicks repeat a few agents (bounded: ``AGENTS_KEPT``).
    _agents: dict[str, bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_lowered", tuple(a.lower() for a in self.agents if a))
        object.__setattr__(self, "_window", round(self.window_seconds * 1_000_000))
        object.__setattr__(self, "_agents", {})

    def after_delivery(self, deliveries: Iterable[int], at: int) -> bool:
        """Whether ``at`` falls within the window after (or at) any of the delivery times. A loop, not
        ``any`` over a generator: called for every open and click (a demo million: ≈ 300,000 times)."""
        window = self._window
        for t in deliveries:  # noqa: SIM110 (see the docstring)
            if 0 <= at - t <= window:
                return True
        return False

    def proxy(self, properties: dict[str, Any]) -> bool:
        """Whether the event's ``user_agent`` property names a known proxy or scanner."""
        agent = properties.get("user_agent")
        if not isinstance(agent, str) or not self._lowered:
            return False
        verdict = self._agents.get(agent)
        if verdict is None:
            if len(self._agents) >= AGENTS_KEPT:
                self._agents.clear()
            lowered = agent.lower()
            verdict = self._agents[agent] = any(a in lowered for a in self._lowered)
        return verdict


class MachineDetector:
    """Applies the rule to a file read in chunks, remembering the file's deliveries.

    Deliveries later in the file than their open are matched when they arrive: such opens are
    remembered and returned by ``run`` for the caller to flag (they were inserted by this run).
    """

    def __init__(self, rule: MachineRule) -> None:
        self.rule = rule
        self.deliveries: dict[str, list[int]] = {}
        self.waiting: dict[str, list[tuple[int, str]]] = {}

    @staticmethod
    def considers(kinds: pl.Series, message_ids: pl.Series, explicit: pl.Series) -> tuple[pl.Series, pl.Series]:
        """Which rows ``run`` must see: deliveries and opens or clicks with a message id; and which need
        the proxy check alone (``MachineRule.proxy``): opens and clicks without a message id and without
        an explicit flag, which no delivery can explain. Any other row may be left out of ``run``.
        Column-wise: a chunk has hundreds of thousands of rows."""
        candidates = kinds.is_in(sorted(MACHINE_CANDIDATES))
        with_message = message_ids.is_not_null() & (candidates | kinds.is_in(DELIVERY_TYPES))
        return with_message, candidates & message_ids.is_null() & explicit.not_()

    def run(
        self, events: list[dict[str, Any]], times: list[int], explicit: list[bool], stored: StoredDeliveries
    ) -> list[str]:
        """Set ``machine`` on the chunk's event rows (``times``: their epoch microseconds; ``explicit``:
        the row said, leave it); return event_ids of earlier rows to flag now. ``stored`` looks up
        deliveries already in the store."""
        rule, deliveries = self.rule, self.deliveries
        new_deliveries: dict[str, list[int]] = {}
        candidates: list[tuple[dict[str, Any], int]] = []  # opens and clicks without an explicit flag
        for row, at, fixed in zip(events, times, explicit, strict=True):
            kind = row["type"]
            if kind in MACHINE_CANDIDATES:
                if not fixed:
                    candidates.append((row, at))
            elif kind in DELIVERY_TYPES and (message_id := row["message_id"]) is not None:
                deliveries.setdefault(message_id, []).append(at)
                new_deliveries.setdefault(message_id, []).append(at)

        late: list[str] = []
        for message_id, delivered in new_deliveries.items():
            for at, event_id in self.waiting.pop(message_id, ()):
                if rule.after_delivery(delivered, at):
                    late.append(event_id)
                else:
                    self.waiting.setdefault(message_id, []).append((at, event_id))

        undecided: list[tuple[dict[str, Any], int]] = []
        proxy, after_delivery, delivered_at = rule.proxy, rule.after_delivery, deliveries.get
        for row, at in candidates:
            if proxy(row["properties"]):
                row["machine"] = True
                continue
            message_id = row["message_id"]
            if message_id is None:
                continue
            if after_delivery(delivered_at(message_id, ()), at):
                row["machine"] = True
            else:
                undecided.append((row, at))

        if undecided:
            in_store = stored(sorted({row["message_id"] for row, _ in undecided}))
            for row, at in undecided:
                if rule.after_delivery(in_store.get(row["message_id"], ()), at):
                    row["machine"] = True
                else:
                    self.waiting.setdefault(row["message_id"], []).append((at, row["event_id"]))
        return late
