"""The watch: scan on a schedule, compare each round with the last, alert on what got worse.

Each round is a normal scan saved in the findings store, so ``perisai report`` shows any of
them and a restarted watch compares with what it saw before it stopped (it does not alert
again on what it already reported). Rounds run one after the other, never overlapping: a round
that takes longer than ``every`` starts the next at once. A stop request (SIGTERM, Ctrl-C)
lets the round in progress finish and its alerts go out, then the watch ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from perisai.findings import ScanReport
from perisai.probes.interface import ScanConfig
from perisai.usecases import DEFAULT_DB, UseCaseError, scan_and_save
from perisai.watch.alerts import Alert, alerts_for
from perisai.watch.allowlist import AllowList
from perisai.watch.changes import Change, ChangeKind, changes_between
from perisai.watch.delivery import Deliverer, DeliveryReport
from perisai.watch.metrics import WatchMetrics

__all__ = ["RoundResult", "WatchPlan", "Watcher"]


@dataclass(frozen=True)
class WatchPlan:
    """What to watch and how often (``rounds``: None runs until stopped)."""

    targets: tuple[str, ...]
    ports: tuple[int, ...] | None = None
    every: float = 900.0
    rounds: int | None = None
    db: str = DEFAULT_DB
    authorized: bool = False
    remind_after: float | None = None
    config: ScanConfig = field(default_factory=ScanConfig)
    allow: AllowList = field(default_factory=AllowList)  # reviewed, expiring silences


@dataclass(frozen=True)
class RoundResult:
    """One finished round: its scan, the changes found, and how the alerts went."""

    number: int
    report: ScanReport
    changes: list[Change]
    delivery: DeliveryReport
    store_error: str = ""
    silenced: int = 0  # changes an allow-list entry kept quiet
    notes: tuple[str, ...] = ()  # e.g. an allow-list entry that expired


class Watcher:
    """Runs a :class:`WatchPlan`; ``stop()`` (from a signal handler, another thread) ends it
    after the round in progress."""

    def __init__(
        self,
        plan: WatchPlan,
        deliverer: Deliverer,
        metrics: WatchMetrics | None = None,
        *,
        on_round: Callable[[RoundResult], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.plan = plan
        self.deliverer = deliverer
        self.metrics = metrics or WatchMetrics()
        self.on_round = on_round
        self.clock = clock
        self._stop = threading.Event()
        self._last_alerted: dict[str, float] = {}

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> list[RoundResult]:
        """Round after round until ``rounds`` are done or :meth:`stop`; each round's result
        (also given to ``on_round`` as it finishes)."""
        results: list[RoundResult] = []
        number = 0
        while not self.stopping and (self.plan.rounds is None or number < self.plan.rounds):
            number += 1
            began = time.monotonic()
            result = self.round(number)
            results.append(result)
            if self.on_round is not None:
                self.on_round(result)
            if self.plan.rounds is not None and number >= self.plan.rounds:
                break
            wait = max(0.0, self.plan.every - (time.monotonic() - began))
            self._stop.wait(wait)  # a stop request ends the wait at once
        return results

    def round(self, number: int) -> RoundResult:
        """One scan, saved; its changes since the last scan of these targets, alerted."""
        started = self.clock()
        outcome = scan_and_save(
            self.plan.targets,
            self.plan.ports,
            config=self.plan.config,
            authorized=self.plan.authorized,
            db=self.plan.db,
            with_changes=True,
        )
        if outcome.changes is None:  # the store could not be written: no last round to
            # compare with, so nothing is alerted on faith; pending alerts are still retried
            delivery = self.deliverer.deliver([])
            self.metrics.round(outcome.report.findings, started, self.clock())
            return RoundResult(number, outcome.report, [], delivery, outcome.store_error)
        now = self.clock()
        changes = changes_between(
            outcome.changes,
            last_alerted=self._last_alerted,
            remind_after=self.plan.remind_after,
            now=now,
        )
        today = self.today()
        loud = [c for c in changes if self.plan.allow.silences(c.finding, today) is None]
        notes = tuple(
            f"allow-list entry for {entry.names} (reviewed by {entry.reviewed_by}) expired on "
            f"{entry.expires}: it silences nothing now"
            for entry in self.plan.allow.expired(today)
        )
        alerts = alerts_for(loud, outcome.report)
        delivery = self.deliverer.deliver(alerts)
        self._record(alerts, delivery, now)
        self.metrics.round(outcome.report.findings, started, self.clock())
        silenced = len(changes) - len(loud)
        return RoundResult(number, outcome.report, loud, delivery, silenced=silenced, notes=notes)

    def today(self) -> date:
        """The date allow-list expiries are judged on (from the watch's clock)."""
        return datetime.fromtimestamp(self.clock(), UTC).date()

    def _record(self, alerts: Sequence[Alert], delivery: DeliveryReport, now: float) -> None:
        """Remember when each finding alerted (for reminders) and count what went out."""
        for alert in alerts:
            finding_id = alert.change.finding.id
            if alert.change.kind is ChangeKind.RESOLVED:
                self._last_alerted.pop(finding_id, None)
            else:
                self._last_alerted[finding_id] = now
        for kind, count in delivery.sent_kinds.items():
            self.metrics.sent(ChangeKind(kind), count)
        if delivery.failed:
            self.metrics.failed(len(delivery.failed))


def check_plan(plan: WatchPlan) -> None:
    """Refuse a plan that cannot run, with the fix, before the first round."""
    if not plan.targets:
        raise UseCaseError("nothing to watch: give targets, or --from-nmap/--from-masscan/…")
    if plan.every <= 0:
        raise UseCaseError("--every must be a positive interval, e.g. 15m")
    if plan.rounds is not None and plan.rounds < 1:
        raise UseCaseError("--rounds must be at least 1")
