"""Sending alerts where a human sees them, with retries, and never losing one silently.

Each sink (a webhook, a Slack incoming webhook, an e-mail address through an SMTP relay) gets
each alert once; a failed send is retried with exponential backoff (bounded in attempts and
seconds), and one that still fails is kept and retried at the next round, and reported every
time (the round's output, the metrics). A receiver's 2xx is a delivery; anything else is not.
Alerts go only to the sinks the user named.
"""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from perisai.watch.alerts import Alert

__all__ = [
    "Deliverer",
    "DeliveryReport",
    "EmailSink",
    "SendError",
    "Sink",
    "SlackSink",
    "WebhookSink",
]

SEND_TIMEOUT = 10.0  # seconds per attempt
MAX_PENDING = 1000  # undelivered alerts kept for the next round, oldest dropped (and counted)


class SendError(Exception):
    """One attempt failed; the message says why in one line."""


class Sink(Protocol):
    """Somewhere alerts go."""

    @property
    def name(self) -> str: ...

    def send(self, alert: Alert) -> None:
        """Deliver ``alert`` or raise :class:`SendError`."""


def _post(url: str, body: object) -> None:
    try:
        answer = httpx.post(url, json=body, timeout=SEND_TIMEOUT, follow_redirects=False)
    except httpx.HTTPError as error:
        raise SendError(f"{type(error).__name__}: {error}") from error
    if not 200 <= answer.status_code < 300:
        raise SendError(f"HTTP {answer.status_code}")


@dataclass(frozen=True)
class WebhookSink:
    """POSTs the alert's JSON (schema ``perisai.watch.alert/1``) to ``url``."""

    url: str

    @property
    def name(self) -> str:
        return f"webhook {self.url}"

    def send(self, alert: Alert) -> None:
        _post(self.url, alert.payload())


@dataclass(frozen=True)
class SlackSink:
    """POSTs Slack's incoming-webhook message (``{"text": …}``) to ``url``."""

    url: str

    @property
    def name(self) -> str:
        return "slack"

    def send(self, alert: Alert) -> None:
        _post(self.url, alert.slack())


@dataclass(frozen=True)
class EmailSink:
    """Mails the alert as plain text to ``recipient`` through the relay at ``host:port``."""

    recipient: str
    host: str
    port: int
    sender: str = "perisai-watch@localhost"

    @property
    def name(self) -> str:
        return f"e-mail {self.recipient}"

    def send(self, alert: Alert) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=SEND_TIMEOUT) as smtp:
                smtp.send_message(alert.email(self.sender, self.recipient))
        except (OSError, smtplib.SMTPException) as error:
            raise SendError(f"{type(error).__name__}: {error}") from error


@dataclass
class DeliveryReport:
    """One round's deliveries: what went out, what did not (and why), what is kept."""

    sent: int = 0
    sent_kinds: dict[str, int] = field(default_factory=dict)  # change kind -> sends
    failed: list[str] = field(default_factory=list)  # "sink: alert summary: why", one line each
    pending: int = 0  # kept for the next round
    dropped: int = 0  # pending alerts dropped, the oldest first, past MAX_PENDING


class Deliverer:
    """Sends alerts to every sink, retrying each failed send with backoff.

    ``attempts`` tries per send, waiting ``backoff``, 2 x ``backoff``, … seconds between them;
    ``sleep`` is injectable for tests. Sends that fail every attempt are kept (per sink) and
    tried again, first, at the next :meth:`deliver`.
    """

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        attempts: int = 4,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.sinks = list(sinks)
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.sleep = sleep
        self._pending: list[tuple[Sink, Alert]] = []

    def deliver(self, alerts: Sequence[Alert]) -> DeliveryReport:
        report = DeliveryReport()
        work = self._pending + [(sink, alert) for alert in alerts for sink in self.sinks]
        self._pending = []
        for sink, alert in work:
            why = self._send(sink, alert)
            if why is None:
                report.sent += 1
                kind = alert.change.kind.value
                report.sent_kinds[kind] = report.sent_kinds.get(kind, 0) + 1
                continue
            report.failed.append(f"{sink.name}: {alert.summary}: {why}")
            self._pending.append((sink, alert))
        if len(self._pending) > MAX_PENDING:
            report.dropped = len(self._pending) - MAX_PENDING
            self._pending = self._pending[-MAX_PENDING:]
        report.pending = len(self._pending)
        return report

    def _send(self, sink: Sink, alert: Alert) -> str | None:
        """None when delivered; else why the last attempt failed."""
        why = ""
        for attempt in range(self.attempts):
            if attempt:
                self.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                sink.send(alert)
            except SendError as error:
                why = f"{error} (after {attempt + 1} attempts)"
                continue
            return None
        return why
