"""What changed for the worse between two rounds of a watch, one change per alert.

Built on :class:`perisai.findings.ScanDiff` (what ``perisai report --diff`` shows): a finding
id is stable across scans (rule, target, object), so a store that stays open is the same
finding every round and alerts once; it alerts again only once it was resolved and came back,
or when a reminder is due. Findings about a store that asks for a password (``info``) never
alert: they are the good news.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from perisai.findings import Finding, ScanDiff, Severity

__all__ = ["Change", "ChangeKind", "changes_between", "is_alerting"]


class ChangeKind(StrEnum):
    """What happened; the order is how loud the alert is (the first is the loudest)."""

    COMPROMISED = "compromised"  # a ransom note or a planted payload appeared
    OPENED = "opened"  # a store became readable without auth or with default credentials
    WORSE = "worse"  # an open store's severity rose (personal data appeared, say)
    REMINDER = "reminder"  # still open, and the reminder interval has passed
    RESOLVED = "resolved"  # an alerting finding is gone (a quieter notice)


@dataclass(frozen=True)
class Change:
    """One alert's worth: what happened to which finding (``was``: its earlier severity)."""

    kind: ChangeKind
    finding: Finding
    was: Severity | None = None


def is_alerting(finding: Finding) -> bool:
    """A finding worth a human's attention: ``high`` or worse (readable stores, compromise)."""
    return finding.severity.at_least(Severity.HIGH)


def changes_between(
    diff: ScanDiff,
    *,
    last_alerted: Mapping[str, float] | None = None,
    remind_after: float | None = None,
    now: float = 0.0,
) -> list[Change]:
    """The changes ``diff`` holds, loudest first.

    ``last_alerted`` (finding id → when it last alerted) and ``remind_after`` (seconds) make
    a finding that stayed open alert again once the interval has passed; without them an
    unchanged finding never alerts twice. A store whose compromise alerts in this round does
    not also get a "worse" alert: the loudest one says it.
    """
    before = {f.id: f for f in diff.previous.findings} if diff.previous is not None else {}
    changes: list[Change] = []
    for finding in diff.new:
        if not is_alerting(finding):
            continue
        kind = ChangeKind.COMPROMISED if finding.is_compromise else ChangeKind.OPENED
        changes.append(Change(kind, finding))
    compromised = {c.finding.server.id for c in changes if c.kind is ChangeKind.COMPROMISED}
    for finding in diff.unchanged:
        earlier = before.get(finding.id)
        if earlier is not None and finding.severity.rank > earlier.severity.rank:
            if is_alerting(finding) and finding.server.id not in compromised:
                changes.append(Change(ChangeKind.WORSE, finding, earlier.severity))
            continue
        if remind_after is None or last_alerted is None or not is_alerting(finding):
            continue
        alerted = last_alerted.get(finding.id)
        if alerted is not None and now - alerted >= remind_after:
            changes.append(Change(ChangeKind.REMINDER, finding))
    changes.extend(
        Change(ChangeKind.RESOLVED, finding) for finding in diff.resolved if is_alerting(finding)
    )
    order = list(ChangeKind)
    return sorted(changes, key=lambda c: (order.index(c.kind), -c.finding.severity.rank))
