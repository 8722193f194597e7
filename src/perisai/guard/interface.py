"""The guard's pluggable layer: state backends, and the result types the engine returns."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

__all__ = [
    "Action",
    "Admission",
    "Backend",
    "BackendError",
    "Decision",
    "Event",
    "Gate",
    "Limit",
    "Passage",
    "Ticket",
    "Verdict",
    "slide",
]


class Verdict(StrEnum):
    ALLOW = "allow"
    CHALLENGE = "challenge"
    DENY = "deny"


class Action(StrEnum):
    SEND_OTP = "send_otp"
    VERIFY_OTP = "verify_otp"
    SEND_EMAIL = "send_email"


class Event(StrEnum):
    SENT = "sent"
    VERIFIED = "verified"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Decision:
    """What the guard says about one request: ``reason`` is a short stable id (``recipient-rate``,
    ``number-premium_rate``, ``pumping-prefix`` …); ``retry_after`` in seconds, 0 when moot."""

    verdict: Verdict
    reason: str
    retry_after: float = 0.0

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOW


class BackendError(Exception):
    """The state backend cannot be reached or used; the guard then fails open or closed."""


class Limit(NamedTuple):
    """A sliding-window limit on ``key``: ``limit`` events per ``window`` seconds;
    ``name`` is the reason a denial carries.

    Immutable like the result types, but a named tuple: a decision builds seven of these, and
    a frozen dataclass costs twice as much to construct."""

    key: str
    limit: int
    window: float
    name: str


@dataclass(frozen=True, slots=True)
class Admission:
    allowed: bool
    retry_after: float = 0.0
    denied_by: str | None = None  # the Limit.name that refused


class Gate(NamedTuple):
    """Everything one decision reads and takes, handed to the backend at once so that a
    network store answers it in one round trip.

    ``limits`` are admitted all-or-nothing; ``unflagged`` limits too, but only when the value
    ``flag`` is absent (a number already verified skips its prefix's rate). A backend that
    shards by hash tag keeps ``flag`` and ``unflagged`` together (:mod:`perisai.guard.keys`)."""

    counters: Sequence[str] = ()
    texts: Sequence[str] = ()
    limits: Sequence[Limit] = ()
    flag: str | None = None
    unflagged: Sequence[Limit] = ()


class Ticket(NamedTuple):
    """The events a gate admitted, so that a decision refused for another reason can give
    them back (:meth:`Backend.release`)."""

    keys: tuple[str, ...]
    stamp: float
    member: str = ""  # the event's name where the store names events (Redis)
    # a backend's own record of what it replaced: (key, before, after) each
    undo: tuple[tuple[str, object, object], ...] = ()


class Passage(NamedTuple):
    """What a gate read, and whether its limits admitted the event."""

    counters: list[float]
    texts: list[str | None]
    flagged: bool
    admission: Admission
    ticket: Ticket


def slide(
    stamps: Sequence[float], now: float, limit: int, window: float
) -> tuple[bool, list[float], float]:
    """One sliding-window-log step: ``(allowed, stamps_to_keep, retry_after)``.

    Exact: never more than ``limit`` events in any ``window`` seconds; at most ``limit``
    timestamps are kept per key."""
    live = [stamp for stamp in stamps if stamp > now - window]
    if len(live) >= limit:
        return False, live, live[-limit] + window - now
    live.append(now)
    return True, live[-limit:], 0.0


class Backend(ABC):
    """Guard state: sliding-window limits admitted all-or-nothing, counters and short-lived values.

    Every method is atomic with respect to every other client of the same store, and raises
    :class:`BackendError` when the store is unreachable.
    """

    @abstractmethod
    def acquire(self, limits: Sequence[Limit], now: float) -> Admission:
        """Admit one event under every limit, or under none (then say which refused)."""

    @abstractmethod
    def add(self, key: str, amount: float, ttl: float) -> float:
        """Add ``amount`` to a counter (created at 0, living ``ttl`` s); its new value."""

    def add_many(self, items: Sequence[tuple[str, float, float]]) -> list[float]:
        """:meth:`add` for each ``(key, amount, ttl)``, in one round trip or transaction where
        the store allows it; the new values in order."""
        return [self.add(key, amount, ttl) for key, amount, ttl in items]

    @abstractmethod
    def get_many(self, keys: Sequence[str]) -> list[float]:
        """The counters' values (0 for missing ones)."""

    @abstractmethod
    def put(self, key: str, value: str, ttl: float) -> None:
        """Set a value that expires after ``ttl`` seconds, replacing any old one."""

    @abstractmethod
    def get(self, key: str) -> str | None:
        """A value set by :meth:`put`, or None when absent or expired."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove a value or counter."""

    @abstractmethod
    def ping(self) -> None:
        """Raise :class:`BackendError` unless the store answers."""

    def gate(self, gate: Gate, now: float) -> Passage:
        """Read ``gate``'s counters, texts and flag, and admit its limits: atomically where
        the store allows it, in one round trip where it is remote. Refused limits take
        nothing; admitted ones are taken until :meth:`release` gives them back.

        This default composes the other methods; a backend overrides it to do it at once."""
        counters = self.get_many(gate.counters)
        texts = [self.get(key) for key in gate.texts]
        flagged = gate.flag is not None and self.get(gate.flag) is not None
        limits = [*gate.limits, *(() if flagged else gate.unflagged)]
        admission = self.acquire(limits, now)
        taken = tuple(limit.key for limit in limits) if admission.allowed else ()
        return Passage(counters, texts, flagged, admission, Ticket(taken, now))

    @abstractmethod
    def release(self, ticket: Ticket) -> None:
        """Give back the events a :meth:`gate` admitted (a decision refused them after all)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
