"""An alert, and its three shapes: the webhook's JSON, Slack's incoming-webhook message, and
a plain e-mail.

The webhook payload is a documented schema (``perisai.watch.alert/1``, README "Watch your
estate"): the finding travels in the findings contract's own shape, already masked by the
scanner, so a receiver parses it like ``perisai scan --format json`` output. Nothing here adds
server text that the scanner did not already mask and escape.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from perisai.findings import ScanReport
from perisai.watch.changes import Change, ChangeKind

__all__ = ["ALERT_SCHEMA", "Alert", "alerts_for"]

ALERT_SCHEMA = "perisai.watch.alert/1"

_HEADLINE = {
    ChangeKind.COMPROMISED: "COMPROMISED",
    ChangeKind.OPENED: "newly exposed",
    ChangeKind.WORSE: "worse",
    ChangeKind.REMINDER: "still exposed",
    ChangeKind.RESOLVED: "resolved",
}


@dataclass(frozen=True)
class Alert:
    """One change, from one round's scan, ready to be sent anywhere."""

    change: Change
    scan_id: int | None
    started: str
    targets: tuple[str, ...]

    @property
    def summary(self) -> str:
        """``[perisai] COMPROMISED: redis 127.0.0.1:6379: Ransom note in Redis key …``."""
        finding = self.change.finding
        where = f"{finding.target.service} {finding.target.host}:{finding.target.port}"
        was = f" (was {self.change.was})" if self.change.was is not None else ""
        headline = _HEADLINE[self.change.kind]
        return f"[perisai] {headline}: {where}: {finding.title} [{finding.severity}{was}]"

    def payload(self) -> dict[str, Any]:
        """The webhook body (schema ``perisai.watch.alert/1``)."""
        finding = self.change.finding
        return {
            "schema": ALERT_SCHEMA,
            "kind": self.change.kind.value,
            "summary": self.summary,
            "severity": finding.severity.value,
            "previous_severity": None if self.change.was is None else self.change.was.value,
            "finding": finding.to_dict(),
            "scan": {"id": self.scan_id, "started": self.started, "targets": list(self.targets)},
        }

    def slack(self) -> dict[str, Any]:
        """A Slack incoming-webhook message: the summary, then the evidence as a quote."""
        lines = [e.text for e in self.change.finding.evidence[:6]]
        text = self.summary + ("\n>" + "\n>".join(lines) if lines else "")
        return {"text": text}

    def email(self, sender: str, recipient: str) -> EmailMessage:
        """A plain-text e-mail: the summary as its subject, evidence and the fix in its body."""
        finding = self.change.finding
        message = EmailMessage()
        message["Subject"] = self.summary
        message["From"] = sender
        message["To"] = recipient
        body = [
            self.summary,
            "",
            f"rule: {finding.rule}; where: {finding.where()}; asset ports: "
            + ", ".join(str(p) for p in finding.server.ports),
            "",
            *(f"  {e.text}" for e in finding.evidence),
        ]
        if finding.remediation and self.change.kind is not ChangeKind.RESOLVED:
            body += ["", f"fix: {finding.remediation}"]
        body += ["", f"scan {self.scan_id} started {self.started}"]
        message.set_content("\n".join(body) + "\n")
        return message


def alerts_for(changes: list[Change], report: ScanReport) -> list[Alert]:
    """The alerts of one round's changes, loudest first (as ``changes`` are ordered)."""
    return [Alert(change, report.scan_id, report.started, report.targets) for change in changes]
