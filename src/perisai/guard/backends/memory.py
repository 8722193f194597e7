"""In-process state: for tests and a single-process guard that may forget on restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from perisai.guard.interface import Admission, Backend, Gate, Limit, Passage, Ticket, slide

__all__ = ["MemoryBackend"]

_ADMITTED = Admission(True)


class MemoryBackend(Backend):
    """Dictionaries behind one lock; expired entries are dropped as they are met."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock  # expiry time; a simulation passes its own
        self._lock = threading.Lock()
        self._nums: dict[str, tuple[float, float]] = {}  # key -> (value, expires)
        self._texts: dict[str, tuple[str, float]] = {}
        self._windows: dict[str, list[float]] = {}

    def _num(self, key: str, now: float) -> float | None:
        entry = self._nums.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._nums[key]
            return None
        return entry[0]

    def acquire(self, limits: Sequence[Limit], now: float) -> Admission:
        with self._lock:
            return self._acquire(limits, now)

    def _acquire(self, limits: Sequence[Limit], now: float) -> Admission:
        """:meth:`acquire` under the lock."""
        windows = self._windows
        updates: list[tuple[str, list[float]]] = []
        for key, limit, window, name in limits:
            stamps = windows.get(key)
            if not stamps and limit > 0:  # a key with no live log: admitted
                updates.append((key, [now]))
                continue
            allowed, kept, retry = slide(stamps or [], now, limit, window)
            if not allowed:
                return Admission(False, retry, name)
            updates.append((key, kept))
        for key, kept in updates:
            windows[key] = kept
        if len(windows) > 200_000:  # drop keys whose newest event left every window
            self._windows = {k: v for k, v in windows.items() if v[-1] > now - 86400}
        return _ADMITTED

    def gate(self, gate: Gate, now: float) -> Passage:
        """Every read and the admission under one lock: atomic, like Redis's script."""
        clock = self._clock()
        with self._lock:
            counters = self._counters(gate.counters, clock)
            texts = [self._text(key, clock) for key in gate.texts]
            flagged = gate.flag is not None and self._text(gate.flag, clock) is not None
            limits = [*gate.limits, *(() if flagged else gate.unflagged)]
            before = [self._windows.get(limit.key) for limit in limits]
            admission = self._acquire(limits, now)
            if not admission.allowed:
                return Passage(counters, texts, flagged, admission, Ticket((), now))
            # each admitted key holds a new list now: what it held before can be put back
            undo = tuple(
                (limit.key, old, self._windows.get(limit.key))
                for limit, old in zip(limits, before, strict=True)
            )
        ticket = Ticket(tuple(limit.key for limit in limits), now, undo=undo)
        return Passage(counters, texts, flagged, admission, ticket)

    def release(self, ticket: Ticket) -> None:
        """Put each window back as it was, unless another event changed it since: then only
        this event's stamp leaves it."""
        with self._lock:
            windows = self._windows
            for key, before, after in ticket.undo:
                current = windows.get(key)
                if current is not after or current is None:
                    if current and ticket.stamp in current:
                        current.remove(ticket.stamp)
                elif isinstance(before, list):
                    windows[key] = before
                else:
                    del windows[key]

    def _add(self, key: str, amount: float, ttl: float, now: float) -> float:
        current = self._num(key, now)
        if current is None:
            value, expires = amount, now + ttl
        else:
            value, expires = current + amount, self._nums[key][1]
        self._nums[key] = (value, expires)
        return value

    def add(self, key: str, amount: float, ttl: float) -> float:
        now = self._clock()
        with self._lock:
            return self._add(key, amount, ttl, now)

    def add_many(self, items: Sequence[tuple[str, float, float]]) -> list[float]:
        now = self._clock()
        with self._lock:
            return [self._add(key, amount, ttl, now) for key, amount, ttl in items]

    def get_many(self, keys: Sequence[str]) -> list[float]:
        now = self._clock()
        with self._lock:
            return self._counters(keys, now)

    def _counters(self, keys: Sequence[str], now: float) -> list[float]:
        """The counters' values, under the lock; expired ones are dropped as they are met."""
        values: list[float] = []
        append = values.append
        nums = self._nums
        # :meth:`_num` inlined: a decision reads 22 counters, most of them missing
        for key in keys:
            entry = nums.get(key)
            if entry is None:
                append(0.0)
            elif entry[1] <= now:
                del nums[key]
                append(0.0)
            else:
                append(entry[0] or 0.0)
        return values

    def put(self, key: str, value: str, ttl: float) -> None:
        with self._lock:
            self._texts[key] = (value, self._clock() + ttl)

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._text(key, self._clock())

    def _text(self, key: str, now: float) -> str | None:
        """A value set by :meth:`put`, under the lock."""
        entry = self._texts.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._texts[key]
            return None
        return entry[0]

    def delete(self, key: str) -> None:
        with self._lock:
            self._texts.pop(key, None)
            self._nums.pop(key, None)
            self._windows.pop(key, None)

    def ping(self) -> None:
        return None
